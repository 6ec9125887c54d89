//! Exact fixed-point decimals for handler inputs (quantities, unit prices,
//! tax rates): a decimal is read as an integer count of `10^-scale` units,
//! never through float arithmetic.
//!
//! JSON numbers with a fraction reach us as `f64` (serde_json without
//! `arbitrary_precision`); their shortest round-trip text is the decimal the
//! sender wrote whenever it has at most 15 significant digits, which every
//! value our schemas allow has. Strings are read as written.

use serde_json::Value;

/// Reads a non-negative decimal with at most `scale` fraction digits (after
/// dropping trailing zeros) and at most `whole_digits_max` whole digits, as a
/// count of `10^-scale` units. `allow_dollar` accepts a leading `$` on strings.
pub(crate) fn parse_fixed(
    value: &Value,
    scale: u32,
    whole_digits_max: usize,
    allow_dollar: bool,
) -> Result<u128, String> {
    match value {
        Value::String(text) => {
            let text = text.trim();
            let text = if allow_dollar {
                text.strip_prefix('$').unwrap_or(text)
            } else {
                text
            };
            parse_text(text, scale, whole_digits_max)
        }
        Value::Number(number) => {
            if let Some(whole) = number.as_u64() {
                return parse_text(&whole.to_string(), scale, whole_digits_max);
            }
            if number.as_i64().is_some() {
                return Err("must not be negative".to_owned());
            }
            let float = number.as_f64().ok_or("is not a number")?;
            if !float.is_finite() {
                return Err("is not a finite number".to_owned());
            }
            if float < 0.0 {
                return Err("must not be negative".to_owned());
            }
            parse_text(&format!("{float}"), scale, whole_digits_max)
        }
        _ => Err("must be a number or a decimal string".to_owned()),
    }
}

fn parse_text(text: &str, scale: u32, whole_digits_max: usize) -> Result<u128, String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err("is empty".to_owned());
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err("is not a plain decimal like 12.50".to_owned());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > scale as usize {
        return Err(format!("has more than {scale} decimal places"));
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() > whole_digits_max {
        return Err(format!(
            "is larger than {whole_digits_max} whole digits allow"
        ));
    }
    let mut units: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        units = units * 10 + u128::from(digit - b'0');
    }
    // Pad the fraction to `scale` digits.
    let padding = scale as usize - fraction.len();
    Ok(units * 10u128.pow(padding as u32))
}

/// `numerator / denominator` rounded half away from zero (commercial rounding).
pub(crate) fn div_round_half_up(numerator: u128, denominator: u128) -> u128 {
    (numerator + denominator / 2) / denominator
}

/// Renders `units` of `10^-scale` as a plain decimal with exactly `scale`
/// fraction digits (`"1234.50"`); `grouped` inserts thousands separators.
pub(crate) fn format_fixed(units: u128, scale: u32, grouped: bool) -> String {
    let divisor = 10u128.pow(scale);
    let whole = (units / divisor).to_string();
    let whole = if grouped {
        group_thousands(&whole)
    } else {
        whole
    };
    if scale == 0 {
        return whole;
    }
    format!(
        "{whole}.{:0width$}",
        units % divisor,
        width = scale as usize
    )
}

/// Renders `units` of `10^-scale` with trailing zeros dropped (`"8.25"`, `"20"`).
pub(crate) fn format_trimmed(units: u128, scale: u32) -> String {
    let text = format_fixed(units, scale, false);
    if scale == 0 {
        return text;
    }
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_numbers_and_strings_exactly() {
        assert_eq!(parse_fixed(&json!(0.1), 6, 9, false), Ok(100_000));
        assert_eq!(parse_fixed(&json!(0.2), 6, 9, false), Ok(200_000));
        assert_eq!(parse_fixed(&json!("19.99"), 6, 9, false), Ok(19_990_000));
        assert_eq!(parse_fixed(&json!("$5"), 2, 9, true), Ok(500));
        assert_eq!(parse_fixed(&json!(3), 3, 7, false), Ok(3_000));
        assert_eq!(parse_fixed(&json!("1.500"), 1, 7, false), Ok(15));
        assert_eq!(parse_fixed(&json!(".5"), 1, 7, false), Ok(5));
    }

    #[test]
    fn refuses_what_is_not_an_exact_non_negative_decimal() {
        assert!(parse_fixed(&json!(-1), 2, 9, false).is_err());
        assert!(parse_fixed(&json!(-0.5), 2, 9, false).is_err());
        assert!(parse_fixed(&json!("0.001"), 2, 9, false).is_err());
        assert!(parse_fixed(&json!("1e3"), 2, 9, false).is_err());
        assert!(parse_fixed(&json!("$5"), 2, 9, false).is_err());
        assert!(parse_fixed(&json!("1234567890"), 2, 9, false).is_err());
        assert!(parse_fixed(&json!("."), 2, 9, false).is_err());
        assert!(parse_fixed(&json!(""), 2, 9, false).is_err());
        assert!(parse_fixed(&json!(true), 2, 9, false).is_err());
        assert!(parse_fixed(&json!(1e300), 2, 9, false).is_err());
    }

    #[test]
    fn rounds_and_renders() {
        assert_eq!(div_round_half_up(5, 10), 1);
        assert_eq!(div_round_half_up(4, 10), 0);
        assert_eq!(div_round_half_up(15, 10), 2);
        assert_eq!(format_fixed(30, 2, false), "0.30");
        assert_eq!(format_fixed(123_456_789, 2, true), "1,234,567.89");
        assert_eq!(format_fixed(100_000, 0, true), "100,000");
        assert_eq!(format_fixed(5, 3, false), "0.005");
        assert_eq!(format_trimmed(82_500, 4), "8.25");
        assert_eq!(format_trimmed(200_000, 4), "20");
        assert_eq!(format_trimmed(0, 4), "0");
    }
}
