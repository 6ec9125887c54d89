//! The registry's entry types: [`Capability`], [`Action`], [`Example`],
//! [`Deprecation`], and what running or validating an action can report
//! ([`SchemaViolation`], [`HandlerError`]).
//!
//! Entries have the manifest's shape (spec 04 §5). An [`Action`] also carries
//! its compiled input/output validators and its handler; those stay private so
//! that the only way to get an `Action` is through [`super::Catalog::builtin`],
//! which compiles every schema once at start.

use std::fmt;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::schema::CompiledSchema;
use crate::gate::Tier;
use crate::money::Micros;

/// A built-in handler: a pure function of the (already validated) input.
pub(crate) type HandlerFn = fn(&Value) -> Result<Value, HandlerError>;

/// One capability, e.g. `hub/utility`.
#[derive(Debug)]
pub struct Capability {
    /// `"<namespace>/<name>"`, e.g. `"hub/utility"`.
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub version: semver::Version,
    pub description: String,
    pub tags: Vec<String>,
    /// Never empty.
    pub actions: Vec<Action>,
    pub deprecation: Option<Deprecation>,
}

impl Capability {
    /// The action with this name, if the capability has it.
    pub fn action(&self, name: &str) -> Option<&Action> {
        self.actions.iter().find(|action| action.name == name)
    }

    /// The lowest tier that can call at least one action: the tier an agent
    /// needs before the capability is of any use to it.
    pub fn min_tier(&self) -> Tier {
        self.actions
            .iter()
            .map(|action| action.trust_tier_required)
            .min()
            .unwrap_or(Tier::Bronze)
    }
}

/// A declared end of life (spec 04 §5 `deprecation`, spec 01 §4.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deprecation {
    pub sunset_at: OffsetDateTime,
    /// Semver (`MAJOR.MINOR.PATCH`) of the replacement, when there is one.
    pub successor_version: Option<String>,
}

impl Deprecation {
    /// Whether calls at `now` fall after the sunset (the pipeline answers
    /// 410 `CAPABILITY_DEPRECATED` then; before it, calls work but carry
    /// `Deprecation`/`Sunset` headers).
    pub fn is_sunset(&self, now: OffsetDateTime) -> bool {
        now >= self.sunset_at
    }

    /// `sunset_at` in RFC 3339, as the catalog and error details show it.
    pub fn sunset_at_rfc3339(&self) -> String {
        // Formatting an OffsetDateTime that came from parsing RFC 3339 cannot
        // fail; fall back to the unix timestamp rather than panic.
        self.sunset_at
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.sunset_at.unix_timestamp().to_string())
    }

    /// The catalog's `deprecation` object. The status is always
    /// `"deprecated"`: the catalog is built once, and whether the sunset has
    /// passed depends on the clock at call time (see [`Deprecation::is_sunset`]).
    pub fn to_json(&self) -> Value {
        json!({
            "status": "deprecated",
            "sunset_at": self.sunset_at_rfc3339(),
            "successor_version": self.successor_version,
        })
    }
}

/// One canonical input/output pair, surfaced in the catalog detail.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub input: Value,
    pub output: Value,
}

/// One action of a capability, with its price, schemas and handler.
pub struct Action {
    pub name: String,
    pub description: String,
    /// The flat per-call charge.
    pub price: Micros,
    /// Payment methods the action accepts; `["stripe"]` (the wallet) by default.
    pub payment_methods: Vec<String>,
    pub trust_tier_required: Tier,
    /// `None`: the Hub's default limit applies.
    pub rate_limit_rpm: Option<u32>,
    pub input_schema: Value,
    pub output_schema: Value,
    pub examples: Vec<Example>,
    /// Names of the spec's side-effect flags that are true for this action
    /// (`external_api_call`, `stores_data`, `modifies_state`, `sends_email`).
    pub side_effects: Vec<String>,
    pub(crate) input_validator: CompiledSchema,
    pub(crate) output_validator: CompiledSchema,
    pub(crate) handler: HandlerFn,
    pub(crate) heavy: bool,
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Schemas and validators are long and say nothing useful in a log line.
        f.debug_struct("Action")
            .field("name", &self.name)
            .field("price", &self.price)
            .field("trust_tier_required", &self.trust_tier_required)
            .field("rate_limit_rpm", &self.rate_limit_rpm)
            .field("heavy", &self.heavy)
            .finish_non_exhaustive()
    }
}

/// The side-effect flags spec 04 §5 defines.
pub const SIDE_EFFECT_FLAGS: [&str; 4] = [
    "external_api_call",
    "stores_data",
    "modifies_state",
    "sends_email",
];

impl Action {
    /// Checks `input` against the action's input schema (and its byte cap).
    /// Reports at most [`super::schema::MAX_REPORTED_VIOLATIONS`] violations.
    pub fn validate_input(&self, input: &Value) -> Result<(), Vec<SchemaViolation>> {
        self.input_validator.validate(input)
    }

    /// Checks a handler's `output` against the action's output schema.
    pub fn validate_output(&self, output: &Value) -> Result<(), Vec<SchemaViolation>> {
        self.output_validator.validate(output)
    }

    /// Runs the handler. Synchronous and bounded by the schema's limits;
    /// call [`Action::validate_input`] first. Never panics on any input.
    pub fn run(&self, input: &Value) -> Result<Value, HandlerError> {
        (self.handler)(input)
    }

    /// True for handlers that take milliseconds (PDF, CSV, forecast): the
    /// pipeline runs those on `spawn_blocking` instead of the async workers.
    pub fn is_heavy(&self) -> bool {
        self.heavy
    }

    /// The spec's `side_effects` object: every flag, true when listed.
    pub fn side_effects_json(&self) -> Value {
        let flags = SIDE_EFFECT_FLAGS
            .iter()
            .map(|flag| {
                (
                    (*flag).to_owned(),
                    Value::Bool(self.side_effects.iter().any(|listed| listed == flag)),
                )
            })
            .collect();
        Value::Object(flags)
    }
}

/// One way an instance failed its schema, as spec 03 §3.2 reports it in
/// `details.errors[]`. Paths are JSON pointers (`""` is the root).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SchemaViolation {
    pub instance_path: String,
    pub schema_path: String,
    /// What was wrong, without echoing the client's value back.
    pub reason: String,
}

impl SchemaViolation {
    pub fn to_json(&self) -> Value {
        json!({ "instance_path": self.instance_path, "schema_path": self.schema_path, "reason": self.reason })
    }
}

/// Why a handler did not produce an output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandlerError {
    /// A semantic problem with the input the schema cannot express (an
    /// impossible date, ragged CSV, a total beyond range) → a 400-class error.
    InvalidInput(String),
    /// The handler itself failed; the message is safe to show → 500
    /// `EXECUTION_FAILED`.
    Failed(String),
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerError::InvalidInput(message) => write!(f, "invalid input: {message}"),
            HandlerError::Failed(message) => write!(f, "execution failed: {message}"),
        }
    }
}

impl std::error::Error for HandlerError {}

/// What a capability string names on this Hub.
#[derive(Debug, PartialEq)]
pub enum Resolution<'a> {
    Found(&'a Capability),
    /// `"<ns>/<name>"` with a namespace other than the Hub's own (a
    /// third-party Provider's, which this catalog does not hold).
    OtherNamespace(String),
    NotFound,
}

impl PartialEq for Capability {
    fn eq(&self, other: &Self) -> bool {
        // Ids are unique within a catalog.
        self.id == other.id && self.version == other.version
    }
}
