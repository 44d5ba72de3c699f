//! Exact money.
//!
//! Spend is summed over millions of token counts, so every amount is an
//! integer number of micro-dollars: addition is exact and totals always equal
//! the sum of their parts. Floating point appears only at the edges
//! (`Money::usd`, for percentages and charts), never in arithmetic.
//!
//! Arithmetic saturates at the ends of `i64` instead of wrapping: imported rows are far
//! inside the range (`crate::limits`), and a sum that still reaches an end is then the
//! largest amount, never a wrapped, plausible-looking one.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};

/// Micro-dollars in one US dollar.
pub const MICROS_PER_USD: i64 = 1_000_000;

/// Micro-dollars in one cent.
const MICROS_PER_CENT: u64 = 10_000;

/// Exact money in micro-dollars (1 USD = 1_000_000).
///
/// Serializes as the bare integer of micro-dollars, so JSON consumers never
/// see a rounded or binary-float amount; `Display` gives the human form
/// (`$1,234.56`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Money(pub i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn from_usd_cents(cents: i64) -> Money {
        Money(cents * MICROS_PER_CENT as i64)
    }

    /// Approximate dollars, for display and percentages only.
    pub fn usd(self) -> f64 {
        self.0 as f64 / MICROS_PER_USD as f64
    }

    /// `self * num / den`, rounded half away from zero.
    ///
    /// Used to scale amounts (normalising to a month, applying a discount)
    /// without leaving integer arithmetic; i128 makes the intermediate
    /// product overflow-proof. A zero `den` yields zero rather than a panic,
    /// because "no data" is the only way callers reach it.
    pub fn mul_div(self, num: i64, den: i64) -> Money {
        if den == 0 {
            return Money::ZERO;
        }
        Money::clamp(div_round_half_away(self.0 as i128 * num as i128, den as i128))
    }

    /// An i128 amount, saturated into `Money`'s range.
    pub fn clamp(micros: i128) -> Money {
        Money(micros.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }

    /// `self` as a share of `whole` in basis points ([`basis_points`]); `None` when `whole`
    /// is zero or less.
    pub fn ratio_bp(self, whole: Money) -> Option<i64> {
        basis_points(i128::from(self.0), i128::from(whole.0))
    }

    /// `self` as a share of `total` in whole basis points, 0 when there is no total or the
    /// share is negative.
    pub fn share_bp(self, total: Money) -> u32 {
        self.ratio_bp(total).map_or(0, |bp| u32::try_from(bp).unwrap_or(0))
    }

    /// `self + rhs`, or `None` when it does not fit.
    pub fn checked_add(self, rhs: Money) -> Option<Money> {
        self.0.checked_add(rhs.0).map(Money)
    }
}

/// `part / whole` in basis points (1 % = 100), cut toward zero, the one way every share and
/// change is computed: an answer rounds it once, to a tenth of a percent, and rounding twice
/// would turn 35.846 % into 35.9 %. `None` when `whole` is zero or less.
pub fn basis_points(part: i128, whole: i128) -> Option<i64> {
    (whole > 0).then(|| (part.saturating_mul(10_000) / whole).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// Integer division rounding half away from zero (so 2.5 -> 3, -2.5 -> -3).
pub(crate) fn div_round_half_away(num: i128, den: i128) -> i128 {
    let (num, den) = if den < 0 { (-num, -den) } else { (num, den) };
    let half = den / 2;
    if num >= 0 {
        (num + half) / den
    } else {
        (num - half) / den
    }
}

impl fmt::Display for Money {
    /// `$1,234.56`: rounded half-up to the cent; negatives as `-$1.23`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Round the magnitude so that -$1.235 shows as -$1.24, mirroring $1.24.
        // `unsigned_abs` keeps i64::MIN representable.
        let cents = (self.0.unsigned_abs() + MICROS_PER_CENT / 2) / MICROS_PER_CENT;
        // A tiny negative amount that rounds to zero must not print "-$0.00".
        let sign = if self.0 < 0 && cents > 0 { "-" } else { "" };
        write!(f, "{sign}${}.{:02}", group_thousands(cents / 100), cents % 100)
    }
}

/// `1234567` -> `"1,234,567"`; for token and request counts in texts.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0.saturating_sub(rhs.0))
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(self.0.saturating_neg())
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        *self = *self + rhs;
    }
}

