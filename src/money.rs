//! Money: [`Micros`], an exact count of micro-USDC (`1 USDC = 1_000_000`).
//!
//! This module owns every conversion between the wire's decimal notation
//! (`"$0.005"`, `"0.005"`, JSON `0.005`) and the integer the rest of the Hub
//! computes with. No float ever holds a balance, price or split (DESIGN §3.1).
//!
//! Amounts are bounded by [`Micros::MAX`] (just under one billion USDC). The
//! bound keeps every amount at 15 significant decimal digits or fewer, which is
//! what lets [`Micros::to_json`] hand serde_json an `f64` that prints back as
//! the exact decimal (any decimal of at most 15 significant digits survives a
//! round trip through `f64` and Rust's shortest-representation printer).

use std::fmt;
use std::str::FromStr;

/// Micro-units per whole USDC.
pub const MICROS_PER_USDC: u64 = 1_000_000;

/// An amount of micro-USDC. Never negative; never above [`Micros::MAX`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(u64);

/// Why a decimal amount was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoneyError {
    Empty,
    Negative,
    /// More than six digits after the decimal point.
    TooPrecise,
    /// Above [`Micros::MAX`].
    Overflow,
    /// Not a plain decimal (letters, exponent, NaN, several points, …).
    Malformed,
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            MoneyError::Empty => "amount is empty",
            MoneyError::Negative => "amount must not be negative",
            MoneyError::TooPrecise => "amount has more than 6 decimal places (USDC precision)",
            MoneyError::Overflow => "amount is larger than 999,999,999.999999 USDC",
            MoneyError::Malformed => "amount is not a plain decimal number like 0.005",
        };
        f.write_str(text)
    }
}

impl std::error::Error for MoneyError {}

impl Micros {
    pub const ZERO: Micros = Micros(0);
    /// The largest amount the Hub represents: 999,999,999.999999 USDC.
    pub const MAX: Micros = Micros(999_999_999_999_999);

    /// An amount from a raw micro count; `None` above [`Micros::MAX`].
    pub const fn new(micros: u64) -> Option<Micros> {
        if micros > Self::MAX.0 {
            None
        } else {
            Some(Micros(micros))
        }
    }

    /// Whole USDC, for configuration and tests.
    pub const fn from_usdc(usdc: u64) -> Micros {
        assert!(usdc <= Self::MAX.0 / MICROS_PER_USDC);
        Micros(usdc * MICROS_PER_USDC)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Micros) -> Option<Micros> {
        self.0.checked_add(other.0).and_then(Micros::new)
    }

    pub fn checked_sub(self, other: Micros) -> Option<Micros> {
        self.0.checked_sub(other.0).map(Micros)
    }

    pub fn saturating_sub(self, other: Micros) -> Micros {
        Micros(self.0.saturating_sub(other.0))
    }

    /// Parses `"$0.005"`, `"0.005"`, `"5"` or `".5"` exactly. Surrounding
    /// whitespace is allowed; signs, exponents and thousands separators are not.
    pub fn parse(text: &str) -> Result<Micros, MoneyError> {
        let text = text.trim();
        let text = text.strip_prefix('$').unwrap_or(text);
        if text.is_empty() {
            return Err(MoneyError::Empty);
        }
        if text.starts_with('-') {
            return Err(MoneyError::Negative);
        }
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (text, ""),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(MoneyError::Malformed);
        }
        if !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(MoneyError::Malformed);
        }
        // Trailing zeros carry no value: "0.0050000" is 0.005.
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > 6 {
            return Err(MoneyError::TooPrecise);
        }
        let whole = whole.trim_start_matches('0');
        if whole.len() > 9 {
            return Err(MoneyError::Overflow);
        }
        let whole_value: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| MoneyError::Malformed)?
        };
        let mut fraction_value: u64 = 0;
        for digit in fraction.bytes().chain(std::iter::repeat(b'0')).take(6) {
            fraction_value = fraction_value * 10 + u64::from(digit - b'0');
        }
        Micros::new(whole_value * MICROS_PER_USDC + fraction_value).ok_or(MoneyError::Overflow)
    }

    /// Reads a JSON number or string. Numbers are taken from their decimal
    /// text as written, never through a float, so `0.1` is exactly 100,000.
    pub fn from_json(value: &serde_json::Value) -> Result<Micros, MoneyError> {
        match value {
            serde_json::Value::String(text) => Micros::parse(text),
            serde_json::Value::Number(number) => Micros::parse_json_number(number),
            _ => Err(MoneyError::Malformed),
        }
    }

    fn parse_json_number(number: &serde_json::Number) -> Result<Micros, MoneyError> {
        if let Some(unsigned) = number.as_u64() {
            return unsigned
                .checked_mul(MICROS_PER_USDC)
                .and_then(Micros::new)
                .ok_or(MoneyError::Overflow);
        }
        if number.as_i64().is_some() {
            return Err(MoneyError::Negative);
        }
        // A float: serde_json kept only the f64, so use its shortest
        // round-trip text, which is the decimal the sender most likely wrote.
        let float = number.as_f64().ok_or(MoneyError::Malformed)?;
        if !float.is_finite() {
            return Err(MoneyError::Malformed);
        }
        if float < 0.0 {
            return Err(MoneyError::Negative);
        }
        let text = format!("{float}");
        if text.contains(['e', 'E']) {
            // Rust prints very small or large floats in plain notation, but be
            // strict: anything with an exponent is beyond USDC's range anyway.
            return Err(if float >= 1.0 {
                MoneyError::Overflow
            } else {
                MoneyError::TooPrecise
            });
        }
        Micros::parse(&text)
    }

    /// The amount as a JSON number that prints as its exact decimal
    /// (`0.005`, `20`, `19.995`). See the module doc for why this is exact.
    pub fn to_json(self) -> serde_json::Value {
        if self.0.is_multiple_of(MICROS_PER_USDC) {
            return serde_json::Value::from(self.0 / MICROS_PER_USDC);
        }
        let float = self.0 as f64 / MICROS_PER_USDC as f64;
        debug_assert_eq!(Micros::parse(&format!("{float}")), Ok(self));
        serde_json::Value::from(float)
    }
}

