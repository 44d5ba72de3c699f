//! The limits every import and analysis keeps, whatever the file says. Each is documented
//! in `docs/security.md` with the answer a client gets when it is reached.
//!
//! They are sized so that a hostile file cannot take memory, the store or the arithmetic
//! beyond what a real export needs: a real export row is a few hundred bytes, names a few
//! dozen characters, costs below a million dollars a row.
use crate::money::{Money, MICROS_PER_USD};

/// Decompressed bytes an import may produce. Streamed, so this bounds work, not memory.
pub const MAX_DECOMPRESSED_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Decompressed bytes allowed before the compression ratio is checked: a small, highly
/// repetitive file may compress far better than a large real export does.
pub const RATIO_ALLOWANCE_BYTES: u64 = 16 * 1024 * 1024;
/// Past the allowance, decompressed bytes per compressed byte. Usage exports compress
/// 5–30×; gzip's limit is about 1,032×, which is what a bomb uses.
pub const MAX_COMPRESSION_RATIO: u64 = 100;

/// Bytes of one row: a CSV record, a JSON Lines line, one element of a JSON array.
pub const MAX_ROW_BYTES: usize = 1024 * 1024;
/// A JSON export that is one document (an OpenAI usage page, an OTLP export request)
/// is parsed whole: its size in bytes. Larger exports are JSON Lines or arrays, which are
/// read entry by entry.
pub const MAX_JSON_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// Bytes of a name or tag (model, provider, feature, project, end user, API key,
/// environment) and of a request id or request hash.
pub const MAX_FIELD_BYTES: usize = 256;

/// Tokens of each kind, and requests, in one row: a trillion, far above a day of any
/// organisation's usage.
pub const MAX_ROW_COUNT: u64 = 1_000_000_000_000;
/// The billed cost of one row: $1,000,000,000.
pub const MAX_ROW_COST: Money = Money(1_000_000_000 * MICROS_PER_USD);

/// What one account's stored usage may add up to, in cost and in each count: far below
/// what the store's 64-bit sums hold ($9.2 trillion; 9.2 × 10^18), so that no sum of
/// rows under the per-row ceilings can wrap, turn into a float or fail in the database.
pub const MAX_ACCOUNT_COST: Money = Money(1_000_000_000_000 * MICROS_PER_USD);
pub const MAX_ACCOUNT_COUNT: u64 = 1_000_000_000_000_000_000 / 10;

/// The first day a row may carry: usage of LLM APIs before 2000 is a mistake in the file.
pub const FIRST_DAY: &str = "2000-01-01";
/// How far past today a row's day may be: an export is of the past; a year's slack covers
/// clocks and time zones with room to spare.
pub const DAYS_AHEAD: i64 = 366;

/// Entries of a breakdown an analysis or a tool lists (the rest are counted).
pub const MAX_LISTED_GROUPS: usize = 50;
/// Calendar days over which a daily series fills the days without usage with $0; a wider
/// span lists only the days that have usage.
pub const MAX_FILLED_DAYS: i64 = 3_660;

// What the ceilings promise, checked when the crate compiles: an account holds many rows at
// the row ceilings, and its own ceilings leave room in a signed 64-bit sum.
const _: () = {
    assert!(MAX_ACCOUNT_COUNT >= 100 * MAX_ROW_COUNT);
    assert!(MAX_ACCOUNT_COST.0 >= MAX_ROW_COST.0);
    assert!(MAX_ACCOUNT_COUNT < i64::MAX as u64 / 10);
    assert!(MAX_ACCOUNT_COST.0 <= i64::MAX / 9);
};
