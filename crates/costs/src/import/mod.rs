//! Importers: usage exports in, [`ImportRow`]s out, one callback per row so that a caller
//! can store them in batches without holding the file's rows in memory.
//!
//! A bad row never stops an import: it is reported with its line number and reason, and
//! the good rows are kept. Every row carries a `key` that identifies it across imports,
//! so that importing the same file twice, or overlapping files, never double counts.
mod generic_csv;
mod helicone;
mod langfuse;
mod litellm;
mod openai;
mod openai_csv;
mod otel;

use std::io::{BufRead as _, Read as _};

use crate::limits;
use crate::money::Money;
use crate::records::UsageRecord;

/// One usage row and its identity across imports.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportRow {
    pub record: UsageRecord,
    /// The source's request id where it has one, otherwise a hash of the row's content.
    pub key: String,
    /// A hash of the request itself (prompt and parameters) where the source gives one or
    /// the request body to make one: identical requests share it, whatever their key.
    /// Empty when unknown. The store counts a request whose hash it has seen before as a
    /// repeat (`UsageRecord::repeat_requests`).
    pub request_hash: String,
}

/// A row that could not be imported.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejected {
    /// 1-based line of the file (the header is line 1 of a CSV).
    pub line: u64,
    pub reason: String,
}

/// A usage format. Its name on the wire (the import report's `format`, `?format=`) is its
/// importer's [`Importer::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// The documented generic CSV (`docs/cost-analysis.md`).
    GenericCsv,
    /// OpenAI's Usage API, completions endpoint (`organization.usage.completions.result`).
    OpenaiUsageJson,
    /// The usage dashboard's CSV export of completions usage (platform.openai.com).
    OpenaiUsageCsv,
    /// The usage dashboard's CSV export of costs (`amount_value`, `line_item`).
    OpenaiCostCsv,
    /// Helicone request exports: CSV, JSON Lines or a JSON array.
    HeliconeRequests,
    /// LiteLLM proxy spend logs (`LiteLLM_SpendLogs`), as CSV or as a JSON array.
    LitellmSpendLogs,
    /// OpenTelemetry GenAI spans as OTLP JSON (`gen_ai.usage.*` attributes).
    OtelSpansJson,
    /// Langfuse observations (`GET /api/public/observations`), generations only.
    LangfuseObservations,
}

/// One usage format's importer: its names, how to recognize it, how to read it. Each lives
/// in its own module; [`IMPORTERS`] lists them.
pub struct Importer {
    pub format: Format,
    /// The canonical name: on the wire, in `?format=` and `--format`, in messages.
    pub name: &'static str,
    /// Other names `Format::parse` accepts.
    pub aliases: &'static [&'static str],
    /// One line for people: what to export, and from where.
    pub describes: &'static str,
    /// Whether the start of a file is this format.
    pub detect: fn(&Head) -> bool,
    /// Reads the whole file, sending rows and rejections to the sink.
    pub(crate) read: fn(&mut dyn std::io::Read, &mut Sink) -> Result<(), ImportError>,
}

impl std::fmt::Debug for Importer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer").field("format", &self.format).field("name", &self.name).finish_non_exhaustive()
    }
}

/// Every importer, in detection order: [`Format::detect`] answers the first whose `detect`
/// accepts the file. A specific rule goes before a looser one it overlaps (the generic CSV
/// last). One line here (and a variant of [`Format`]) registers an importer.
pub static IMPORTERS: &[&Importer] = &[
    &openai::IMPORTER,
    &otel::IMPORTER,
    &langfuse::IMPORTER,
    &litellm::IMPORTER,
    &openai_csv::USAGE,
    &openai_csv::COSTS,
    &helicone::IMPORTER,
    &generic_csv::IMPORTER,
];

/// Every importer, in detection order.
pub fn importers() -> &'static [&'static Importer] {
    IMPORTERS
}

/// The formats as a Markdown list, one `- **name** (also `alias`): what to export` per
/// line: for answers that tell people what they can import.
pub fn formats_markdown() -> String {
    let mut out = String::new();
    for i in IMPORTERS {
        out.push_str(&format!("- **{}**", i.name));
        if !i.aliases.is_empty() {
            let aliases: Vec<String> = i.aliases.iter().map(|a| format!("`{a}`")).collect();
            out.push_str(&format!(" (also {})", aliases.join(", ")));
        }
        out.push_str(&format!(": {}\n", i.describes));
    }
    out
}

/// The start of a file as the importers' `detect` rules see it.
pub struct Head {
    /// The first 4 KiB, as text (invalid UTF-8 replaced).
    pub text: String,
    /// Whether it starts like JSON (`{` or `[`, after a BOM and blanks).
    pub json: bool,
    /// The first line, lower-cased (a CSV header); empty for JSON.
    header: String,
}

impl Head {
    pub fn new(head: &[u8]) -> Self {
        let text = String::from_utf8_lossy(&head[..head.len().min(4096)]).into_owned();
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        let json = trimmed.starts_with('{') || trimmed.starts_with('[');
        let header = if json { String::new() } else { trimmed.lines().next().unwrap_or("").to_ascii_lowercase() };
        Self { text, json, header }
    }

    /// JSON whose start contains every one of `needles` (keys are written quoted:
    /// `"\"startTime\""`).
    pub fn json_with(&self, needles: &[&str]) -> bool {
        self.json && needles.iter().all(|n| self.text.contains(n))
    }

