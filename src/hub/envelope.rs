//! The invoke request envelope (spec 01 §3): media type, JSON parse and the
//! envelope-level checks that come before authentication.
//!
//! Everything here is about the *shape* of the request. What the `input`
//! must look like is the action's business (its compiled schema, checked
//! later in the pipeline); who may send it is `auth`'s.

use serde_json::{Map, Value, json};

use crate::protocol::{ErrorCode, JecpError};

/// `metadata` larger than this (serialized) is refused with 413 (spec 01 §7).
pub const METADATA_BYTES_MAX: usize = 4 * 1024;
/// `input` larger than this (serialized) is refused with 413 (spec 01 §7).
pub const INPUT_BYTES_MAX: usize = 5 * 1024 * 1024;
/// The only protocol version this Hub speaks.
pub const SUPPORTED_VERSION: &str = "1.0";

/// Top-level members the request schema allows (`additionalProperties:false`)
/// plus the SDK's `streaming` flag (CLIENT-COMPAT A5).
const KNOWN_MEMBERS: &[&str] = &[
    "jecp",
    "id",
    "capability",
    "action",
    "input",
    "mandate",
    "delivery",
    "metadata",
    "extensions",
    "streaming",
];

/// A request that passed every envelope check.
#[derive(Debug)]
pub struct Envelope {
    pub id: String,
    pub capability: String,
    pub action: String,
    pub input: Value,
    pub mandate: Option<Value>,
    pub metadata: Option<Value>,
}

/// Step 1: `application/json` with optional parameters; a missing header is
/// tolerated (spec 03 §3.2 lets Hubs accept it; the SDK always sends one).
pub fn check_content_type(content_type: Option<&str>) -> Result<(), JecpError> {
    let Some(raw) = content_type else {
        return Ok(());
    };
    let media_type = raw.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(JecpError::new(
        ErrorCode::UnsupportedMediaType,
        format!("Content-Type must be application/json, got {media_type:?}"),
    )
    .detail("received", media_type)
    .detail("expected", "application/json"))
}

/// The request `id` when the body has a usable one, so even envelope errors
/// can echo it.
pub fn request_id_of(body: &Value) -> Option<String> {
    body.get("id")
        .and_then(Value::as_str)
        .filter(|id| is_valid_request_id(id))
        .map(str::to_owned)
}

/// Step 2: parse and validate. On failure returns the error and, when the
/// body had one, the request id to echo.
///
/// A well-formed envelope — every member known, of the right type, present
/// once, within the size limits — is read straight into its fields
/// (`parse_well_formed`); anything else goes through `parse_general`,
/// which builds the whole document as a `Value` and names every problem.
/// Both give the same answer for every body (`fuzzing::check_envelope`
/// compares them); the first only skips the top-level map and the member
/// names the second allocates on every request.
pub fn parse(body: &[u8]) -> Result<Envelope, (JecpError, Option<String>)> {
    parse_well_formed(body).map_or_else(|| parse_general(body), Ok)
}

/// The top level of an envelope with nothing wrong in its shape. Any member
/// that is unknown, repeated or of another type makes serde refuse it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WellFormed<'a> {
    #[serde(borrow)]
    jecp: std::borrow::Cow<'a, str>,
    id: String,
    capability: String,
    action: String,
    input: Member,
    #[serde(default)]
    mandate: Member,
    #[serde(default)]
    delivery: Member,
    #[serde(default)]
    metadata: Member,
    #[serde(default)]
    extensions: Member,
    #[serde(default)]
    streaming: Member,
}

/// A member as present in the body: `Some` even for an explicit `null`
/// (which `Option<Value>` would read as absent, and which is a shape error
/// everywhere but `input`).
#[derive(Default)]
struct Member(Option<Value>);

impl<'de> serde::Deserialize<'de> for Member {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Member, D::Error> {
        Value::deserialize(deserializer).map(|value| Member(Some(value)))
    }
}

