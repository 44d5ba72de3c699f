//! Just enough calendar for "YYYY-MM-DD" days: a day number to step and
//! count with, and back. Howard Hinnant's days-from-civil algorithms
//! (proleptic Gregorian, day 0 = 1970-01-01), so no date crate is needed.

/// Days since 1970-01-01 for `y-m-d`.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    // Count years from March so the leap day is the last day of the year.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = i64::from((m + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Inverse of `days_from_civil`.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Parses a strict "YYYY-MM-DD" into a day number; rejects impossible dates
/// such as 2026-02-30 by checking that the day survives a round trip.
pub(crate) fn parse_day(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    // Digits only: `parse` alone would accept a sign such as "+1".
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, m, d) = (i64::from(num(0..4)?), num(5..7)?, num(8..10)?);
    let day = days_from_civil(y, m, d);
    (civil_from_days(day) == (y, m, d)).then_some(day)
}

/// Whether `s` is a real calendar day written "YYYY-MM-DD" (2026-02-30 is not).
pub fn is_calendar_day(s: &str) -> bool {
    parse_day(s).is_some()
}

/// Formats a day number as "YYYY-MM-DD".
pub(crate) fn format_day(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(parse_day("2026-11-24").map(format_day).as_deref(), Some("2026-11-24"));
    }

    #[test]
    fn round_trips_across_leap_years() {
        for day in days_from_civil(1899, 1, 1)..days_from_civil(2101, 1, 1) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(parse_day("2024-02-29").map(|d| d + 1).map(format_day).as_deref(), Some("2024-03-01"));
    }

    #[test]
    fn rejects_malformed_and_impossible_dates() {
        for bad in [
            "2026-02-30",
            "2025-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "26-11-24",
            "2026/11/24",
            "2026/11-24",
            "2026-11/24",
            "2026-+1-01",
            "",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }
}