    /// A CSV whose header has, for each group of `columns`, one of the group's names
    /// (lower case; cells are compared trimmed and unquoted).
    pub fn csv_with(&self, columns: &[&[&str]]) -> bool {
        !self.json && columns.iter().all(|names| self.header.split(',').any(|h| names.contains(&h.trim().trim_matches('"'))))
    }
}

impl Format {
    /// This format's importer.
    pub fn importer(self) -> &'static Importer {
        // Exhaustive: a new format does not compile until it names its importer.
        match self {
            Format::GenericCsv => &generic_csv::IMPORTER,
            Format::OpenaiUsageJson => &openai::IMPORTER,
            Format::OpenaiUsageCsv => &openai_csv::USAGE,
            Format::OpenaiCostCsv => &openai_csv::COSTS,
            Format::HeliconeRequests => &helicone::IMPORTER,
            Format::LitellmSpendLogs => &litellm::IMPORTER,
            Format::OtelSpansJson => &otel::IMPORTER,
            Format::LangfuseObservations => &langfuse::IMPORTER,
        }
    }

    /// The canonical name (`generic_csv`): the wire name.
    pub fn name(self) -> &'static str {
        self.importer().name
    }

    /// The canonical names, joined by ", ", for messages.
    pub fn names() -> &'static str {
        static NAMES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        NAMES.get_or_init(|| IMPORTERS.iter().map(|i| i.name).collect::<Vec<_>>().join(", "))
    }

    /// The format of a canonical name or an alias.
    pub fn parse(s: &str) -> Option<Self> {
        IMPORTERS.iter().find(|i| i.name == s || i.aliases.contains(&s)).map(|i| i.format)
    }

    /// Guesses the format from the first bytes of the file.
    pub fn detect(head: &[u8]) -> Option<Self> {
        let head = Head::new(head);
        IMPORTERS.iter().find(|i| (i.detect)(&head)).map(|i| i.format)
    }
}

impl serde::Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Format {
    /// The canonical name only, as `Serialize` writes it.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        IMPORTERS
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.format)
            .ok_or_else(|| serde::de::Error::custom(format_args!("unknown format `{name}`, expected one of {}", Format::names())))
    }
}

/// What the first bytes of an upload say: whether it is gzip, and its format if one is
/// recognized (looking inside the compression).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sniffed {
    pub gzipped: bool,
    pub format: Option<Format>,
}

/// Bytes of the start of a file that `sniff` looks at.
pub const SNIFF_BYTES: usize = 64 * 1024;

/// Looks at the start of a file (a few KiB are enough).
pub fn sniff(head: &[u8]) -> Sniffed {
    use std::io::Read as _;
    let gzipped = head.starts_with(&[0x1f, 0x8b]);
    if !gzipped {
        return Sniffed { gzipped, format: Format::detect(head) };
    }
    // A truncated stream still yields its first bytes, which is all detection needs.
    let mut inner = Vec::with_capacity(4096);
    let _ = flate2::read::GzDecoder::new(head).take(4096).read_to_end(&mut inner);
    Sniffed { gzipped, format: Format::detect(&inner) }
}

/// An upload opened for import: its start read and sniffed, the format decided, the rest
/// streamed through the byte limits (compressed size, decompressed size and ratio). The
/// one path the server and `apex ingest` share.
pub struct Opened {
    pub format: Format,
    pub gzipped: bool,
    /// The decompressed bytes, limited: past a limit, reads fail with an error that
    /// `import` turns into [`ImportError::Limit`].
    pub input: Box<dyn std::io::Read + Send>,
}

/// Why an upload cannot be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// `named` is not a format.
    UnknownName(String),
    /// No format was named and the start of the file does not say.
    Undetected,
    /// The file could not be read.
    Read(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownName(name) => write!(f, "unknown format `{name}` ({})", Format::names()),
            Self::Undetected => write!(f, "cannot tell the format; name one of {}", Format::names()),
            Self::Read(e) => write!(f, "cannot read the file: {e}"),
        }
    }
}

/// Opens `input` (a file or a request body, possibly gzip) in the `named` format, else the
/// one its first bytes show. Nothing is read past the first [`SNIFF_BYTES`] until the
/// returned reader is.
pub fn open(
    mut input: impl std::io::Read + Send + 'static,
    named: Option<&str>,
    max_compressed: u64,
) -> Result<Opened, OpenError> {
    let named = named.map(|n| Format::parse(n).ok_or_else(|| OpenError::UnknownName(n.to_owned()))).transpose()?;
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut input).take(SNIFF_BYTES as u64).read_to_end(&mut head).map_err(|e| OpenError::Read(e.to_string()))?;
    let sniffed = sniff(&head);
    let format = named.or(sniffed.format).ok_or(OpenError::Undetected)?;
    let raw = std::io::Read::chain(std::io::Cursor::new(head), input);
    Ok(Opened { format, gzipped: sniffed.gzipped, input: decompressed(raw, sniffed.gzipped, max_compressed) })
}

/// `input`, decompressed when the upload is gzip, and limited: at most `max_compressed`
/// bytes are read from `input`, and at most [`limits::MAX_DECOMPRESSED_BYTES`] come out,
/// at a ratio of at most [`limits::MAX_COMPRESSION_RATIO`] past the first
/// [`limits::RATIO_ALLOWANCE_BYTES`]. Decompression is streamed: memory stays that of
/// the decoder's window whatever the file.
pub fn decompressed<R: std::io::Read + Send + 'static>(
    input: R,
    gzipped: bool,
    max_compressed: u64,
) -> Box<dyn std::io::Read + Send> {
    let compressed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let raw = Counted { inner: input, count: compressed.clone(), max: max_compressed };
    let inner: Box<dyn std::io::Read + Send> = if gzipped { Box::new(flate2::read::GzDecoder::new(raw)) } else { Box::new(raw) };
    Box::new(Decompressed { inner, compressed, produced: 0, gzipped })
}