/// The envelope when `body` is well formed, valid and within the limits;
/// `None` sends it to [`parse_general`] for the error (or, for a shape this
/// path does not take, such as an escaped `"jecp"`, for the same success).
fn parse_well_formed(body: &[u8]) -> Option<Envelope> {
    use serde::Deserialize as _;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = WellFormed::deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    let objects = [
        &parsed.mandate,
        &parsed.delivery,
        &parsed.metadata,
        &parsed.extensions,
    ];
    let shape_ok = parsed.jecp == SUPPORTED_VERSION
        && is_valid_request_id(&parsed.id)
        && is_valid_capability(&parsed.capability)
        && is_valid_segment(&parsed.action)
        && objects
            .iter()
            .all(|member| member.0.as_ref().is_none_or(Value::is_object))
        && parsed.streaming.0.as_ref().is_none_or(Value::is_boolean);
    let input = parsed.input.0?;
    if !shape_ok
        || parsed
            .metadata
            .0
            .as_ref()
            .is_some_and(|metadata| serialized_len(metadata) > METADATA_BYTES_MAX)
        || serialized_len(&input) > INPUT_BYTES_MAX
    {
        return None;
    }
    Some(Envelope {
        id: parsed.id,
        capability: parsed.capability,
        action: parsed.action,
        input,
        mandate: parsed.mandate.0,
        metadata: parsed.metadata.0,
    })
}

/// [`parse`] for any body: the whole document as a `Value`, then every
/// check with every problem named. Public for the differential fuzz check.
pub fn parse_general(body: &[u8]) -> Result<Envelope, (JecpError, Option<String>)> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        let message = if error.to_string().contains("recursion limit") {
            "request body nests JSON too deeply (limit 128 levels)".to_owned()
        } else {
            format!(
                "request body is not valid JSON: {}",
                describe_json_error(&error)
            )
        };
        (JecpError::new(ErrorCode::InvalidRequest, message), None)
    })?;
    let request_id = request_id_of(&value);
    let Value::Object(mut members) = value else {
        return Err((
            JecpError::new(
                ErrorCode::InvalidRequest,
                "request body must be a JSON object",
            ),
            None,
        ));
    };
    validate(&members).map_err(|error| (error, request_id.clone()))?;
    let take_string = |members: &mut Map<String, Value>, key: &str| match members.remove(key) {
        Some(Value::String(text)) => text,
        _ => String::new(),
    };
    Ok(Envelope {
        id: take_string(&mut members, "id"),
        capability: take_string(&mut members, "capability"),
        action: take_string(&mut members, "action"),
        input: members.remove("input").unwrap_or(Value::Null),
        mandate: members.remove("mandate"),
        metadata: members.remove("metadata"),
    })
}

fn describe_json_error(error: &serde_json::Error) -> String {
    // serde_json's messages name the line and column, never the content.
    error.to_string()
}

