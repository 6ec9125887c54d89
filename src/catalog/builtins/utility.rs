//! `utility` (bronze): `echo`, the benchmark target that returns its input
//! unchanged, and `hash`, SHA-256 of UTF-8 text or base64-decoded bytes.

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use ring::digest::{SHA256, digest};
use serde_json::{Value, json};

use super::{ActionSpec, CapabilitySpec, example};
use crate::catalog::model::HandlerError;
use crate::catalog::schema::MAX_BYTES_KEYWORD;
use crate::gate::Tier;

/// `echo` accepts any JSON value up to this size.
pub const ECHO_INPUT_BYTES_MAX: u64 = 64 * 1024;
/// `hash` takes at most 1 MiB of text or of decoded bytes.
pub const HASH_PAYLOAD_BYTES_MAX: usize = 1024 * 1024;
/// Base64 of 1 MiB, padded.
const HASH_BASE64_CHARS_MAX: usize = HASH_PAYLOAD_BYTES_MAX.div_ceil(3) * 4;

/// Standard alphabet; padding optional, since many clients strip it.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(super) fn capability() -> CapabilitySpec {
    CapabilitySpec {
        name: "utility",
        version: "1.0.0",
        description: "Small deterministic utilities: echo (returns its input; the benchmark target) and SHA-256 hashing.",
        tags: &["utility", "benchmark", "hash"],
        actions: vec![echo_action(), hash_action()],
    }
}

fn echo_action() -> ActionSpec {
    ActionSpec {
        name: "echo",
        description: "Returns the input unchanged. Any JSON value up to 64 KiB.",
        price: "$0.001",
        tier: Tier::Bronze,
        rate_limit_rpm: None,
        input_schema: json!({
            "description": "Any JSON value (object, array, string, number, boolean or null).",
            MAX_BYTES_KEYWORD: ECHO_INPUT_BYTES_MAX,
        }),
        output_schema: json!({
            "description": "The input, unchanged.",
            MAX_BYTES_KEYWORD: ECHO_INPUT_BYTES_MAX,
        }),
        examples: vec![
            example(json!({"message": "hello"}), json!({"message": "hello"})),
            example(json!([1, "two", null]), json!([1, "two", null])),
        ],
        handler: echo,
        heavy: false,
    }
}

fn hash_action() -> ActionSpec {
    ActionSpec {
        name: "hash",
        description: "SHA-256 of UTF-8 text or of base64-encoded bytes (up to 1 MiB).",
        price: "$0.001",
        tier: Tier::Bronze,
        rate_limit_rpm: None,
        input_schema: json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "text": {"type": "string", "maxLength": HASH_PAYLOAD_BYTES_MAX,
                         "description": "Hashed as its UTF-8 bytes."},
                "base64": {"type": "string", "maxLength": HASH_BASE64_CHARS_MAX,
                           "pattern": "^[A-Za-z0-9+/]*={0,2}$",
                           "description": "Standard base64; padding optional."},
                "algorithm": {"enum": ["sha256"], "default": "sha256"}
            },
            "oneOf": [{"required": ["text"]}, {"required": ["base64"]}],
            MAX_BYTES_KEYWORD: 6 * HASH_PAYLOAD_BYTES_MAX + 1024,
        }),
        output_schema: json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["algorithm", "hex", "base64", "bytes"],
            "properties": {
                "algorithm": {"const": "sha256"},
                "hex": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "base64": {"type": "string", "minLength": 44, "maxLength": 44},
                "bytes": {"type": "integer", "minimum": 0, "maximum": HASH_PAYLOAD_BYTES_MAX}
            }
        }),
        examples: vec![
            example(
                json!({"text": "hello"}),
                json!({
                    "algorithm": "sha256",
                    "hex": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                    "base64": "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
                    "bytes": 5
                }),
            ),
            example(
                json!({"base64": "AAEC"}),
                json!({
                    "algorithm": "sha256",
                    "hex": "ae4b3280e56e2faf83f414a6e3dabe9d5fbe18976544c05fed121accb85b53fc",
                    "base64": "rksygOVuL6+D9BSm49q+nV++GJdlRMBf7RIazLhbU/w=",
                    "bytes": 3
                }),
            ),
        ],
        handler: hash,
        heavy: false,
    }
}

/// Returns its input. The pipeline has already capped its size.
pub(crate) fn echo(input: &Value) -> Result<Value, HandlerError> {
    Ok(input.clone())
}