/// A limit an import reached, carried inside the `io::Error` of the read that crossed it
/// so that parsers stop at once; [`ImportError::Limit`] outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Limit {
    /// More than this many bytes of upload (compressed, when gzip).
    Compressed(u64),
    /// More than this many bytes once decompressed.
    Decompressed(u64),
    /// A compression ratio above this, past the allowance.
    Ratio(u64),
    /// The account's stored usage would add up to more than the account ceilings.
    Account,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Compressed(max) => write!(f, "the upload is larger than {} MiB", max / (1024 * 1024)),
            Self::Decompressed(max) => write!(f, "the file is larger than {} MiB once decompressed", max / (1024 * 1024)),
            Self::Ratio(max) => write!(
                f,
                "the file decompresses more than {max} times its compressed size (past the first {} MiB): \
                 refused as a decompression bomb",
                limits::RATIO_ALLOWANCE_BYTES / (1024 * 1024)
            ),
            Self::Account => write!(
                f,
                "the account's usage would add up to more than {} or {} tokens of a kind: refused as implausible",
                limits::MAX_ACCOUNT_COST,
                limits::MAX_ACCOUNT_COUNT
            ),
        }
    }
}

impl std::error::Error for Limit {}

impl Limit {
    fn io(self) -> std::io::Error {
        std::io::Error::other(self)
    }

    /// The limit inside an I/O error, if that is what it carries.
    pub fn of(e: &std::io::Error) -> Option<&Limit> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Limit>())
    }
}

/// Counts the bytes read from the upload and stops past `max`.
struct Counted<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    max: u64,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.inner.read(buf)?;
        let total = self.count.fetch_add(n as u64, Relaxed) + n as u64;
        if total > self.max {
            return Err(Limit::Compressed(self.max).io());
        }
        Ok(n)
    }
}

/// The decompressed stream, checked against the size and ratio limits as it is read.
struct Decompressed {
    inner: Box<dyn std::io::Read + Send>,
    compressed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    produced: u64,
    gzipped: bool,
}

impl std::io::Read for Decompressed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.produced += n as u64;
        if self.produced > limits::MAX_DECOMPRESSED_BYTES {
            return Err(Limit::Decompressed(limits::MAX_DECOMPRESSED_BYTES).io());
        }
        if self.gzipped && self.produced > limits::RATIO_ALLOWANCE_BYTES {
            let compressed = self.compressed.load(std::sync::atomic::Ordering::Relaxed).max(1);
            if self.produced > compressed.saturating_mul(limits::MAX_COMPRESSION_RATIO) {
                return Err(Limit::Ratio(limits::MAX_COMPRESSION_RATIO).io());
            }
        }
        Ok(n)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ImportError {
    /// The file as a whole cannot be read in this format (no header, not JSON, …).
    Unreadable(String),
    /// The upload went past one of the byte limits; rows read before it were delivered.
    Limit(Limit),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreadable(why) => f.write_str(why),
            Self::Limit(limit) => limit.fmt(f),
        }
    }
}

impl std::error::Error for ImportError {}

impl ImportError {
    /// A failed read: a limit when that is what stopped it, else the file is unreadable.
    pub(crate) fn io(e: std::io::Error, what: &str) -> Self {
        match Limit::of(&e) {
            Some(limit) => Self::Limit(limit.clone()),
            None => Self::Unreadable(format!("{what}: {e}")),
        }
    }

    /// A CSV error that ends the import (a failed read), or `None` for a bad row.
    pub(crate) fn of_csv(e: csv::Error) -> Result<Self, csv::Error> {
        if !e.is_io_error() {
            return Err(e);
        }
        match e.into_kind() {
            csv::ErrorKind::Io(io) => Ok(Self::io(io, "cannot read the CSV")),
            _ => unreachable!("checked: an I/O error"),
        }
    }

    /// A JSON error: a failed read (a limit) as such, else the file is not `what`.
    pub(crate) fn of_json(e: serde_json::Error, what: &str) -> Self {
        if e.is_io() {
            return Self::io(e.into(), &format!("cannot read {what}"));
        }
        Self::Unreadable(format!("not {what}: {e}"))
    }
}

/// Reads `input` in `format`, calling `row` for each good row and `reject` for each bad one.
///
/// Every row, whatever its format, passes the same checks before `row` sees it (names and
/// tags of at most [`limits::MAX_FIELD_BYTES`], counts and costs within the per-row
/// ceilings, a day between [`limits::FIRST_DAY`] and a year from `today`); one that fails
/// is rejected with the reason. `today` is a day number (`days_since_epoch`).
pub fn import(
    format: Format,
    input: impl std::io::Read,
    mut row: impl FnMut(ImportRow),
    mut reject: impl FnMut(Rejected),
) -> Result<(), ImportError> {
    import_on(today(), format, input, &mut row, &mut reject)
}

