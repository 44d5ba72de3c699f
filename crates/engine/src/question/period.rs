//! The time a question is about: explicit days and ranges, months, weeks and relative
//! phrases ("yesterday", "last 7 days", "last week", "this month so far", "since the
//! 10th"), resolved against the last day of the user's data — never the server's clock —
//! and labelled so that the answer can say how each was read.
use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month};

/// A closed range of days.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    #[serde(with = "day")]
    pub first: Date,
    #[serde(with = "day")]
    pub last: Date,
    /// How the question put it, with the days it resolved to when that was not explicit:
    /// "yesterday (2026-11-30, the last day in your data)".
    pub label: String,
}

impl Period {
    fn new(first: Date, last: Date, label: impl Into<String>) -> Self {
        Self { first: first.min(last), last: last.max(first), label: label.into() }
    }

    /// Days in the range.
    pub fn days(&self) -> i64 {
        (self.last - self.first).whole_days() + 1
    }

    /// The range of the same length just before this one ("the week before").
    pub fn before(&self, label: impl Into<String>) -> Self {
        let len = Duration::days(self.days());
        Self::new(self.first - len, self.last - len, label)
    }

    /// The `unit` ("day", "week", "month") just before this period: the period before it
    /// when it is one such unit long, else the unit that ends the day before it starts;
    /// labelled by its days, which is how an answer names it.
    pub fn step_back(&self, unit: &str) -> Self {
        let is_month = self.first.day() == 1
            && self.last.day() == time::util::days_in_month(self.last.month(), self.last.year())
            && self.first.month() == self.last.month();
        let (first, last) = match unit {
            "day" if self.days() != 1 => (self.first - Duration::days(1), self.first - Duration::days(1)),
            "week" if self.days() != 7 => (self.first - Duration::days(7), self.first - Duration::days(1)),
            "month" if is_month || self.days() != 30 => {
                let last = self.first - Duration::days(1);
                (last.replace_day(1).expect("the first"), last)
            }
            _ => {
                let b = self.before("");
                (b.first, b.last)
            }
        };
        let label = if first == last { first.to_string() } else { format!("{first} … {last}") };
        Self::new(first, last, label)
    }

    /// "2026-11-01 … 2026-11-30", or the one day.
    pub fn span(&self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{} … {}", self.first, self.last)
        }
    }
}

/// The periods a question names: the one it is about and, when it compares, the one it
/// compares with (the earlier one, for "October vs November").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Periods {
    pub period: Option<Period>,
    pub compare: Option<Period>,
    /// "The week before" with no period of its own to be before: a follow-up's step back
    /// from the period of the previous question ("day", "week", "month" or "period").
    pub step_back: Option<String>,
}

const MONTHS: [(&str, Month); 12] = [
    ("january", Month::January),
    ("february", Month::February),
    ("march", Month::March),
    ("april", Month::April),
    ("may", Month::May),
    ("june", Month::June),
    ("july", Month::July),
    ("august", Month::August),
    ("september", Month::September),
    ("october", Month::October),
    ("november", Month::November),
    ("december", Month::December),
];

/// A month named by a word: "october", "oct", "oct.", "sept".
fn month_word(word: &str) -> Option<Month> {
    let word = word.trim_end_matches('.');
    if word == "sept" {
        return Some(Month::September);
    }
    MONTHS.iter().find(|(name, _)| word == *name || (word.len() == 3 && name.starts_with(word))).map(|&(_, m)| m)
}