impl SubAssign for Money {
    fn sub_assign(&mut self, rhs: Money) {
        *self = *self - rhs;
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}

impl<'a> Sum<&'a Money> for Money {
    fn sum<I: Iterator<Item = &'a Money>>(iter: I) -> Money {
        iter.copied().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(micros: i64) -> String {
        Money(micros).to_string()
    }

    #[test]
    fn display_rounds_half_up_to_the_cent() {
        assert_eq!(show(1_234_565), "$1.23");
        assert_eq!(show(1_234_999), "$1.23");
        assert_eq!(show(1_235_000), "$1.24");
        assert_eq!(show(4_999), "$0.00");
        assert_eq!(show(5_000), "$0.01");
    }

    #[test]
    fn display_zero_large_and_negative() {
        assert_eq!(show(0), "$0.00");
        assert_eq!(show(1_234_567_890_000), "$1,234,567.89");
        assert_eq!(show(999_999_995_000), "$1,000,000.00");
        assert_eq!(show(100_000_000), "$100.00");
        assert_eq!(show(-1_230_000), "-$1.23");
        assert_eq!(show(-1_235_000), "-$1.24");
        assert_eq!(show(-4_999), "$0.00");
        assert_eq!(show(i64::MIN), "-$9,223,372,036,854.78");
    }

    #[test]
    fn serializes_as_integer_micros() {
        assert_eq!(serde_json::to_string(&Money(1_500_000)).unwrap(), "1500000");
    }

    #[test]
    fn arithmetic_is_exact() {
        let parts = [Money(1), Money(2), Money::from_usd_cents(150)];
        assert_eq!(parts.iter().sum::<Money>(), Money(1_500_003));
        assert_eq!(Money(10) - Money(25), Money(-15));
        assert_eq!(Money::from_usd_cents(123).micros(), 1_230_000);
        assert!((Money(2_500_000).usd() - 2.5).abs() < 1e-12);
    }

    #[test]
    fn mul_div_rounds_half_away_from_zero() {
        assert_eq!(Money(5).mul_div(1, 2), Money(3));
        assert_eq!(Money(-5).mul_div(1, 2), Money(-3));
        assert_eq!(Money(7).mul_div(30, 7), Money(30));
        assert_eq!(Money(100).mul_div(1, 0), Money(0));
        assert_eq!(Money(i64::MAX).mul_div(3, 3), Money(i64::MAX));
    }

    #[test]
    fn a_negative_divisor_flips_the_sign_and_still_rounds_half_away_from_zero() {
        assert_eq!(Money(5).mul_div(1, -2), Money(-3));
        assert_eq!(Money(-5).mul_div(1, -2), Money(3));
        assert_eq!(Money(7).mul_div(1, -2), Money(-4));
        assert_eq!(Money(9).mul_div(-1, -4), Money(2));
    }

    #[test]
    fn checked_add_gives_the_exact_sum_when_it_fits() {
        assert_eq!(Money(2).checked_add(Money(-5)), Some(Money(-3)));
        assert_eq!(Money(i64::MAX - 1).checked_add(Money(1)), Some(Money(i64::MAX)));
    }

    #[test]
    fn compound_assignment_adds_and_subtracts() {
        let mut m = Money(10);
        m += Money(5);
        assert_eq!(m, Money(15));
        m -= Money(20);
        assert_eq!(m, Money(-5));
        m -= Money(i64::MAX);
        assert_eq!(m, Money(i64::MIN), "subtraction saturates too");
    }

    #[test]
    fn sums_saturate_instead_of_wrapping() {
        let big = Money(9_000_000_000_000_000_000);
        assert_eq!([big, big, big].iter().sum::<Money>(), Money(i64::MAX));
        assert_eq!(Money(i64::MIN) - Money(1), Money(i64::MIN));
        assert_eq!(-Money(i64::MIN), Money(i64::MAX));
        assert_eq!(Money(i64::MAX).mul_div(30, 1), Money(i64::MAX));
        assert_eq!(big.checked_add(big), None);
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_000), "1,000");
        assert_eq!(group_thousands(12_345_678), "12,345,678");
    }
}