/// `import` with today's date given, for tests of the date window.
pub fn import_on(
    today: i64,
    format: Format,
    mut input: impl std::io::Read,
    row: &mut dyn FnMut(ImportRow),
    reject: &mut dyn FnMut(Rejected),
) -> Result<(), ImportError> {
    let first = crate::date::parse_day(limits::FIRST_DAY).expect("a valid first day");
    let mut out = Sink { row, reject, days: (first, today + limits::DAYS_AHEAD) };
    let out = &mut out;
    (format.importer().read)(&mut input, out)
}

/// Today as a day number (days since 1970-01-01, UTC).
pub fn today() -> i64 {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    (secs / 86_400) as i64
}

/// Where importers send what they read. Rows pass the checks every format shares or become
/// rejections; every reason is cut to [`MAX_REASON_BYTES`], since reasons quote the file.
pub(crate) struct Sink<'a> {
    row: &'a mut dyn FnMut(ImportRow),
    reject: &'a mut dyn FnMut(Rejected),
    /// The first and last day a row may carry (day numbers).
    days: (i64, i64),
}

/// Bytes of a row's key (its identity across imports).
pub const MAX_KEY_BYTES: usize = 4 * limits::MAX_FIELD_BYTES + 64;

/// Bytes of a rejection's reason.
pub const MAX_REASON_BYTES: usize = 300;

impl Sink<'_> {
    /// A row read at `line`; `at` says where in a JSON document (`"entry 3: "`), or is empty.
    pub(crate) fn row(&mut self, line: u64, at: &str, r: ImportRow) {
        match check_row(&r, self.days) {
            Ok(()) => (self.row)(r),
            Err(reason) => self.reject(line, format!("{at}{reason}")),
        }
    }

    pub(crate) fn reject(&mut self, line: u64, mut reason: String) {
        if reason.len() > MAX_REASON_BYTES {
            let mut cut = MAX_REASON_BYTES - 3;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
            reason.push('…');
        }
        (self.reject)(Rejected { line: line.max(1), reason });
    }
}

/// The checks every imported row passes, whatever its format: see [`import`].
pub fn check_row(r: &ImportRow, (first, last): (i64, i64)) -> Result<(), String> {
    let u = &r.record;
    let day = crate::date::parse_day(&u.day).ok_or_else(|| format!("`date` is not a date: `{}`", clip(&u.day)))?;
    if day < first || day > last {
        return Err(format!(
            "`date` {} is outside {} … {}: a typo or a clock error",
            u.day,
            limits::FIRST_DAY,
            crate::date::format_day(last)
        ));
    }
    let texts = [
        ("model", u.model.as_str()),
        ("provider", &u.provider),
        ("feature", &u.feature),
        ("project", &u.project),
        ("user", &u.user),
        ("api_key", &u.api_key),
        ("environment", &u.environment),
        ("request_hash", &r.request_hash),
    ];
    for (name, value) in texts {
        if value.len() > limits::MAX_FIELD_BYTES {
            return Err(format!("`{name}` is longer than {} bytes ({} bytes)", limits::MAX_FIELD_BYTES, value.len()));
        }
    }
    // The key is the source's request id behind a short prefix (`litellm:`), a hash, or
    // (OpenAI buckets) the bucket's fields joined.
    if r.key.len() > MAX_KEY_BYTES {
        return Err(format!("the row's identity (request id) is longer than {MAX_KEY_BYTES} bytes"));
    }
    let counts = [
        ("requests", u.requests),
        ("input_tokens", u.input_tokens),
        ("output_tokens", u.output_tokens),
        ("cached_input_tokens", u.cached_input_tokens),
        ("cache_write_tokens", u.cache_write_tokens),
        ("reasoning_tokens", u.reasoning_tokens),
        ("repeat_requests", u.repeat_requests),
    ];
    for (name, n) in counts {
        if n > limits::MAX_ROW_COUNT {
            return Err(format!(
                "`{name}` is above the ceiling of {} per row: {n}",
                crate::group_thousands(limits::MAX_ROW_COUNT)
            ));
        }
    }
    if let Some(cost) = u.cost {
        if cost < Money::ZERO || cost > limits::MAX_ROW_COST {
            return Err(format!("the cost {cost} is above the ceiling of {} per row", limits::MAX_ROW_COST));
        }
    }
    Ok(())
}