fn validate(members: &Map<String, Value>) -> Result<(), JecpError> {
    // A wrong version is its own code, checked before anything else about
    // the shape so a v2 client learns what this Hub speaks.
    if let Some(Value::String(received)) = members.get("jecp")
        && received != SUPPORTED_VERSION
    {
        return Err(JecpError::new(
            ErrorCode::UnsupportedVersion,
            format!("this Hub speaks JECP {SUPPORTED_VERSION}; the request says {received:?}"),
        )
        .detail("supported", json!([SUPPORTED_VERSION]))
        .detail("received", received.clone()));
    }

    let mut errors: Vec<Value> = Vec::new();
    let mut fail = |path: &str, reason: &str| errors.push(json!({"path": path, "reason": reason}));

    match members.get("jecp") {
        None => fail("/jecp", "required; must be \"1.0\""),
        Some(Value::String(_)) => {}
        Some(_) => fail("/jecp", "must be the string \"1.0\""),
    }
    match members.get("id") {
        None => fail("/id", "required"),
        Some(Value::String(id)) if is_valid_request_id(id) => {}
        Some(_) => fail(
            "/id",
            "must be a string of 4-64 characters from [A-Za-z0-9_-]",
        ),
    }
    match members.get("capability") {
        None => fail("/capability", "required"),
        Some(Value::String(name)) if is_valid_capability(name) => {}
        Some(_) => fail(
            "/capability",
            "must match ^[a-z][a-z0-9-]*(/[a-z][a-z0-9-]*)?$",
        ),
    }
    match members.get("action") {
        None => fail("/action", "required"),
        Some(Value::String(name)) if is_valid_segment(name) => {}
        Some(_) => fail("/action", "must match ^[a-z][a-z0-9-]*$"),
    }
    if !members.contains_key("input") {
        fail("/input", "required");
    }
    for key in ["mandate", "delivery", "metadata", "extensions"] {
        if let Some(value) = members.get(key)
            && !value.is_object()
        {
            fail(&format!("/{key}"), "must be an object");
        }
    }
    if let Some(value) = members.get("streaming")
        && !value.is_boolean()
    {
        fail("/streaming", "must be a boolean");
    }
    for key in members.keys() {
        if !KNOWN_MEMBERS.contains(&key.as_str()) {
            fail(
                &format!("/{}", escape_pointer(key)),
                "unknown member (the request schema allows no others)",
            );
        }
    }
    if !errors.is_empty() {
        let count = errors.len();
        return Err(JecpError::new(
            ErrorCode::ValidationFailed,
            format!("the request envelope has {count} problem(s); see details.errors"),
        )
        .detail("errors", Value::Array(errors)));
    }

    if let Some(metadata) = members.get("metadata") {
        let size = serialized_len(metadata);
        if size > METADATA_BYTES_MAX {
            return Err(JecpError::new(
                ErrorCode::InputTooLarge,
                format!("metadata is {size} bytes serialized; the limit is {METADATA_BYTES_MAX}"),
            )
            .detail("field", "metadata")
            .detail("limit_bytes", METADATA_BYTES_MAX));
        }
    }
    if let Some(input) = members.get("input") {
        let size = serialized_len(input);
        if size > INPUT_BYTES_MAX {
            return Err(JecpError::new(
                ErrorCode::InputTooLarge,
                format!("input is {size} bytes serialized; the limit is {INPUT_BYTES_MAX}"),
            )
            .detail("field", "input")
            .detail("limit_bytes", INPUT_BYTES_MAX));
        }
    }
    Ok(())
}