/// Below this many micros (0.00001 USDC) serde_json prints a fraction with an
/// exponent (`5e-6`), which [`Micros::write_json`] leaves to serde_json.
const PLAIN_DECIMAL_MICROS_MIN: u64 = 10;

impl Micros {
    /// Appends exactly the bytes serde_json writes for [`Micros::to_json`],
    /// without building a `Value` or formatting a float: the store writer
    /// renders five amounts into every success body.
    pub fn write_json(self, out: &mut Vec<u8>) {
        let whole = self.0 / MICROS_PER_USDC;
        let fraction = self.0 % MICROS_PER_USDC;
        if fraction == 0 || self.0 < PLAIN_DECIMAL_MICROS_MIN {
            // Whole amounts are integers; the tiniest fractions take an exponent.
            let written = serde_json::to_writer(&mut *out, &self.to_json());
            debug_assert!(written.is_ok(), "writing a number into memory failed");
            return;
        }
        push_decimal_digits(whole, out);
        out.push(b'.');
        let mut digits = [b'0'; 6];
        let mut rest = fraction;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        let significant = 6 - digits
            .iter()
            .rev()
            .take_while(|&&digit| digit == b'0')
            .count();
        out.extend_from_slice(&digits[..significant]);
    }
}

/// `value` in decimal, no sign, no leading zeros.
fn push_decimal_digits(value: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

impl fmt::Display for Micros {
    /// The shortest exact decimal: `0.005`, `20`, `19.995`, `0.000001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / MICROS_PER_USDC;
        let fraction = self.0 % MICROS_PER_USDC;
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{fraction:06}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl FromStr for Micros {
    type Err = MoneyError;
    fn from_str(text: &str) -> Result<Micros, MoneyError> {
        Micros::parse(text)
    }
}

impl serde::Serialize for Micros {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Micros {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Micros, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Micros::from_json(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde_text(amount: Micros) -> String {
        serde_json::to_string(&amount.to_json()).unwrap()
    }

    fn fast_text(amount: Micros) -> String {
        let mut out = Vec::new();
        amount.write_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn write_json_is_serdes_text_for_every_small_amount() {
        // Every amount up to 0.2 USDC, where the exponent form and the
        // shortest-float rounding would show first.
        for micros in 0..=200_000 {
            let amount = Micros(micros);
            assert_eq!(fast_text(amount), serde_text(amount), "{micros} micros");
        }
        for micros in [1_000_000, 19_995_000, 123_456_789_012, Micros::MAX.0] {
            assert_eq!(fast_text(Micros(micros)), serde_text(Micros(micros)));
        }
    }

    proptest! {
        #[test]
        fn write_json_is_serdes_text(micros in 0..=Micros::MAX.0) {
            prop_assert_eq!(fast_text(Micros(micros)), serde_text(Micros(micros)));
        }
    }

    #[test]
    fn parses_the_wire_forms() {
        assert_eq!(Micros::parse("$0.005"), Ok(Micros(5_000)));
        assert_eq!(Micros::parse("0.005"), Ok(Micros(5_000)));
        assert_eq!(Micros::parse("20"), Ok(Micros(20_000_000)));
        assert_eq!(Micros::parse(".5"), Ok(Micros(500_000)));
        assert_eq!(Micros::parse("5."), Ok(Micros(5_000_000)));
        assert_eq!(Micros::parse(" 0.0050000 "), Ok(Micros(5_000)));
        assert_eq!(Micros::parse("999999999.999999"), Ok(Micros::MAX));
    }

    #[test]
    fn rejects_what_is_not_money() {
        assert_eq!(Micros::parse(""), Err(MoneyError::Empty));
        assert_eq!(Micros::parse("$"), Err(MoneyError::Empty));
        assert_eq!(Micros::parse("-1"), Err(MoneyError::Negative));
        assert_eq!(Micros::parse("0.0000001"), Err(MoneyError::TooPrecise));
        assert_eq!(Micros::parse("1000000000"), Err(MoneyError::Overflow));
        assert_eq!(Micros::parse("NaN"), Err(MoneyError::Malformed));
        assert_eq!(Micros::parse("1e3"), Err(MoneyError::Malformed));
        assert_eq!(Micros::parse("1.2.3"), Err(MoneyError::Malformed));
        assert_eq!(Micros::parse("."), Err(MoneyError::Malformed));
        assert_eq!(Micros::parse("+1"), Err(MoneyError::Malformed));
        assert_eq!(Micros::parse("1,000"), Err(MoneyError::Malformed));
    }

    #[test]
    fn reads_json_numbers_exactly() {
        let parse = |text: &str| Micros::from_json(&serde_json::from_str(text).unwrap());
        assert_eq!(parse("0.1"), Ok(Micros(100_000)));
        assert_eq!(parse("0.005"), Ok(Micros(5_000)));
        assert_eq!(parse("5"), Ok(Micros(5_000_000)));
        assert_eq!(parse("\"$0.20\""), Ok(Micros(200_000)));
        assert_eq!(parse("-5"), Err(MoneyError::Negative));
        assert_eq!(parse("-0.5"), Err(MoneyError::Negative));
        assert_eq!(parse("0.0000001"), Err(MoneyError::TooPrecise));
        assert_eq!(parse("1e30"), Err(MoneyError::Overflow));
        assert_eq!(parse("18446744073709551615"), Err(MoneyError::Overflow));
        assert_eq!(parse("true"), Err(MoneyError::Malformed));
    }

    #[test]
    fn renders_shortest_exact_decimal() {
        assert_eq!(Micros(5_000).to_string(), "0.005");
        assert_eq!(Micros(19_995_000).to_string(), "19.995");
        assert_eq!(Micros(1).to_string(), "0.000001");
        assert_eq!(Micros(20_000_000).to_string(), "20");
        assert_eq!(Micros(0).to_string(), "0");
        assert_eq!(serde_json::to_string(&Micros(5_000)).unwrap(), "0.005");
        assert_eq!(serde_json::to_string(&Micros(300_000)).unwrap(), "0.3");
        assert_eq!(serde_json::to_string(&Micros(20_000_000)).unwrap(), "20");
    }

    proptest! {
        #[test]
        fn render_then_parse_is_identity(raw in 0..=Micros::MAX.0) {
            let amount = Micros(raw);
            prop_assert_eq!(Micros::parse(&amount.to_string()), Ok(amount));
            prop_assert_eq!(Micros::parse(&format!("${amount}")), Ok(amount));
            let json = serde_json::to_string(&amount).unwrap();
            prop_assert_eq!(&json, &amount.to_string());
            prop_assert_eq!(serde_json::from_str::<Micros>(&json).unwrap(), amount);
        }

        #[test]
        fn parse_then_render_is_canonical(whole in 0u64..1_000_000_000, fraction in 0u64..1_000_000, pad in 0usize..3) {
            let text = format!("{whole}.{fraction:06}{}", "0".repeat(pad));
            let amount = Micros::parse(&text).unwrap();
            prop_assert_eq!(amount.get(), whole * MICROS_PER_USDC + fraction);
            let canonical = amount.to_string();
            prop_assert_eq!(Micros::parse(&canonical), Ok(amount));
            prop_assert!(!canonical.contains('.') || !canonical.ends_with('0'));
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,40}") {
            let _ = Micros::parse(&text);
        }
    }
}