/// The start of a quoted value, for reasons.
pub(crate) fn clip(value: &str) -> &str {
    let mut end = value.len().min(64);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// Parses a non-negative decimal amount of dollars exactly ("12.3456785" → 12,345,679
/// micro-dollars, half away from zero past the sixth decimal). No floating point.
pub fn parse_usd(s: &str) -> Option<Money> {
    let s = s.trim().trim_start_matches('$');
    // Exports that went through a float write small amounts as `1.5e-05`: shift the
    // decimal point in the text, still without floating point.
    if let Some((mantissa, exp)) = s.split_once(['e', 'E']) {
        return parse_usd(&shift_decimal(mantissa, exp.parse().ok()?)?);
    }
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut micros: i64 = 0;
    for (i, b) in frac.bytes().take(6).enumerate() {
        micros += i64::from(b - b'0') * 10_i64.pow(5 - i as u32);
    }
    let round_up = frac.as_bytes().get(6).is_some_and(|b| *b >= b'5');
    whole.checked_mul(1_000_000)?.checked_add(micros + i64::from(round_up)).map(Money)
}

/// `"1.5"` shifted by `-5` → `"0.000015"`; `None` for anything that is not plain digits.
fn shift_decimal(mantissa: &str, exp: i32) -> Option<String> {
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = [whole, frac].concat();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || exp.unsigned_abs() > 30 {
        return None;
    }
    let point = whole.len() as i32 + exp; // where the decimal point lands in `digits`
    Some(if point <= 0 {
        format!("0.{}{}", "0".repeat((-point) as usize), digits)
    } else if point as usize >= digits.len() {
        format!("{}{}", digits, "0".repeat(point as usize - digits.len()))
    } else {
        format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
    })
}

/// The first non-blank byte of `input`, without consuming it.
pub(crate) fn first_byte(input: &mut impl std::io::BufRead) -> Result<Option<u8>, ImportError> {
    loop {
        let buf = input.fill_buf().map_err(|e| ImportError::io(e, "cannot read the file"))?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => return Ok(Some(buf[i])),
            None if buf.is_empty() => return Ok(None),
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

/// One JSON document of an export.
pub(crate) enum JsonDoc {
    /// The file is one document (of at most [`limits::MAX_JSON_DOCUMENT_BYTES`]).
    Whole(serde_json::Value),
    /// One line of JSON Lines, with its line number.
    Line(u64, serde_json::Value),
    /// One entry of a larger file's array (or page's `data` array), with its index.
    Entry(usize, serde_json::Value),
}

/// Reads a JSON export: one document of at most [`limits::MAX_JSON_DOCUMENT_BYTES`]
/// (parsed whole), JSON Lines (each line parsed as it is read), or a larger array or page
/// (its entries streamed by [`json_entries`]), calling `each` per document. A line over
/// [`limits::MAX_ROW_BYTES`], or one that is not JSON, is rejected.
pub(crate) fn json_documents(
    mut input: impl std::io::Read,
    what: &str,
    out: &mut Sink,
    each: &mut dyn FnMut(JsonDoc, &mut Sink) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let mut head = Vec::new();
    (&mut input)
        .take(limits::MAX_JSON_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut head)
        .map_err(|e| ImportError::io(e, &format!("cannot read {what}")))?;
    if head.len() <= limits::MAX_JSON_DOCUMENT_BYTES {
        if let Ok(value) = serde_json::from_slice(&head) {
            return each(JsonDoc::Whole(value), out);
        }
    }
    // JSON Lines when the first line is a whole value; else one large document.
    let first = head.split(|&b| b == b'\n').find(|l| !l.trim_ascii().is_empty()).unwrap_or(&[]);
    let lines = first.len() <= limits::MAX_ROW_BYTES && serde_json::from_slice::<serde::de::IgnoredAny>(first).is_ok();
    let input = std::io::Cursor::new(head).chain(input);
    if !lines {
        let mut failed = None;
        json_entries(input, what, out, &mut |i, value, out| {
            if failed.is_none() {
                failed = each(JsonDoc::Entry(i, value), out).err();
            }
        })?;
        return failed.map_or(Ok(()), Err);
    }
    let mut lines = std::io::BufReader::new(input);
    let mut buf = Vec::new();
    for number in 1u64.. {
        match read_line(&mut lines, &mut buf).map_err(|e| ImportError::io(e, &format!("cannot read {what}")))? {
            Line::End => return Ok(()),
            Line::TooLong => out.reject(number, format!("the line is longer than {} bytes", limits::MAX_ROW_BYTES)),
            Line::Read if buf.trim_ascii().is_empty() => {}
            Line::Read => match serde_json::from_slice(&buf) {
                Ok(value) => each(JsonDoc::Line(number, value), out)?,
                Err(e) => out.reject(number, format!("not JSON: {e}")),
            },
        }
    }
    Ok(())
}

/// What `read_line` found.
pub(crate) enum Line {
    End,
    /// A line (without its newline) is in the buffer.
    Read,
    /// The line was longer than [`limits::MAX_ROW_BYTES`]; it was skipped to its end.
    TooLong,
}

/// Reads one line into `buf`, holding at most [`limits::MAX_ROW_BYTES`] of it.
pub(crate) fn read_line(input: &mut impl std::io::BufRead, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    buf.clear();
    let n = std::io::Read::take(&mut *input, limits::MAX_ROW_BYTES as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Line::End);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Line::Read);
    }
    if buf.len() <= limits::MAX_ROW_BYTES {
        return Ok(Line::Read); // the last line, without a newline
    }
    // Skip the rest of the line without holding it.
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                break;
            }
            None => {
                let n = chunk.len();
                input.consume(n);
            }
        }
    }
    buf.clear();
    Ok(Line::TooLong)
}

/// Streams the entries of a JSON array export, `[…]`, or of the `data` array of a page,
/// `{"data": […], …}`, calling `each` with each entry's 1-based index as it is parsed: the
/// array is never held whole. An entry larger than [`limits::MAX_ROW_BYTES`] stops the
/// import there (the entries before it were delivered).
pub(crate) fn json_entries(
    input: impl std::io::Read,
    what: &str,
    out: &mut Sink,
    each: &mut dyn FnMut(usize, serde_json::Value, &mut Sink),
) -> Result<(), ImportError> {
    use serde::de::Deserializer as _;
    let budget = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let reader = Budgeted { inner: std::io::BufReader::new(input), used: budget.clone() };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let visitor = entries::Top { budget, out, each, found: false };
    let found = de.deserialize_any(visitor).map_err(|e| ImportError::of_json(e, what))?;
    de.end().map_err(|e| ImportError::of_json(e, what))?;
    if !found {
        return Err(ImportError::Unreadable(format!("not {what}: no array of entries, nor a `data` array")));
    }
    Ok(())
}