fn serialized_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a Value into an infallible sink cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// `^[A-Za-z0-9_-]{4,64}$` (spec 01 §3.3).
pub fn is_valid_request_id(id: &str) -> bool {
    (4..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `^[a-z][a-z0-9-]*$`.
fn is_valid_segment(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.len() <= 128
}

/// `^[a-z][a-z0-9-]*(/[a-z][a-z0-9-]*)?$`.
fn is_valid_capability(name: &str) -> bool {
    match name.split_once('/') {
        Some((namespace, rest)) => is_valid_segment(namespace) && is_valid_segment(rest),
        None => is_valid_segment(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(body: &str) -> &'static str {
        match parse(body.as_bytes()) {
            Ok(_) => "OK",
            Err((error, _)) => error.code.as_str(),
        }
    }

    #[test]
    fn media_type_rules() {
        assert!(check_content_type(None).is_ok());
        assert!(check_content_type(Some("application/json")).is_ok());
        assert!(check_content_type(Some("Application/JSON; charset=utf-8")).is_ok());
        let error = check_content_type(Some("text/plain")).unwrap_err();
        assert_eq!(error.code, ErrorCode::UnsupportedMediaType);
        assert_eq!(error.details["received"], "text/plain");
        assert_eq!(error.details["expected"], "application/json");
    }

    #[test]
    fn accepts_the_sdk_body() {
        let body = r#"{"jecp":"1.0","id":"6f1c2a8e-1b7e-4c1a-9a53-0c1f0d6a1e22","capability":"hub/utility",
            "action":"echo","input":"any json","mandate":{"agent_id":"a","api_key":"k"},"streaming":true}"#;
        let envelope = parse(body.as_bytes()).unwrap();
        assert_eq!(envelope.capability, "hub/utility");
        assert_eq!(envelope.input, json!("any json"));
        assert!(envelope.mandate.is_some());
    }

    #[test]
    fn envelope_errors_have_the_right_codes() {
        assert_eq!(code_of("not json"), "INVALID_REQUEST");
        assert_eq!(code_of("[1,2]"), "INVALID_REQUEST");
        assert_eq!(
            code_of(&format!("{}1{}", "[".repeat(200), "]".repeat(200))),
            "INVALID_REQUEST"
        );
        assert_eq!(
            code_of(r#"{"jecp":"2.0","id":"abcd","capability":"x","action":"y","input":{}}"#),
            "UNSUPPORTED_VERSION"
        );
        assert_eq!(
            code_of(r#"{"jecp":1.0,"id":"abcd","capability":"x","action":"y","input":{}}"#),
            "VALIDATION_FAILED"
        );
        assert_eq!(
            code_of(r#"{"jecp":"1.0","id":"x","capability":"x","action":"y","input":{}}"#),
            "VALIDATION_FAILED"
        );
        assert_eq!(
            code_of(r#"{"jecp":"1.0","id":"abcd","capability":"X","action":"y","input":{}}"#),
            "VALIDATION_FAILED"
        );
        assert_eq!(
            code_of(r#"{"jecp":"1.0","id":"abcd","capability":"x","action":"y"}"#),
            "VALIDATION_FAILED"
        );
        assert_eq!(
            code_of(
                r#"{"jecp":"1.0","id":"abcd","capability":"x","action":"y","input":{},"extra":1}"#
            ),
            "VALIDATION_FAILED"
        );
        let big = "x".repeat(METADATA_BYTES_MAX);
        let body = format!(
            r#"{{"jecp":"1.0","id":"abcd","capability":"x","action":"y","input":{{}},"metadata":{{"m":"{big}"}}}}"#
        );
        assert_eq!(code_of(&body), "INPUT_TOO_LARGE");
    }

    #[test]
    fn validation_errors_list_every_path_and_echo_the_id() {
        let (error, id) =
            parse(br#"{"jecp":"1.0","id":"good-id","capability":"Bad","action":"Bad_Action"}"#)
                .unwrap_err();
        assert_eq!(id.as_deref(), Some("good-id"));
        let paths: Vec<&str> = error.details["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths, ["/capability", "/action", "/input"]);
    }

    #[test]
    fn id_pattern() {
        assert!(is_valid_request_id("req_a3f2b1"));
        assert!(is_valid_request_id("42ab"));
        assert!(!is_valid_request_id("<3>x"));
        assert!(!is_valid_request_id("x"));
        assert!(!is_valid_request_id(&"a".repeat(65)));
    }

    /// Each member's candidate texts: valid ones, wrong types, nulls, and
    /// strings that only fail the patterns.
    const MEMBER_TEXTS: &[(&str, &[&str])] = &[
        (
            "jecp",
            &[r#""1.0""#, r#""2.0""#, r#""1\u002e0""#, "1.0", "null"],
        ),
        ("id", &[r#""abcd-1""#, r#""x""#, r#""ab<cd""#, "42", "null"]),
        (
            "capability",
            &[r#""utility""#, r#""hub/utility""#, r#""Bad""#, "[]"],
        ),
        ("action", &[r#""echo""#, r#""Echo""#, "{}", "null"]),
        (
            "input",
            &[
                r#"{"text":"hi"}"#,
                "null",
                r#""s""#,
                "[1,2]",
                r#"{"a":{"b":[true,1.5e3]}}"#,
            ],
        ),
        ("mandate", &[r#"{"agent_id":"a"}"#, "null", "[]", r#""m""#]),
        ("delivery", &["{}", "1"]),
        ("metadata", &[r#"{"trace":"t"}"#, "null", "false"]),
        ("extensions", &["{}", r#""e""#]),
        ("streaming", &["true", "false", "null", r#""yes""#]),
        ("extra", &["1"]),
        ("a/b~c", &["{}"]),
    ];

    proptest::proptest! {
        /// The well-formed fast path and the general parse give the same
        /// envelope or the same error for bodies built from valid, wrongly
        /// typed, null, repeated and unknown members in any order.
        #[test]
        fn fast_path_agrees_with_the_general_parse(
            rolls in proptest::collection::vec((0u8..20, 0usize..12, 0u32..1000), MEMBER_TEXTS.len()),
            repeat in proptest::option::weighted(0.2, (0usize..MEMBER_TEXTS.len(), 0usize..8)),
            spaced in proptest::bool::ANY,
        ) {
            // Required members are usually there, optional ones sometimes,
            // unknown ones rarely; a member's first text is its usual one.
            let mut members: Vec<(u32, String)> = Vec::new();
            for (index, (presence, choice, order)) in rolls.iter().enumerate() {
                let (name, texts) = MEMBER_TEXTS[index];
                let present = match index {
                    0..=4 => *presence < 19,
                    5..=9 => *presence < 6,
                    _ => *presence < 1,
                };
                if present {
                    let text = if *choice < 9 { texts[0] } else { texts[choice % texts.len()] };
                    members.push((*order, format!("\"{name}\":{text}")));
                }
            }
            if let Some((index, choice)) = repeat {
                let (name, texts) = MEMBER_TEXTS[index];
                members.push((500, format!("\"{name}\":{}", texts[choice % texts.len()])));
            }
            members.sort();
            let members: Vec<String> = members.into_iter().map(|(_, text)| text).collect();
            let separator = if spaced { " , " } else { "," };
            let body = format!("{{{}}}", members.join(separator));
            let fast = parse(body.as_bytes());
            let general = parse_general(body.as_bytes());
            match (&fast, &general) {
                (Ok(a), Ok(b)) => {
                    proptest::prop_assert_eq!(
                        (&a.id, &a.capability, &a.action, &a.input, &a.mandate, &a.metadata),
                        (&b.id, &b.capability, &b.action, &b.input, &b.mandate, &b.metadata)
                    );
                }
                (Err((a, a_id)), Err((b, b_id))) => {
                    proptest::prop_assert_eq!(a.code, b.code);
                    proptest::prop_assert_eq!(&a.message, &b.message);
                    proptest::prop_assert_eq!(&a.details, &b.details);
                    proptest::prop_assert_eq!(a_id, b_id);
                }
                _ => proptest::prop_assert!(false, "{body}: fast {:?}, general {:?}", fast.is_ok(), general.is_ok()),
            }
        }
    }

    #[test]
    fn the_sdk_body_takes_the_fast_path() {
        let body = br#"{"jecp":"1.0","id":"abcd-1","capability":"hub/utility","action":"echo","input":{"text":"hi"},"metadata":{"k":"v"},"streaming":false}"#;
        let envelope = parse_well_formed(body).expect("a well-formed body");
        assert_eq!(envelope.id, "abcd-1");
        assert_eq!(envelope.input, json!({"text": "hi"}));
        assert_eq!(envelope.metadata, Some(json!({"k": "v"})));
        // An explicit null where an object belongs, a repeated member and an
        // unknown one are all left to the general parse.
        for odd in [
            r#"{"jecp":"1.0","id":"abcd","capability":"x","action":"y","input":1,"mandate":null}"#,
            r#"{"jecp":"1.0","id":"abcd","id":"abce","capability":"x","action":"y","input":1}"#,
            r#"{"jecp":"1.0","id":"abcd","capability":"x","action":"y","input":1,"other":1}"#,
        ] {
            assert!(parse_well_formed(odd.as_bytes()).is_none(), "{odd}");
        }
    }
}
