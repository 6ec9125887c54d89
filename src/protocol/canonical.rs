//! Canonical JSON and the idempotency fingerprint (ADR-0001, ADR-0004).
//!
//! Canonical form follows RFC 8785 (JCS) where it matters for equality:
//! object members sorted by the UTF-16 code units of their names, no
//! insignificant whitespace, strings escaped the way serde_json escapes them,
//! numbers in serde_json's shortest round-trip form. Two inputs that are the
//! same JSON value (member order, whitespace) get the same bytes; inputs that
//! differ in any value get different bytes.

use ring::digest::{SHA256, digest};
use serde_json::Value;

/// Appends the canonical encoding of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (index, (name, member)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_canonical(member, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::String(text) => write_string(text, out),
        scalar => write_json(scalar, out),
    }
}

/// serde_json's compact form of `value`, written straight into `out`.
fn write_json(value: &(impl serde::Serialize + ?Sized), out: &mut Vec<u8>) {
    // Writing a string or a scalar into a Vec cannot fail: no I/O, and no
    // map keys to reject.
    let written = serde_json::to_writer(&mut *out, value);
    debug_assert!(
        written.is_ok(),
        "serializing a JSON scalar into memory failed"
    );
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    // serde_json's string escaping is deterministic and lossless; reuse it.
    write_json(text, out);
}

/// The canonical bytes of `value`.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

/// What identifies "the same request" for idempotency purposes.
#[derive(Clone, Copy, Debug)]
pub struct FingerprintParts<'a> {
    pub capability: &'a str,
    pub action: &'a str,
    pub input: &'a Value,
    pub provenance_hash: Option<&'a str>,
    /// The decoded `X-Payment` bytes, when the request carried one.
    pub x_payment: Option<&'a [u8]>,
}

/// `SHA-256(capability | action | canonical_json(input) | provenance_hash |
/// sha256_hex(x_payment))`, with empty strings for absent parts (ADR-0004 §1).
pub fn fingerprint(parts: FingerprintParts<'_>) -> [u8; 32] {
    let mut message = Vec::with_capacity(128);
    message.extend_from_slice(parts.capability.as_bytes());
    message.push(b'|');
    message.extend_from_slice(parts.action.as_bytes());
    message.push(b'|');
    write_canonical(parts.input, &mut message);
    message.push(b'|');
    message.extend_from_slice(parts.provenance_hash.unwrap_or("").as_bytes());
    message.push(b'|');
    if let Some(payment) = parts.x_payment {
        message.extend_from_slice(hex::encode(digest(&SHA256, payment)).as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, &message).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parts(input: &Value) -> FingerprintParts<'_> {
        FingerprintParts {
            capability: "hub/utility",
            action: "echo",
            input,
            provenance_hash: None,
            x_payment: None,
        }
    }

    #[test]
    fn member_order_and_whitespace_do_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "s"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":"s","y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            br#"{"a":{"x":"s","y":[1,2]},"b":1}"#.to_vec()
        );
        assert_eq!(fingerprint(parts(&a)), fingerprint(parts(&b)));
    }

    #[test]
    fn every_part_changes_the_fingerprint() {
        let input = json!({"text": "hi"});
        let base = fingerprint(parts(&input));
        assert_ne!(
            base,
            fingerprint(FingerprintParts {
                capability: "hub/other",
                ..parts(&input)
            })
        );
        assert_ne!(
            base,
            fingerprint(FingerprintParts {
                action: "hash",
                ..parts(&input)
            })
        );
        assert_ne!(base, fingerprint(parts(&json!({"text": "ho"}))));
        assert_ne!(
            base,
            fingerprint(FingerprintParts {
                provenance_hash: Some("v2:1:2:3"),
                ..parts(&input)
            })
        );
        assert_ne!(
            base,
            fingerprint(FingerprintParts {
                x_payment: Some(b"{}"),
                ..parts(&input)
            })
        );
        // Array order is significant.
        assert_ne!(
            fingerprint(parts(&json!([1, 2]))),
            fingerprint(parts(&json!([2, 1])))
        );
    }

    #[test]
    fn keys_sort_by_utf16_units() {
        // U+E000 sorts before U+1F600 in UTF-16 (0xE000 < 0xD83D is false), JCS order.
        let value = json!({"\u{1F600}": 1, "\u{E000}": 2, "a": 3});
        let text = String::from_utf8(canonical_json(&value)).unwrap();
        assert_eq!(text, "{\"a\":3,\"\u{1F600}\":1,\"\u{E000}\":2}");
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn canonical_bytes_parse_back_to_the_same_value(value in arbitrary_json()) {
            let bytes = canonical_json(&value);
            let reparsed: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(&reparsed, &value);
            prop_assert_eq!(canonical_json(&reparsed), bytes);
        }
    }
}
