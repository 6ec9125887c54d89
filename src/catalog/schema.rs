//! JSON Schema compilation and validation for action inputs and outputs.
//!
//! Every schema is compiled once, when the catalog is built (Draft 2020-12,
//! formats asserted). Validation adds one check a schema cannot express: a
//! cap on the serialized size of the whole instance, declared in the schema
//! itself as the annotation keyword `x-max-input-bytes` so clients can see it.
//! The size is measured with a writer that stops at the cap, so an oversized
//! instance costs at most `cap` bytes of work.

use std::io;

use serde_json::Value;

use super::model::SchemaViolation;

/// At most this many violations are reported for one instance.
pub const MAX_REPORTED_VIOLATIONS: usize = 20;

/// Reasons longer than this are cut (the validator's text can quote schema
/// enums of any length).
const REASON_CHARS_MAX: usize = 300;

/// The annotation keyword carrying the serialized-size cap.
pub const MAX_BYTES_KEYWORD: &str = "x-max-input-bytes";

/// A compiled schema plus its optional serialized-size cap.
#[derive(Debug)]
pub(crate) struct CompiledSchema {
    validator: jsonschema::Validator,
    max_bytes: Option<usize>,
}

impl CompiledSchema {
    /// Compiles `schema` as Draft 2020-12. `what` names the schema in errors.
    pub(crate) fn compile(schema: &Value, what: &str) -> Result<CompiledSchema, String> {
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(schema)
            .map_err(|error| format!("{what}: invalid JSON Schema: {error}"))?;
        let max_bytes = match schema.get(MAX_BYTES_KEYWORD) {
            None => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .and_then(|bytes| usize::try_from(bytes).ok())
                    .ok_or_else(|| {
                        format!("{what}: {MAX_BYTES_KEYWORD} must be a non-negative integer")
                    })?,
            ),
        };
        Ok(CompiledSchema {
            validator,
            max_bytes,
        })
    }

    /// `Ok` when `instance` is within the size cap and valid.
    pub(crate) fn validate(&self, instance: &Value) -> Result<(), Vec<SchemaViolation>> {
        if let Some(max_bytes) = self.max_bytes
            && !fits_in(instance, max_bytes)
        {
            return Err(vec![SchemaViolation {
                instance_path: String::new(),
                schema_path: format!("/{MAX_BYTES_KEYWORD}"),
                reason: format!("the value is larger than {max_bytes} bytes of JSON"),
            }]);
        }
        if self.validator.is_valid(instance) {
            return Ok(());
        }
        let violations: Vec<SchemaViolation> = self
            .validator
            .iter_errors(instance)
            .take(MAX_REPORTED_VIOLATIONS)
            .map(|error| SchemaViolation {
                instance_path: error.instance_path().as_str().to_owned(),
                schema_path: error.schema_path().as_str().to_owned(),
                // `masked` leaves the client's value out of the message.
                reason: truncate_chars(&error.masked().to_string(), REASON_CHARS_MAX),
            })
            .collect();
        if violations.is_empty() {
            // is_valid and iter_errors disagreeing would be a validator bug;
            // still refuse rather than let an invalid value through.
            return Err(vec![SchemaViolation {
                instance_path: String::new(),
                schema_path: String::new(),
                reason: "the value does not match the schema".to_owned(),
            }]);
        }
        Err(violations)
    }
}

/// Whether the compact JSON encoding of `value` has at most `max_bytes` bytes.
pub(crate) fn fits_in(value: &Value, max_bytes: usize) -> bool {
    let mut counter = ByteBudget {
        remaining: max_bytes,
    };
    serde_json::to_writer(&mut counter, value).is_ok()
}

/// A sink that fails as soon as more than its budget is written.
struct ByteBudget {
    remaining: usize,
}

impl io::Write for ByteBudget {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if bytes.len() > self.remaining {
            self.remaining = 0;
            return Err(io::Error::other("size cap exceeded"));
        }
        self.remaining -= bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn truncate_chars(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_paths_as_json_pointers_without_the_value() {
        let schema = CompiledSchema::compile(
            &json!({"type": "object", "required": ["a"], "properties": {"b": {"type": "string"}}}),
            "test",
        )
        .unwrap();
        let errors = schema
            .validate(&json!({"b": "secret-value-123"}))
            .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].instance_path, "");
        assert_eq!(errors[0].schema_path, "/required");
        let errors = schema.validate(&json!({"a": 1, "b": 42})).unwrap_err();
        assert_eq!(errors[0].instance_path, "/b");
        assert_eq!(errors[0].schema_path, "/properties/b/type");
        assert!(!errors[0].reason.contains("42"), "{}", errors[0].reason);
        assert!(schema.validate(&json!({"a": 1, "b": "x"})).is_ok());
    }

    #[test]
    fn caps_the_number_of_reported_violations() {
        let schema = CompiledSchema::compile(
            &json!({"type": "array", "items": {"type": "string"}}),
            "test",
        )
        .unwrap();
        let errors = schema.validate(&json!(vec![1; 100])).unwrap_err();
        assert_eq!(errors.len(), MAX_REPORTED_VIOLATIONS);
    }

    #[test]
    fn enforces_the_byte_cap_before_validating() {
        let schema = CompiledSchema::compile(&json!({"x-max-input-bytes": 10}), "test").unwrap();
        assert!(schema.validate(&json!("12345678")).is_ok()); // 10 bytes with quotes
        let errors = schema.validate(&json!("123456789")).unwrap_err();
        assert_eq!(errors[0].schema_path, "/x-max-input-bytes");
        assert!(fits_in(&json!({"a": [1, 2]}), 11)); // {"a":[1,2]}
        assert!(!fits_in(&json!({"a": [1, 2]}), 10));
    }

    #[test]
    fn rejects_bad_schemas_and_bad_caps() {
        assert!(
            CompiledSchema::compile(&json!({"type": 12}), "bad")
                .unwrap_err()
                .starts_with("bad:")
        );
        assert!(CompiledSchema::compile(&json!({"x-max-input-bytes": -1}), "bad").is_err());
    }

    #[test]
    fn asserts_formats() {
        let schema =
            CompiledSchema::compile(&json!({"type": "string", "format": "date"}), "test").unwrap();
        assert!(schema.validate(&json!("2026-02-28")).is_ok());
        assert!(schema.validate(&json!("2026-02-30")).is_err());
    }
}