/// Counts the bytes serde_json reads since the current entry began; past
/// [`limits::MAX_ROW_BYTES`], the read fails.
struct Budgeted<R> {
    inner: R,
    used: std::rc::Rc<std::cell::Cell<u64>>,
}

/// The error of an entry over its budget.
#[derive(Debug)]
struct EntryTooLarge;

impl std::fmt::Display for EntryTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an entry is larger than {} bytes", limits::MAX_ROW_BYTES)
    }
}

impl std::error::Error for EntryTooLarge {}

impl<R: std::io::Read> std::io::Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.used.set(self.used.get() + n as u64);
        if self.used.get() > limits::MAX_ROW_BYTES as u64 {
            return Err(std::io::Error::other(EntryTooLarge));
        }
        Ok(n)
    }
}

/// The serde visitors behind `json_entries`.
mod entries {
    use std::cell::Cell;
    use std::rc::Rc;

    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::Value;

    use super::Sink;

    pub(super) struct Top<'a, 'b> {
        pub budget: Rc<Cell<u64>>,
        pub out: &'a mut Sink<'b>,
        pub each: &'a mut dyn FnMut(usize, Value, &mut Sink),
        pub found: bool,
    }

    impl<'de> Visitor<'de> for Top<'_, '_> {
        type Value = bool;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of entries or an object with a `data` array")
        }

        fn visit_seq<A: SeqAccess<'de>>(mut self, seq: A) -> Result<bool, A::Error> {
            Entries(&mut self).visit(seq)?;
            Ok(true)
        }

        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<bool, A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                self.budget.set(0); // keys and skipped values are not entries
                if key == "data" && !self.found {
                    map.next_value_seed(Entries(&mut self))?;
                    self.found = true;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
                self.budget.set(0);
            }
            Ok(self.found)
        }
    }

    /// The array of entries.
    struct Entries<'t, 'a, 'b>(&'t mut Top<'a, 'b>);

    impl<'de> Entries<'_, '_, '_> {
        fn visit<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let top = self.0;
            let mut index = 0;
            loop {
                top.budget.set(0);
                let Some(entry) = seq.next_element::<Value>()? else { return Ok(()) };
                index += 1;
                (top.each)(index, entry, top.out);
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Entries<'_, '_, '_> {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for Entries<'_, '_, '_> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
            self.visit(seq)
        }
    }
}

/// A CSV record longer than [`limits::MAX_ROW_BYTES`] is cut there and ends with this
/// mark, so the CSV reader never holds more than that of one row, and the importer
/// rejects the row (`is_cut`).
const CUT_MARK: &str = "\u{0}apex:row-too-long\u{0}";

/// Whether a CSV record was cut by [`CsvRows`] (the importer rejects it).
pub(crate) fn is_cut(record: &csv::StringRecord) -> bool {
    record.iter().next_back().is_some_and(|f| f.ends_with(CUT_MARK))
}

/// The reason given for a cut record.
pub(crate) fn cut_reason() -> String {
    format!("the row is longer than {} bytes", limits::MAX_ROW_BYTES)
}

/// Passes a CSV file through, cutting every record longer than [`limits::MAX_ROW_BYTES`]:
/// its first bytes stay, then [`CUT_MARK`] (closing a quoted field if one is open), then
/// the record's end; the newlines skipped inside it are kept (in a last quoted field that
/// also ends with the mark), so line numbers stay true.
/// Records are found the way the `csv` crate finds them: a newline (or a carriage return)
/// ends one unless it is inside a quoted field, a field is quoted when it starts with
/// `"`, and `""` inside one is a quote.
pub(crate) struct CsvRows<R> {
    inner: R,
    input: Box<[u8]>,
    at: usize,
    filled: usize,
    state: Scan,
    /// Bytes of the current record so far.
    len: usize,
    /// Skipping the rest of a cut record: the newlines seen in it.
    cut: Option<usize>,
    /// Bytes to pass on before any more of the input (the mark, newlines).
    pending: std::collections::VecDeque<u8>,
    /// The last byte ended a record with CR: an LF right after it is the same line end.
    after_cr: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// At the start of a field.
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: it ends the field, or starts `""`.
    AfterQuote,
}

impl<R: std::io::Read> CsvRows<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            input: vec![0; 64 * 1024].into_boxed_slice(),
            at: 0,
            filled: 0,
            state: Scan::FieldStart,
            len: 0,
            cut: None,
            pending: std::collections::VecDeque::new(),
            after_cr: false,
        }
    }

    /// Moves the quote state past `b`; true when `b` ends the record.
    fn step(&mut self, b: u8) -> bool {
        let (next, ends) = match (self.state, b) {
            (Scan::Quoted, b'"') => (Scan::AfterQuote, false),
            (Scan::Quoted, _) => (Scan::Quoted, false),
            (Scan::FieldStart | Scan::AfterQuote, b'"') => (Scan::Quoted, false),
            (_, b',') => (Scan::FieldStart, false),
            (_, b'\n' | b'\r') => (Scan::FieldStart, true),
            (_, _) => (Scan::Unquoted, false),
        };
        self.state = next;
        ends
    }
}

