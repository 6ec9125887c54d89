//! The Hub's built-in capabilities, declared as plain specs that
//! [`crate::catalog::Catalog::builtin`] compiles (schemas, prices) into the
//! registry.
//!
//! Every handler is offline and deterministic: the same input gives the same
//! output, with no clock, network or randomness. Every input schema caps
//! sizes and counts, and every handler re-checks the caps it relies on, so no
//! call can make a handler run unbounded even if it skipped validation.
//!
//! - [`utility`] (bronze): `echo`, `hash`.
//! - [`document`] (silver): `generate-invoice`, `generate-receipt` (PDF).
//! - [`data_insight`] (silver): `analyze-csv`, `forecast`.

pub mod data_insight;
mod decimal;
pub mod document;
mod pdf;
pub mod utility;

use serde_json::Value;

use super::model::{Example, HandlerFn};
use crate::gate::Tier;

/// A built-in capability before compilation.
pub(crate) struct CapabilitySpec {
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
    pub(crate) description: &'static str,
    pub(crate) tags: &'static [&'static str],
    pub(crate) actions: Vec<ActionSpec>,
}

/// A built-in action before compilation.
pub(crate) struct ActionSpec {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    /// Default price; the operator can override it.
    pub(crate) price: &'static str,
    pub(crate) tier: Tier,
    pub(crate) rate_limit_rpm: Option<u32>,
    pub(crate) input_schema: Value,
    pub(crate) output_schema: Value,
    pub(crate) examples: Vec<Example>,
    pub(crate) handler: HandlerFn,
    /// Runs for milliseconds: the pipeline moves it off the async workers.
    pub(crate) heavy: bool,
}

pub(crate) fn example(input: Value, output: Value) -> Example {
    Example { input, output }
}

/// Every built-in, in no particular order (the catalog sorts by id).
pub(crate) fn all() -> Vec<CapabilitySpec> {
    vec![
        utility::capability(),
        document::capability(),
        data_insight::capability(),
    ]
}
