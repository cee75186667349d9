//! The JSON Canonicalization Scheme (RFC 8785): the one byte string a JSON
//! value stands for, so that what is signed can be rebuilt from the parsed
//! document by any verifier, whatever its JSON library wrote or reordered.
//!
//! - Objects: members sorted by the UTF-16 code units of their names
//!   (section 3.2.3), arrays in their order, no whitespace (section 3.2.1).
//! - Strings: `"` and `\` escaped, U+0008, U+0009, U+000A, U+000C and
//!   U+000D as `\b \t \n \f \r`, the other controls below U+0020 as
//!   `\u00hh` in lower case, everything else as itself, in UTF-8
//!   (section 3.2.2.2).
//! - Numbers: as ECMAScript's `Number.prototype.toString` writes the double
//!   (ECMA-262 section 7.1.12.1, which section 3.2.2.3 adopts): the
//!   shortest digits that read back as the same double, spelled out between
//!   1e-6 and 1e21, with an exponent (`1e+21`, `1e-7`) outside. Rust's
//!   shortest round-trip formatting gives the digits and the exponent;
//!   only the layout is ECMAScript's. serde_json's own float text differs
//!   (`1e23` for ECMAScript's `1e+23`, `1e21` written out in full), so it
//!   is never used.
//!
//! The canonical form is of the doubles a value holds: serde_json's parser,
//! without its `float_roundtrip` feature, may read a decimal one unit in
//! the last place off the double it stands for.
//!
//! Refused, with no canonical form: NaN and the infinities (section
//! 3.2.2.3), and integers beyond ±(2^53 − 1), which a receiver reading
//! numbers as doubles (RFC 7493 section 2.2) may not read back as the
//! value written.

use std::fmt::Write;

use serde_json::{Number, Value};

/// The largest integer every double-reading receiver gets exactly.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JcsError {
    /// NaN or an infinity.
    NotFinite,
    /// An integer beyond ±(2^53 − 1), as written.
    UnsafeInteger(String),
}

impl std::fmt::Display for JcsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JcsError::NotFinite => f.write_str("NaN and infinities have no JSON form"),
            JcsError::UnsafeInteger(n) => {
                write!(f, "{n} is beyond the integers a double holds exactly")
            }
        }
    }
}

/// The canonical form of `value` (UTF-8, as the string's bytes).
pub fn canonicalize(value: &Value) -> Result<String, JcsError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

/// The canonical form of an object made of `members`, without building it.
pub fn canonicalize_members<'a>(
    members: impl Iterator<Item = (&'a String, &'a Value)>,
) -> Result<String, JcsError> {
    let mut out = String::new();
    write_members(&mut out, members)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), JcsError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n)?),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(members) => write_members(out, members.iter())?,
    }
    Ok(())
}

fn write_members<'a>(
    out: &mut String,
    members: impl Iterator<Item = (&'a String, &'a Value)>,
) -> Result<(), JcsError> {
    let mut sorted: Vec<_> = members.collect();
    sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.push('{');
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, name);
        out.push(':');
        write_value(out, value)?;
    }
    out.push('}');
    Ok(())
}

fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn number(n: &Number) -> Result<String, JcsError> {
    if let Some(u) = n.as_u64() {
        return if u <= MAX_SAFE_INTEGER {
            Ok(u.to_string())
        } else {
            Err(JcsError::UnsafeInteger(u.to_string()))
        };
    }
    if let Some(i) = n.as_i64() {
        return if i.unsigned_abs() <= MAX_SAFE_INTEGER {
            Ok(i.to_string())
        } else {
            Err(JcsError::UnsafeInteger(i.to_string()))
        };
    }
    n.as_f64().ok_or(JcsError::NotFinite).and_then(ecmascript)
}