fn number(word: &str) -> Option<u32> {
    let digits = word.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &word[digits.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4 {
        return None;
    }
    matches!(suffix, "" | "st" | "nd" | "rd" | "th").then(|| digits.parse().ok()).flatten()
}

const SMALL_NUMBERS: [&str; 13] =
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"];

fn count(word: &str) -> Option<u32> {
    number(word).or_else(|| SMALL_NUMBERS.iter().position(|&w| w == word).map(|n| n as u32))
}

/// "2026-11-12", "2026/11/12".
pub(crate) fn iso_day(word: &str) -> Option<Date> {
    let mut parts = word.split(['-', '/']);
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() > 2 || d.len() > 2 {
        return None;
    }
    let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

/// "2026-10", "2026/10".
fn iso_month(word: &str) -> Option<(i32, Month)> {
    let (y, m) = word.split_once(['-', '/'])?;
    if y.len() != 4 || m.is_empty() || m.len() > 2 {
        return None;
    }
    Some((y.parse().ok()?, Month::try_from(m.parse::<u8>().ok()?).ok()?))
}

fn month_range(year: i32, month: Month) -> (Date, Date) {
    let first = Date::from_calendar_date(year, month, 1).expect("the first of a month");
    let last = Date::from_calendar_date(year, month, time::util::days_in_month(month, year)).expect("its last day");
    (first, last)
}

/// The latest `month` that starts on or before `last_day` (its year, when a question says
/// "October" in November).
fn latest_month(month: Month, last_day: Date) -> i32 {
    if month as u8 <= last_day.month() as u8 {
        last_day.year()
    } else {
        last_day.year() - 1
    }
}

/// The latest day numbered `n` on or before `last_day` ("the 12th").
fn latest_day_numbered(n: u32, last_day: Date) -> Option<Date> {
    let n = u8::try_from(n).ok().filter(|n| (1..=31).contains(n))?;
    let (mut year, mut month) = (last_day.year(), last_day.month());
    for _ in 0..12 {
        if let Ok(day) = Date::from_calendar_date(year, month, n) {
            if day <= last_day {
                return Some(day);
            }
        }
        if month == Month::January {
            year -= 1;
        }
        month = month.previous();
    }
    None
}

/// "5-11": the first and last day of the month a span of days names.
fn day_span(word: &str) -> Option<(u8, u8)> {
    let (a, b) = word.split_once('-')?;
    let day = |w: &str| number(w).filter(|d| (1..=31).contains(d)).map(|d| d as u8);
    let (a, b) = (day(a)?, day(b)?);
    (a <= b).then_some((a, b))
}

/// A day the words at `i` name, and how many words it took: "2026-11-12", "the 12th",
/// "nov 12", "november 12th", "12 november", "12th of november", "nov 12 2026".
fn day_at(words: &[&str], i: usize, last_day: Date) -> Option<(Date, usize)> {
    let w = |k: usize| words.get(i + k).copied().unwrap_or("");
    if let Some(day) = iso_day(w(0)) {
        return Some((day, 1));
    }
    let year_after = |k: usize| number(w(k)).filter(|y| (1970..=2100).contains(y)).map(|y| y as i32);
    if let Some(month) = month_word(w(0)) {
        let d = number(w(1)).filter(|d| (1..=31).contains(d))?;
        return Some(match year_after(2) {
            Some(year) => (Date::from_calendar_date(year, month, d as u8).ok()?, 3),
            None => (Date::from_calendar_date(latest_month(month, last_day), month, d as u8).ok()?, 2),
        });
    }
    let d = number(w(0)).filter(|d| (1..=31).contains(d))?;
    let has_suffix = w(0).ends_with(|c: char| c.is_ascii_alphabetic());
    let (month, taken) = match (month_word(w(1)), w(1), month_word(w(2))) {
        (Some(m), _, _) => (Some(m), 2),
        (None, "of", Some(m)) => (Some(m), 3),
        _ => (None, 1),
    };
    match month {
        Some(month) => match year_after(taken) {
            Some(year) => Some((Date::from_calendar_date(year, month, d as u8).ok()?, taken + 1)),
            None => Some((Date::from_calendar_date(latest_month(month, last_day), month, d as u8).ok()?, taken)),
        },
        // A bare number is a day only as "the 12th" or "on the 12th".
        None if has_suffix || (i > 0 && words[i - 1] == "the") => Some((latest_day_numbered(d, last_day)?, 1)),
        None => None,
    }
}

/// A month the words at `i` name: "october", "oct 2026", "2026-10".
fn month_at(words: &[&str], i: usize, last_day: Date) -> Option<((Date, Date), usize, String)> {
    let w = |k: usize| words.get(i + k).copied().unwrap_or("");
    if let Some((year, month)) = iso_month(w(0)) {
        return Some((month_range(year, month), 1, w(0).to_owned()));
    }
    let month = month_word(w(0))?;
    if w(0) == "may" && i > 0 && !matches!(words[i - 1], "in" | "of" | "since" | "for" | "during" | "and" | "vs" | "to") {
        return None;
    }
    let name = MONTHS.iter().find(|(_, m)| *m == month).map(|(n, _)| *n).unwrap_or_default();
    let name = format!("{}{}", name[..1].to_uppercase(), &name[1..]);
    match number(w(1)).filter(|y| (1970..=2100).contains(y)) {
        Some(year) => Some((month_range(year as i32, month), 2, format!("{name} {year}"))),
        None => {
            let year = latest_month(month, last_day);
            Some((month_range(year, month), 1, format!("{name} {year}")))
        }
    }
}

fn monday_of(day: Date) -> Date {
    day - Duration::days(i64::from(day.weekday().number_days_from_monday()))
}

fn in_your_data(last_day: Date) -> String {
    format!("{last_day} is the last day in your data")
}

/// The periods `words` (lower-case) name, resolved against `last_day`.
pub fn periods(words: &[&str], last_day: Date) -> Periods {
    let mut found: Vec<Period> = Vec::new();
    let mut compare: Option<Period> = None;
    let mut step_back = None;
    let mut i = 0;
    let w = |k: usize| words.get(k).copied().unwrap_or("");
    while i < words.len() {
        let rest = |n: usize| words[i..].iter().take(n).copied().collect::<Vec<_>>().join(" ");
        // Relative to the last day of the data.
        let relative = match w(i) {
            "yesterday" | "today" => {
                Some((Period::new(last_day, last_day, format!("{} ({last_day}, the last day in your data)", w(i))), 1))
            }
            "last" | "past" | "previous" | "trailing" if w(i + 1) == "month" => {
                let (y, m) = if last_day.month() == Month::January {
                    (last_day.year() - 1, Month::December)
                } else {
                    (last_day.year(), last_day.month().previous())
                };
                let (first, last) = month_range(y, m);
                Some((Period::new(first, last, format!("last month ({first} … {last}; {})", in_your_data(last_day))), 2))
            }
            "last" | "past" | "previous" | "trailing" if w(i + 1) == "week" => {
                let first = monday_of(last_day) - Duration::days(7);
                Some((
                    Period::new(
                        first,
                        first + Duration::days(6),
                        format!(
                            "last week ({} … {}, Monday to Sunday; {})",
                            first,
                            first + Duration::days(6),
                            in_your_data(last_day)
                        ),
                    ),
                    2,
                ))
            }
            "last" | "past" | "previous" | "trailing" | "the"
                if count(w(i + 1)).is_some() && w(i) != "the"
                    || (w(i) == "the" && w(i + 1) == "last" && count(w(i + 2)).is_some()) =>
            {
                let skip = usize::from(w(i) == "the");
                let n = count(w(i + 1 + skip)).unwrap_or(1).max(1);
                let unit = w(i + 2 + skip).trim_end_matches('s');
                let days = match unit {
                    "day" => Some(i64::from(n)),
                    "week" => Some(7 * i64::from(n)),
                    "month" => Some(30 * i64::from(n)),
                    _ => None,
                };
                days.map(|days| {
                    let first = last_day - Duration::days(days - 1);
                    (
                        Period::new(
                            first,
                            last_day,
                            format!(
                                "the last {n} {unit}{} ({first} … {last_day}; {})",
                                if n == 1 { "" } else { "s" },
                                in_your_data(last_day)
                            ),
                        ),
                        3 + skip,
                    )
                })
            }
            "last" | "past" if matches!(w(i + 1), "day" | "days") => {
                Some((Period::new(last_day, last_day, format!("the last day ({last_day})")), 2))
            }
            "this" if w(i + 1) == "month" => {
                let first = last_day.replace_day(1).expect("the first");
                let so_far = if w(i + 2) == "so" && w(i + 3) == "far" { 4 } else { 2 };
                Some((
                    Period::new(first, last_day, format!("this month so far ({first} … {last_day}; {})", in_your_data(last_day))),
                    so_far,
                ))
            }
            "this" if w(i + 1) == "week" => {
                let first = monday_of(last_day);
                Some((Period::new(first, last_day, format!("this week ({first} … {last_day}; {})", in_your_data(last_day))), 2))
            }
            "month" if matches!(w(i + 1), "to") && w(i + 2) == "date" => {
                let first = last_day.replace_day(1).expect("the first");
                Some((Period::new(first, last_day, format!("month to date ({first} … {last_day})")), 3))
            }
            "since" | "after" => {
                let skip = 1 + usize::from(w(i + 1) == "the");
                let after = usize::from(w(i) == "after");
                day_at(words, i + skip, last_day)
                    .map(|(d, n)| {
                        let d = d + Duration::days(after as i64);
                        (Period::new(d, last_day, format!("since {d} (to {last_day}, the last day in your data)")), n + skip)
                    })
                    .or_else(|| {
                        month_at(words, i + skip, last_day).map(|((first, last), n, name)| {
                            let first = if after == 1 { last + Duration::days(1) } else { first };
                            (Period::new(first, last_day, format!("since {name} ({first} … {last_day})")), n + skip)
                        })
                    })
            }
            _ => None,
        };
        if let Some((period, taken)) = relative {
            found.push(period);
            i += taken;
            continue;
        }
        // "the week before", "the previous month", "the day before": compared with the last one found.
        if matches!(w(i), "week" | "month" | "day" | "period") && matches!(w(i + 1), "before" | "earlier" | "prior") {
            match found.last() {
                Some(p) => {
                    let b = p.before("");
                    compare = Some(p.before(format!("the {} before ({} … {})", w(i), b.first, b.last)));
                }
                None => step_back = Some(w(i).to_owned()),
            }
            i += 2;
            continue;
        }
        if matches!(w(i), "previous" | "prior" | "preceding")
            && matches!(w(i + 1), "week" | "month" | "period" | "day" | "days" | "weeks")
            && !found.is_empty()
        {
            let p = found.last().expect("found");
            let b = p.before("");
            compare = Some(p.before(format!("the {} {} ({} … {})", w(i), w(i + 1), b.first, b.last)));
            i += 2;
            continue;
        }
        // "oct 5-11", "november 3-9 2025": days of one month.
        if let (Some(month), Some((a, b))) = (month_word(w(i)), day_span(w(i + 1))) {
            let year = number(w(i + 2)).filter(|y| (1970..=2100).contains(y));
            let in_year = year.map_or_else(|| latest_month(month, last_day), |y| y as i32);
            if let (Ok(first), Ok(last)) =
                (Date::from_calendar_date(in_year, month, a), Date::from_calendar_date(in_year, month, b))
            {
                found.push(Period::new(first, last, format!("{first} … {last}")));
                i += 2 + usize::from(year.is_some());
                continue;
            }
        }
        // Ranges: "between X and Y", "from X to Y", "X to Y", "X - Y".
        if let Some((a, n)) = day_at(words, i, last_day) {
            let sep = w(i + n);
            if matches!(sep, "to" | "and" | "until" | "through" | "-" | "…" | "thru") {
                if let Some((b, m)) = day_at(words, i + n + 1, last_day) {
                    found.push(Period::new(a, b, format!("{} … {}", a.min(b), a.max(b))));
                    i += n + 1 + m;
                    continue;
                }
                // "nov 3 to 9": the second day in the first one's month.
                if let Some(d) = number(w(i + n + 1)).filter(|d| (1..=31).contains(d)) {
                    if let Ok(b) = a.replace_day(d as u8) {
                        found.push(Period::new(a, b, format!("{} … {}", a.min(b), a.max(b))));
                        i += n + 2;
                        continue;
                    }
                }
            }
            let explicit = iso_day(w(i)).is_some();
            let label = if explicit { a.to_string() } else { format!("{} ({a})", rest(n)) };
            found.push(Period::new(a, a, label));
            i += n;
            continue;
        }
        if let Some(((first, last), n, name)) = month_at(words, i, last_day) {
            let label = if last > last_day && first <= last_day {
                format!("{name} ({first} … {last_day} so far; {})", in_your_data(last_day))
            } else {
                name
            };
            found.push(Period::new(first, last, label));
            i += n;
            continue;
        }
        i += 1;
    }
    let mut periods = Periods { step_back, ..Periods::default() };
    match (found.len(), compare) {
        (_, Some(c)) => {
            periods.period = found.pop();
            periods.compare = Some(c);
        }
        (0, None) => {}
        (1, None) => periods.period = found.pop(),
        _ => {
            // Two periods named: the later is the one asked about, the earlier the baseline.
            found.sort_by_key(|p| p.first);
            periods.period = found.pop();
            periods.compare = found.pop();
        }
    }
    periods
}

/// Days as "YYYY-MM-DD" on the wire and in the store.
mod day {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    pub fn serialize<S: Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let text = String::deserialize(d)?;
        super::iso_day(&text).ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a YYYY-MM-DD day")))
    }
}