impl<R: std::io::Read> std::io::Read for CsvRows<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            if let Some(b) = self.pending.pop_front() {
                out[n] = b;
                n += 1;
                continue;
            }
            if self.at == self.filled {
                if n > 0 {
                    break;
                }
                self.filled = self.inner.read(&mut self.input)?;
                self.at = 0;
                if self.filled == 0 {
                    break;
                }
                continue;
            }
            let b = self.input[self.at];
            self.at += 1;
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            let ends = self.step(b);
            // A record ending in CR (CRLF as Excel and Python write, or a lone CR) is
            // passed on ending in LF: the CSV reader counts lines by LF and would number
            // every CRLF row after the first one too low. CRs inside quotes stay.
            let b = if ends && b == b'\r' {
                self.after_cr = true;
                b'\n'
            } else {
                b
            };
            if let Some(newlines) = self.cut.as_mut() {
                if ends {
                    // The record's end. The newlines skipped inside it go before it, in
                    // one more quoted field that ends with the mark as well: the reader
                    // counts newlines inside a record as lines, not blank lines after one.
                    let newlines = *newlines;
                    if newlines > 0 {
                        self.pending.extend(b",\"");
                        self.pending.extend(std::iter::repeat_n(b'\n', newlines));
                        self.pending.extend(CUT_MARK.as_bytes());
                        self.pending.push_back(b'"');
                    }
                    self.pending.push_back(b);
                    self.cut = None;
                    self.len = 0;
                } else if b == b'\n' {
                    *newlines += 1;
                }
                continue;
            }
            if ends {
                self.len = 0;
            } else {
                self.len += 1;
                if self.len > limits::MAX_ROW_BYTES {
                    self.pending.extend(CUT_MARK.as_bytes());
                    if self.state == Scan::Quoted {
                        self.pending.push_back(b'"');
                    }
                    self.cut = Some(usize::from(b == b'\n'));
                    continue;
                }
            }
            out[n] = b;
            n += 1;
        }
        Ok(n)
    }
}