/// ECMA-262 section 7.1.12.1 (Number::toString) for a double.
fn ecmascript(x: f64) -> Result<String, JcsError> {
    if !x.is_finite() {
        return Err(JcsError::NotFinite);
    }
    if x == 0.0 {
        // Minus zero too (step 2).
        return Ok("0".into());
    }
    let mut out = String::new();
    if x < 0.0 {
        out.push('-');
    }
    let (digits, exponent) = shortest(x.abs()).ok_or(JcsError::NotFinite)?;
    // Step 5's k (how many digits) and n (where the decimal point goes).
    let k = i64::try_from(digits.len()).map_err(|_| JcsError::NotFinite)?;
    let n = exponent + 1;
    let zeros = |count: i64| "0".repeat(usize::try_from(count).unwrap_or(0));
    if k <= n && n <= 21 {
        // Step 6: an integer, padded with zeros.
        out.push_str(&digits);
        out.push_str(&zeros(n - k));
    } else if 0 < n && n <= 21 {
        // Step 7: the point inside the digits.
        let point = usize::try_from(n).unwrap_or(0);
        let (whole, fraction) = digits.split_at_checked(point).unwrap_or((&digits, ""));
        out.push_str(whole);
        out.push('.');
        out.push_str(fraction);
    } else if -6 < n && n <= 0 {
        // Step 8: a small fraction, written out.
        out.push_str("0.");
        out.push_str(&zeros(-n));
        out.push_str(&digits);
    } else {
        // Steps 9 and 10: one digit, the rest after a point, the exponent.
        let (first, rest) = digits.split_at_checked(1).unwrap_or((&digits, ""));
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let e = n - 1;
        let _ = write!(
            out,
            "e{}{}",
            if e < 0 { '-' } else { '+' },
            e.unsigned_abs()
        );
    }
    Ok(out)
}

/// Step 5 for `x` > 0: the fewest digits that read back as `x`, the one
/// closest to `x` among those, and the even one of two equally close (the
/// step's note 2, which RFC 8785 asks for), with the exponent of the first
/// digit. Rust's shortest formatting gives all but the last rule: it breaks
/// such a tie upwards. A tie is `x` lying exactly halfway between two
/// candidates, so its exact expansion (at most 767 significant digits) is
/// one digit longer than theirs and ends in 5.
fn shortest(x: f64) -> Option<(String, i64)> {
    let (digits, exponent) = split(&format!("{x:e}"))?;
    let (exact, exact_exponent) = split(&format!("{x:.800e}"))?;
    let exact = exact.trim_end_matches('0');
    let tie = exact.len() == digits.len() + 1 && exact.ends_with('5');
    if tie {
        let down = exact.get(..digits.len())?;
        let even = down.ends_with(['0', '2', '4', '6', '8']);
        if even && down != digits && reads_back(down, exact_exponent, x) {
            return Some((down.to_string(), exact_exponent));
        }
    }
    Some((digits, exponent))
}

/// `d.ddde±x` as its digits and exponent.
fn split(scientific: &str) -> Option<(String, i64)> {
    let (mantissa, exponent) = scientific.split_once('e')?;
    let digits = mantissa.chars().filter(char::is_ascii_digit).collect();
    Some((digits, exponent.parse().ok()?))
}