pub(crate) fn hash(input: &Value) -> Result<Value, HandlerError> {
    let text = input
        .get("text")
        .map(|value| value.as_str().ok_or("`text` must be a string"));
    let encoded = input
        .get("base64")
        .map(|value| value.as_str().ok_or("`base64` must be a string"));
    let payload: Vec<u8> = match (text, encoded) {
        (Some(text), None) => text.map_err(invalid)?.as_bytes().to_vec(),
        (None, Some(encoded)) => {
            let encoded = encoded.map_err(invalid)?;
            if encoded.len() > HASH_BASE64_CHARS_MAX {
                return Err(invalid("`base64` is longer than 1 MiB of data"));
            }
            BASE64_LENIENT.decode(encoded).map_err(|error| {
                HandlerError::InvalidInput(format!("`base64` is not valid base64: {error}"))
            })?
        }
        _ => return Err(invalid("give exactly one of `text` or `base64`")),
    };
    if payload.len() > HASH_PAYLOAD_BYTES_MAX {
        return Err(invalid("the data is larger than 1 MiB"));
    }
    match input.get("algorithm") {
        None => {}
        Some(Value::String(name)) if name == "sha256" => {}
        Some(_) => return Err(invalid("`algorithm` must be \"sha256\"")),
    }
    let sum = digest(&SHA256, &payload);
    Ok(json!({
        "algorithm": "sha256",
        "hex": hex::encode(sum.as_ref()),
        "base64": general_purpose::STANDARD.encode(sum.as_ref()),
        "bytes": payload.len(),
    }))
}

fn invalid(message: &str) -> HandlerError {
    HandlerError::InvalidInput(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_returns_any_value_unchanged() {
        for value in [
            json!(null),
            json!(1.5),
            json!("x"),
            json!([1, {"a": []}]),
            json!({"nested": {"k": true}}),
        ] {
            assert_eq!(echo(&value).unwrap(), value);
        }
    }

    #[test]
    fn hash_of_text_matches_known_vectors() {
        let empty = hash(&json!({"text": ""})).unwrap();
        assert_eq!(
            empty["hex"],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(empty["bytes"], 0);
        let abc = hash(&json!({"text": "abc", "algorithm": "sha256"})).unwrap();
        assert_eq!(
            abc["hex"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Non-ASCII text is hashed as UTF-8: "é" is two bytes.
        assert_eq!(hash(&json!({"text": "é"})).unwrap()["bytes"], 2);
    }

    #[test]
    fn hash_of_base64_equals_hash_of_the_same_bytes() {
        let from_text = hash(&json!({"text": "abc"})).unwrap();
        assert_eq!(hash(&json!({"base64": "YWJj"})).unwrap(), from_text);
        // Padding is optional.
        assert_eq!(
            hash(&json!({"base64": "YWI"})).unwrap(),
            hash(&json!({"base64": "YWI="})).unwrap()
        );
    }

    #[test]
    fn hash_rejects_bad_inputs() {
        assert!(matches!(
            hash(&json!({})),
            Err(HandlerError::InvalidInput(_))
        ));
        assert!(matches!(
            hash(&json!({"text": "a", "base64": "YQ=="})),
            Err(HandlerError::InvalidInput(_))
        ));
        assert!(matches!(
            hash(&json!({"text": 5})),
            Err(HandlerError::InvalidInput(_))
        ));
        assert!(matches!(
            hash(&json!({"base64": "@@@"})),
            Err(HandlerError::InvalidInput(_))
        ));
        assert!(matches!(
            hash(&json!({"text": "a", "algorithm": "md5"})),
            Err(HandlerError::InvalidInput(_))
        ));
        assert!(matches!(
            hash(&json!("just a string")),
            Err(HandlerError::InvalidInput(_))
        ));
    }

    #[test]
    fn hash_enforces_its_size_limit() {
        let at_limit = "a".repeat(HASH_PAYLOAD_BYTES_MAX);
        assert_eq!(
            hash(&json!({"text": at_limit})).unwrap()["bytes"],
            HASH_PAYLOAD_BYTES_MAX
        );
        // 1 MiB of two-byte characters is 2 MiB of UTF-8.
        let too_many_bytes = "é".repeat(HASH_PAYLOAD_BYTES_MAX / 2 + 1);
        assert!(matches!(
            hash(&json!({"text": too_many_bytes})),
            Err(HandlerError::InvalidInput(_))
        ));
        let too_long_base64 = "A".repeat(HASH_BASE64_CHARS_MAX + 4);
        assert!(matches!(
            hash(&json!({"base64": too_long_base64})),
            Err(HandlerError::InvalidInput(_))
        ));
    }
}