/// FNV-1a over the fields that identify a row: stable across runs and machines.
pub(crate) fn content_key(fields: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for field in fields {
        for b in field.bytes().chain([0x1f]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("row:{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_is_a_day_of_this_century_from_the_clock() {
        let (from, to) = (crate::date::parse_day("2026-01-01").unwrap(), crate::date::parse_day("2100-01-01").unwrap());
        assert!((from..to).contains(&today()), "{}", today());
    }

    #[test]
    fn reasons_quote_at_most_64_bytes_cut_at_a_character() {
        assert_eq!(clip("gpt-4o"), "gpt-4o");
        let euros = "€".repeat(30); // 90 bytes, 3 per character
        assert_eq!(clip(&euros), "€".repeat(21));
        let ascii = "x".repeat(100);
        assert_eq!(clip(&ascii).len(), 64);
    }

    #[test]
    fn dollars_parse_exactly() {
        assert_eq!(parse_usd("12.34"), Some(Money(12_340_000)));
        assert_eq!(parse_usd("$0.000001"), Some(Money(1)));
        assert_eq!(parse_usd("1.0000005"), Some(Money(1_000_001)));
        assert_eq!(parse_usd("7"), Some(Money(7_000_000)));
        assert_eq!(parse_usd(".5"), Some(Money(500_000)));
        assert_eq!(parse_usd("-1"), None);
        assert_eq!(parse_usd("1e3"), Some(Money(1_000_000_000)));
        assert_eq!(parse_usd("1.5e-05"), Some(Money(15)));
        assert_eq!(parse_usd("2.5E-7"), Some(Money(0)), "below half a micro-dollar");
        assert_eq!(parse_usd("7.5e-7"), Some(Money(1)));
        assert_eq!(parse_usd("1e"), None);
        assert_eq!(parse_usd("x1e3"), None);
        assert_eq!(parse_usd(""), None);
    }

    #[test]
    fn an_importer_debugs_as_its_format_and_name() {
        assert_eq!(format!("{:?}", Format::GenericCsv.importer()), r#"Importer { format: GenericCsv, name: "generic_csv", .. }"#);
    }

    #[test]
    fn an_empty_or_blank_export_is_unreadable_for_want_of_a_header() {
        for file in ["", "\n \n"] {
            for format in [Format::HeliconeRequests, Format::LitellmSpendLogs] {
                let result = import(format, file.as_bytes(), |r| panic!("{r:?}"), |r| panic!("{r:?}"));
                assert!(
                    matches!(result, Err(ImportError::Unreadable(ref why)) if why.contains("the header has no")),
                    "{result:?}"
                );
            }
        }
    }

    #[test]
    fn blank_lines_before_a_json_export_are_skipped_however_many() {
        // More blank lines than a read buffer holds, then a LiteLLM array.
        let file = format!(
            "{}{}",
            "\n".repeat(20_000),
            r#"[{"request_id":"r1","startTime":"2026-11-01T00:00:00","model":"gpt-4o","spend":0.1}]"#
        );
        let mut keys = Vec::new();
        import(Format::LitellmSpendLogs, file.as_bytes(), |r| keys.push(r.key), |r| panic!("{r:?}")).unwrap();
        assert_eq!(keys, ["litellm:r1"]);
    }

    #[test]
    fn open_errors_say_what_to_do() {
        let names = Format::names();
        assert_eq!(OpenError::UnknownName("xls".into()).to_string(), format!("unknown format `xls` ({names})"));
        assert_eq!(OpenError::Undetected.to_string(), format!("cannot tell the format; name one of {names}"));
        assert_eq!(OpenError::Read("gone".into()).to_string(), "cannot read the file: gone");
        assert!(names.starts_with("openai_usage_json, ") && names.ends_with(", generic_csv"), "{names}");
    }

    #[test]
    fn blank_lines_between_json_lines_are_skipped() {
        let line = |id: &str| format!(r#"{{"response_id":"{id}","request_created_at":"2026-11-01T00:00:00Z","model":"gpt-4o"}}"#);
        let (rows, bad, result) = helicone(&format!("{}\n\n  \n{}\n\n", line("a"), line("b")));
        result.unwrap();
        assert_eq!((rows, bad), (vec!["helicone:a".to_owned(), "helicone:b".to_owned()], vec![]));
    }

    #[test]
    fn exponents_shift_digits_only_and_at_most_thirty_places() {
        assert_eq!(parse_usd("e5"), None, "no digits to shift");
        assert_eq!(parse_usd(".E5"), None);
        assert_eq!(parse_usd("1x5e-1"), None);
        assert_eq!(parse_usd("5e-30"), Some(Money(0)));
        assert_eq!(parse_usd("5e-31"), None);
        assert_eq!(parse_usd("1e30"), None, "past what an amount can be");
        assert_eq!(parse_usd("5e-2147483648"), None, "the smallest exponent there is");
        assert_eq!(parse_usd("5e2147483647"), None);
    }

    /// A Helicone import of `file`: the rows' ids, the rejections' reasons, the result.
    fn helicone(file: &str) -> (Vec<String>, Vec<String>, Result<(), ImportError>) {
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        let result = import(Format::HeliconeRequests, file.as_bytes(), |r| rows.push(r.key), |r| bad.push(r.reason));
        (rows, bad, result)
    }

    #[test]
    fn a_page_cut_off_mid_way_keeps_the_requests_before_the_cut() {
        let entry =
            |id: &str| format!(r#"{{"response_id":"{id}","request_created_at":"2026-11-01T00:00:00Z","model":"gpt-4o"}}"#);
        let cut = format!(r#"{{"object":"page","data":[{},{},{{"response_id":"c","request_cre"#, entry("a"), entry("b"));
        let (rows, bad, result) = helicone(&cut);
        assert_eq!(rows, ["helicone:a", "helicone:b"]);
        assert!(bad.is_empty(), "{bad:?}");
        assert!(
            matches!(result, Err(ImportError::Unreadable(ref why)) if why.starts_with("not a Helicone JSON export")),
            "{result:?}"
        );
    }

    #[test]
    fn a_large_export_that_is_neither_array_nor_page_says_what_was_expected() {
        let mut bad = Vec::new();
        let result = import(Format::OtelSpansJson, "5 and more".as_bytes(), |_| {}, |r| bad.push(r));
        let Err(ImportError::Unreadable(why)) = result else { panic!("{result:?}") };
        assert!(why.contains("expected an array of entries or an object with a `data` array"), "{why}");
    }

    #[test]
    fn a_json_line_of_exactly_the_row_limit_is_read_and_a_longer_one_rejected_alone() {
        // Helicone JSON Lines: a small request, one padded to exactly the limit, one a byte
        // longer, and a last small one whose line number must stay true.
        let line = |id: &str, len: usize| {
            let l = format!(r#"{{"response_id":"{id}","request_created_at":"2026-11-01T00:00:00Z","model":"gpt-4o""#);
            format!("{l}{}}}", " ".repeat(len - l.len() - 1))
        };
        let file = [
            line("a", 100),
            line("b", limits::MAX_ROW_BYTES),
            line("c", limits::MAX_ROW_BYTES + 1),
            line("d", 100),
            String::new(),
        ]
        .join("\n");
        let (rows, bad, result) = helicone(&file);
        result.unwrap();
        assert_eq!(rows, ["helicone:a", "helicone:b", "helicone:d"]);
        assert_eq!(bad, ["the line is longer than 1048576 bytes"]);
    }

    #[test]
    fn json_lines_keep_their_numbers_after_a_long_line_and_the_last_needs_no_newline() {
        let line = |id: &str| format!(r#"{{"response_id":"{id}","request_created_at":"2026-11-01T00:00:00Z","model":"gpt-4o"}}"#);
        let long = format!(r#"{{"response_id":"{}"}}"#, "x".repeat(limits::MAX_ROW_BYTES));
        let file = format!("{}\n{long}\n{}\nnot json\n{}", line("a"), line("b"), line("c"));
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        import(Format::HeliconeRequests, file.as_bytes(), |r| rows.push(r.key), |r| bad.push(r)).unwrap();
        assert_eq!(rows, ["helicone:a", "helicone:b", "helicone:c"]);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [2, 4], "{bad:?}");
    }

    #[test]
    fn a_page_whose_data_is_not_an_array_says_an_array_was_expected() {
        let (rows, _, result) = helicone(r#"{"object":"page","data":5,"next":"#);
        assert!(rows.is_empty());
        let Err(ImportError::Unreadable(why)) = result else { panic!("{result:?}") };
        assert!(why.contains("invalid type: integer `5`, expected an array at"), "{why}");
    }

    #[test]
    fn formats_are_detected_from_the_head_of_the_file() {
        assert_eq!(Format::detect(b"date,model,input_tokens\n"), Some(Format::GenericCsv));
        assert_eq!(Format::detect(b"\xef\xbb\xbf\"Day\",\"Model\"\n"), Some(Format::GenericCsv), "BOM, quotes, case");
        assert_eq!(Format::detect(b"day,model\n"), Some(Format::GenericCsv));
        assert_eq!(
            Format::detect(br#"{"object":"page","data":[{"results":[{"object":"organization.usage.completions.result"}]}]}"#),
            Some(Format::OpenaiUsageJson)
        );
        assert_eq!(Format::detect(b"hello"), None);
    }
}
