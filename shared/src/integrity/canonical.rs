//! The JSON Canonicalization Scheme (RFC 8785): one byte string per JSON value, whatever the key
//! order, white space or number spelling it arrived with, so that a hash of it means the value.
//!
//! - objects: members sorted by their names' UTF-16 code units, no white space;
//! - strings: only `"`, `\` and control characters escaped (`\b \t \n \f \r`, else `\u00xx`);
//! - numbers: as ECMAScript writes an IEEE-754 double (`4.5`, `1e+30`, `0.002`, `-0` as `0`).
//!
//! Numbers that a double does not hold exactly (integers beyond 2^53 that are not themselves
//! doubles) have no canonical form: [`to_string`] refuses them, and validation refuses them at
//! the door, so a commitment always covers exactly the stored value.

use serde_json::{Number, Value};
use thiserror::Error;

/// A number RFC 8785 cannot represent exactly.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the number {0} is not exactly representable as an IEEE-754 double")]
pub struct InexactNumber(pub String);

/// Whether `n` is exactly a double (so its canonical form stands for it alone).
pub fn is_exact(n: &Number) -> bool {
    // A double's integer value, cast back, equals the integer only if the double holds it.
    if let Some(i) = n.as_i64() {
        return (i as f64) as i128 == i128::from(i);
    }
    if let Some(u) = n.as_u64() {
        return (u as f64) as u128 == u128::from(u);
    }
    n.as_f64().is_some_and(f64::is_finite)
}

/// The canonical text of a string.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_string(s, &mut out);
    out
}

/// The canonical text of an object (without wrapping it in a `Value` first).
pub fn object(map: &serde_json::Map<String, Value>) -> Result<String, InexactNumber> {
    let mut out = String::new();
    write_object(map, &mut out)?;
    Ok(out)
}

/// RFC 8785's member order: by UTF-16 code units. For ASCII names that is byte order (names are
/// unique, so an unstable sort is exact).
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() { a.as_bytes().cmp(b.as_bytes()) } else { a.encode_utf16().cmp(b.encode_utf16()) }
}

/// The canonical text of `value`.
pub fn to_string(value: &Value) -> Result<String, InexactNumber> {
    let mut out = String::new();
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut String) -> Result<(), InexactNumber> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if !is_exact(n) {
                return Err(InexactNumber(n.to_string()));
            }
            // Integers a double holds exactly are written as ECMAScript writes them: their digits.
            match (n.as_i64(), n.as_u64()) {
                (Some(i), _) if i.unsigned_abs() < 1 << 53 => {
                    use std::fmt::Write;
                    write!(out, "{i}").expect("writing to a String");
                }
                (None, Some(u)) if u < 1 << 53 => {
                    use std::fmt::Write;
                    write!(out, "{u}").expect("writing to a String");
                }
                _ => write_number(n.as_f64().ok_or_else(|| InexactNumber(n.to_string()))?, out),
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(map, out)?,
    }
    Ok(())
}

fn write_object(map: &serde_json::Map<String, Value>, out: &mut String) -> Result<(), InexactNumber> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_unstable_by(|(a, _), (b, _)| utf16_order(a, b));
    out.push('{');
    for (i, (name, member)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(name, out);
        out.push(':');
        write_value(member, out)?;
    }
    out.push('}');
    Ok(())
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    // Most strings need no escape at all: copy them whole.
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < b' ') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// ECMAScript's Number::toString for a finite double: the shortest digits that read back as the
/// same double, placed as the language places them.
fn write_number(value: f64, out: &mut String) {
    if value == 0.0 {
        out.push('0');
        return;
    }
    if value < 0.0 {
        out.push('-');
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `d.ddde±x`.
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} always has an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exponent.parse::<i32>().expect("a decimal exponent") + 1;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if n - 1 < 0 { '-' } else { '+' });
        out.push_str(&(n - 1).abs().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_rfc_8785_example_canonicalises_as_published() {
        // RFC 8785 §3.2.2's input, and its §3.2.3 output.
        let input = r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}"#;
        let value: Value = serde_json::from_str(input).unwrap();
        assert_eq!(
            to_string(&value).unwrap(),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn numbers_are_written_as_ecmascript_writes_them() {
        for (value, text) in [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456789.0, "123456789"),
            (0.000001, "0.000001"),
            (0.0000001, "1e-7"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (9007199254740992.0, "9007199254740992"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            let mut out = String::new();
            write_number(value, &mut out);
            assert_eq!(out, text, "{value:e}");
        }
    }

    #[test]
    fn members_sort_by_utf16_code_units_not_bytes() {
        // RFC 8785 §3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FB33 in UTF-16,
        // though after it in UTF-8 bytes.
        let value = json!({"\u{fb33}": 1, "\u{1f600}": 2, "a": 3, "\r": 4});
        assert_eq!(to_string(&value).unwrap(), "{\"\\r\":4,\"a\":3,\"\u{1f600}\":2,\"\u{fb33}\":1}");
    }

    #[test]
    fn numbers_a_double_cannot_hold_have_no_canonical_form() {
        assert!(to_string(&json!(u64::MAX)).is_err());
        assert!(to_string(&json!(9007199254740993u64)).is_err());
        assert_eq!(to_string(&json!(9007199254740992u64)).unwrap(), "9007199254740992");
        // 2^63 is a double: written with ECMAScript's shortest digits, one text for one value.
        assert_eq!(to_string(&json!(1u64 << 63)).unwrap(), "9223372036854776000");
        assert_eq!(to_string(&json!(i64::MIN)).unwrap(), "-9223372036854776000");
    }
}