/// Whether `0.digits × 10^(exponent + 1)` is read as `x`.
fn reads_back(digits: &str, exponent: i64, x: f64) -> bool {
    format!("0.{digits}e{}", exponent + 1).parse::<f64>() == Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn double(bits: u64) -> Value {
        Number::from_f64(f64::from_bits(bits)).map_or(Value::Null, Value::Number)
    }

    /// RFC 8785 appendix B: numbers given as their IEEE 754 bits.
    #[test]
    fn appendix_b_number_serialisations() {
        for (bits, expected) in [
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ] {
            assert_eq!(
                canonicalize(&double(bits)).unwrap(),
                expected,
                "{bits:016x}"
            );
        }
    }

    /// Appendix B's NaN and Infinity have no form; serde_json cannot hold
    /// them in a value, so the number writer is asked directly.
    #[test]
    fn non_finite_numbers_are_refused() {
        for bits in [0x7fffffffffffffff, 0x7ff0000000000000, 0xfff0000000000000] {
            assert_eq!(ecmascript(f64::from_bits(bits)), Err(JcsError::NotFinite));
        }
    }

    #[test]
    fn integers_are_written_out_up_to_what_a_double_holds() {
        let safe = (1i64 << 53) - 1;
        assert_eq!(canonicalize(&json!(safe)).unwrap(), "9007199254740991");
        assert_eq!(canonicalize(&json!(-safe)).unwrap(), "-9007199254740991");
        assert_eq!(canonicalize(&json!(0)).unwrap(), "0");
        for unsafe_integer in [json!(safe + 1), json!(-safe - 1), json!(u64::MAX)] {
            let e = canonicalize(&unsafe_integer).unwrap_err();
            assert!(matches!(e, JcsError::UnsafeInteger(_)), "{unsafe_integer}");
        }
        // A double that happens to be integral is a double: 4.0 is 4.
        assert_eq!(canonicalize(&json!(4.0)).unwrap(), "4");
        assert_eq!(canonicalize(&json!(1e21)).unwrap(), "1e+21");
        assert_eq!(canonicalize(&json!(1e-7)).unwrap(), "1e-7");
        assert_eq!(canonicalize(&json!(0.1)).unwrap(), "0.1");
    }

    /// RFC 8785 section 3.2.2: the parsed sample, serialised canonically
    /// (section 3.2.4's output, its bytes in section 3.2.4 too).
    #[test]
    fn section_3_2_2_sample() {
        let mut parsed: Value = serde_json::from_str(
            r#"{
              "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
              "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
              "literals": [null, true, false]
            }"#,
        )
        .unwrap();
        // serde_json's parser (without its float_roundtrip feature) reads
        // the first number one unit in the last place low; the double the
        // decimal stands for is this one.
        parsed["numbers"][0] = double(0x41b3de4355555555);
        assert_eq!(
            canonicalize(&parsed).unwrap(),
            concat!(
                r#"{"literals":[null,true,false],"#,
                r#""numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"#,
                "\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}"
            )
        );
    }

    /// RFC 8785 section 3.2.3: names sorted by UTF-16 code units, so the
    /// emoji (a surrogate pair, 0xD83D first) comes before U+FB33, which
    /// UTF-8 or code point order would put first.
    #[test]
    fn section_3_2_3_sorting() {
        let names = [
            "\u{20ac}",
            "\r",
            "\u{fb33}",
            "1",
            "\u{1f600}",
            "\u{80}",
            "\u{f6}",
        ];
        let object: Map<String, Value> =
            names.iter().map(|n| (n.to_string(), Value::Null)).collect();
        let sorted = [
            "\\r",
            "1",
            "\u{80}",
            "\u{f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ];
        let expected = format!(
            "{{{}}}",
            sorted
                .iter()
                .map(|n| format!("\"{n}\":null"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(canonicalize(&Value::Object(object)).unwrap(), expected);
    }

    /// Section 3.2.2.2: the short escapes, lower-case `\u00hh` for the
    /// other controls, and DEL, U+2028 and non-ASCII text as themselves.
    #[test]
    fn string_escapes() {
        let text: String = (0u8..0x20).map(char::from).collect();
        assert_eq!(
            canonicalize(&json!(text)).unwrap(),
            concat!(
                r#""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f"#,
                r#"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f""#
            )
        );
        assert_eq!(
            canonicalize(&json!("\u{7f}\u{2028}é/\"\\")).unwrap(),
            "\"\u{7f}\u{2028}é/\\\"\\\\\""
        );
    }

    #[test]
    fn nesting_and_members() {
        let value = json!({"b": [{"z": 1, "a": {"y": [], "x": {}}}], "a": "s"});
        assert_eq!(
            canonicalize(&value).unwrap(),
            r#"{"a":"s","b":[{"a":{"x":{},"y":[]},"z":1}]}"#
        );
        let Value::Object(members) = &value else {
            unreachable!()
        };
        assert_eq!(
            canonicalize_members(members.iter().filter(|(k, _)| *k != "b")).unwrap(),
            r#"{"a":"s"}"#
        );
    }
}
