//! Discovery documents (spec `05-discovery.md`): `/.well-known/agent.json`,
//! `/.well-known/agent-guide.json` and `/llms.txt`, built from [`Config`] and the catalog's
//! [`DiscoveryInputs`].
//!
//! Documents are rendered once (bytes + strong `ETag`) and served from memory: discovery is
//! polled by every new agent and must cost nothing. They are rebuilt when the catalog
//! changes ([`DiscoveryDocs::build`] again) and re-stamped daily, because clients treat an
//! agent guide whose `last_updated` is older than 7 days as stale (spec §4.5).
//!
//! Cache-Control: the agent guide uses `public, max-age=300, must-revalidate`, following the
//! conformance assertion JECP-DISCOVERY-MUST-001 (a MUST) over spec §4.4's `max-age=1800`
//! (a SHOULD); the others use the values of spec §11.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::Config;
use crate::gate::Tier;
use crate::http::response::strong_etag;
use crate::protocol::ErrorCode;

/// The JECP spec version this Hub claims conformance with.
pub const SPEC_VERSION: &str = "1.0.2";
/// The agent-guide schema URL (spec §4.5).
pub const AGENT_GUIDE_SCHEMA_URL: &str = "https://jecp.dev/schemas/v1/agent-guide.json";
/// Spec §5: `/llms.txt` must not exceed 50 KB.
pub const LLMS_TXT_BYTES_MAX: usize = 50 * 1024;
/// Rebuild interval that keeps `last_updated` well inside the 7-day staleness window.
pub const RESTAMP_INTERVAL: Duration = Duration::from_secs(24 * 3600);

pub const AGENT_CARD_CACHE_CONTROL: &str = "public, max-age=3600, s-maxage=86400";
pub const AGENT_GUIDE_CACHE_CONTROL: &str = "public, max-age=300, must-revalidate";
pub const LLMS_TXT_CACHE_CONTROL: &str = "public, max-age=3600";
pub const CATALOG_CACHE_CONTROL: &str = "public, max-age=300, s-maxage=600";
pub const HEALTH_CACHE_CONTROL: &str = "no-cache";

/// Catalog facts the discovery documents publish. The catalog module produces them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiscoveryInputs {
    /// JSON array of capabilities. Each entry is either an id string (`"hub/echo"`) or an
    /// object with an `"id"` member plus whatever description the catalog provides; the agent
    /// guide lists the ids in `supported_capabilities` and the entries in `capabilities`.
    pub supported_capabilities: Value,
    /// Markdown lines describing the catalog, inserted into `/llms.txt` under `## Pricing`.
    pub llms_catalog: String,
}

impl DiscoveryInputs {
    /// The capability ids, in catalog order.
    pub fn capability_ids(&self) -> Vec<String> {
        let Some(entries) = self.supported_capabilities.as_array() else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|entry| match entry {
                Value::String(id) => Some(id.clone()),
                Value::Object(object) => {
                    object.get("id").and_then(Value::as_str).map(str::to_owned)
                }
                _ => None,
            })
            .collect()
    }
}

/// One rendered document.
#[derive(Clone, Debug)]
pub struct RenderedDocument {
    pub body: Bytes,
    pub etag: String,
}

impl RenderedDocument {
    fn from_json(value: &Value) -> RenderedDocument {
        RenderedDocument::from_bytes(Bytes::from(serde_json::to_vec(value).unwrap_or_default()))
    }

    fn from_bytes(body: Bytes) -> RenderedDocument {
        let etag = strong_etag(&body);
        RenderedDocument { body, etag }
    }
}

/// The three discovery documents, rendered.
#[derive(Clone, Debug)]
pub struct DiscoveryDocs {
    pub agent_card: RenderedDocument,
    pub agent_guide: RenderedDocument,
    pub llms_txt: RenderedDocument,
    /// When these were built; drives the daily re-stamp.
    pub built_at: Instant,
}

impl DiscoveryDocs {
    /// Renders every document, stamping the agent guide with the current time.
    pub fn build(config: &Config, inputs: &DiscoveryInputs) -> DiscoveryDocs {
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        DiscoveryDocs {
            agent_card: RenderedDocument::from_json(&agent_card(config)),
            agent_guide: RenderedDocument::from_json(&agent_guide(config, inputs, now)),
            llms_txt: RenderedDocument::from_bytes(Bytes::from(llms_txt(config, inputs))),
            built_at: Instant::now(),
        }
    }

    /// Whether [`RESTAMP_INTERVAL`] has passed since the build.
    pub fn is_due_for_restamp(&self) -> bool {
        self.built_at.elapsed() >= RESTAMP_INTERVAL
    }
}

/// The A2A-compatible agent card (spec §3).
pub fn agent_card(config: &Config) -> Value {
    let url = |path: &str| format!("{}{}", config.public_url, path);
    json!({
        "name": config.hub_name,
        "description": format!("{}: a JECP Hub where AI agents discover capabilities and pay per call.", config.hub_name),
        "url": config.public_url,
        "version": "1.0.0",
        "provider": {
            "organization": config.operator_name,
            "url": config.public_url,
        },
        "jecp": {
            "endpoint": url("/v1/invoke"),
            "version": "1.0",
            "engine": "jecp",
            "capabilities_url": url("/v1/capabilities"),
            "agent_guide_url": url("/.well-known/agent-guide.json"),
            "streaming": false,
            "mandate_required": false,
        },
        "authentication": {
            "schemes": ["api_key", "mandate"],
            "api_key_header": "X-API-Key",
            "agent_id_header": "X-Agent-ID",
            "registration_url": url("/api/agent/register"),
        },
    })
}

/// Error codes the agent guide explains, with the recovery an agent should take. Spec §4.2
/// requires at least `AUTH_REQUIRED`, `INSUFFICIENT_BALANCE` and `INSUFFICIENT_TRUST`.
const ERROR_RECOVERY: &[(ErrorCode, &str)] = &[
    (
        ErrorCode::AuthRequired,
        "Register at register_endpoint, then send X-Agent-ID and X-API-Key.",
    ),
    (
        ErrorCode::InvalidApiKey,
        "Use the api_key returned at registration or by rotate-key; keys are shown once.",
    ),
    (
        ErrorCode::InsufficientBalance,
        "Top up the wallet (next_action.api), then retry with the same id.",
    ),
    (
        ErrorCode::InsufficientBudget,
        "Raise mandate.budget_usdc to at least the action's price and retry.",
    ),
    (
        ErrorCode::InsufficientTrust,
        "Use a capability open to your tier; tiers rise with completed paid calls.",
    ),
    (
        ErrorCode::MandateExpired,
        "Issue a new mandate with a future expires_at and retry.",
    ),
    (
        ErrorCode::ProvenanceMismatch,
        "Compute a fresh v2 provenance_hash with a new nonce and the current time.",
    ),
    (
        ErrorCode::RateLimited,
        "Wait Retry-After seconds, then retry with the same id.",
    ),
    (
        ErrorCode::DuplicateRequest,
        "Use a new id: this id was already used with a different request.",
    ),
    (
        ErrorCode::InputSchemaViolation,
        "Fix input to match the action's input_schema from /v1/capabilities/{id}.",
    ),
    (
        ErrorCode::CapabilityNotFound,
        "List /v1/capabilities to find an existing capability.",
    ),
    (
        ErrorCode::InputTooLarge,
        "Send a request body under the Hub's size limit.",
    ),
    (
        ErrorCode::ServiceDegraded,
        "Wait Retry-After seconds, then retry with the same id; nothing was charged.",
    ),
];

/// The agent guide (spec §4): every schema-required field plus the recommended sections.
pub fn agent_guide(
    config: &Config,
    inputs: &DiscoveryInputs,
    last_updated: OffsetDateTime,
) -> Value {
    let url = |path: &str| format!("{}{}", config.public_url, path);
    let last_updated = last_updated
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
    let mut error_recovery = Map::new();
    for (code, action) in ERROR_RECOVERY {
        error_recovery.insert(
            code.as_str().into(),
            json!({
                "http_status": code.http_status(),
                "retry_safe": code.retry_safe(),
                "action": action,
                "documentation_url": code.documentation_url(),
            }),
        );
    }
    let rpm = config.tier_rpm;
    let tier_rpm = |tier: Tier| match tier {
        Tier::Bronze => rpm.bronze,
        Tier::Silver => rpm.silver,
        Tier::Gold => rpm.gold,
        Tier::Platinum => rpm.platinum,
    };
    let mut trust_tiers = Map::new();
    let mut rate_limits = Map::new();
    for tier in Tier::ALL {
        trust_tiers.insert(
            tier.as_str().into(),
            json!({"min_total_calls": tier.min_calls(), "rate_limit_rpm": tier_rpm(tier)}),
        );
        rate_limits.insert(tier.as_str().into(), json!(tier_rpm(tier)));
    }
    let capabilities = match &inputs.supported_capabilities {
        Value::Array(entries) => Value::Array(entries.clone()),
        _ => Value::Array(Vec::new()),
    };
    json!({
        "$schema": AGENT_GUIDE_SCHEMA_URL,
        "version": SPEC_VERSION,
        "spec_version_pinned": SPEC_VERSION,
        "last_updated": last_updated,
        "audience": "AI agents",
        "vendor_prefix": config.vendor_prefix,
        "hub_name": config.hub_name,
        "hub_operator": config.operator_name,
        "hub_url": config.public_url,
        "endpoints": {
            "invoke": url("/v1/invoke"),
            "invoke_legacy_alias": url("/v1/jecp"),
            "capabilities": url("/v1/capabilities"),
            "health": url("/health"),
        },
        "supported_capabilities": inputs.capability_ids(),
        "conformance_levels": ["Hub-Core"],
        "replay_cache_mode": "local",
        "provenance_versions_supported": ["v2"],
        "register_endpoint": url("/api/agent/register"),
        "contact": { "support": config.support_contact },
        "rate_limits_default_rpm": rate_limits,
        "currencies_accepted": ["USDC"],
        "identity": {
            "protocol": "JECP (Joint Execution & Commerce Protocol)",
            "protocol_version": SPEC_VERSION,
            "operator": config.operator_name,
            "hub_name": config.hub_name,
            "engine": "jecp-hub",
            "engine_version": env!("CARGO_PKG_VERSION"),
        },
        "quickstart": {
            "step_1_register": {
                "method": "POST",
                "url": url("/api/agent/register"),
                "body_example": {"name": "My Agent", "agent_type": "automation"},
                "returns": "agent_id and api_key (shown once) plus free_calls_remaining",
                "free_calls": config.free_calls_per_agent,
            },
            "step_2_invoke": {
                "method": "POST",
                "url": url("/v1/invoke"),
                "headers": ["X-Agent-ID", "X-API-Key", "Content-Type: application/json"],
                "body_example": {"jecp": "1.0", "id": "<unique request id>", "capability": "<namespace/name>",
                                 "action": "<action>", "input": {}},
                "note": "Reuse the same id when retrying: the Hub never charges one id twice.",
            },
            "step_3_topup": {
                "method": "POST",
                "url": url("/api/agents/topup"),
                "body_example": {"amount": config.allowed_topup_usd.first().copied().unwrap_or(5)},
                "allowed_amounts_usd": config.allowed_topup_usd,
            },
        },
        "capabilities": capabilities,
        "error_recovery": error_recovery,
        "trust_tiers": trust_tiers,
        "trust_policy": {
            "tier_basis": "total completed paid calls",
            "provenance": "v2 HMAC provenance in mandate.provenance_hash; nonces are single-use for 600 s",
        },
        "best_practices": [
            "Send a unique id per logical call and reuse it on retries; failed calls are never charged.",
            "Honor Retry-After on 429 and 503 responses.",
            "Fetch /v1/capabilities/{id} for an action's input_schema before calling it.",
            "Never put your api_key in logs or prompts; rotate it with POST /v1/agents/me/rotate-key if exposed.",
        ],
        "related_resources": {
            "capabilities_url": url("/v1/capabilities"),
            "agent_card_url": url("/.well-known/agent.json"),
            "llms_txt_url": url("/llms.txt"),
            "health_url": url("/health"),
        },
    })
}

/// `/llms.txt` (spec §5), truncated at a line boundary to stay within [`LLMS_TXT_BYTES_MAX`].
pub fn llms_txt(config: &Config, inputs: &DiscoveryInputs) -> String {
    let url = |path: &str| format!("{}{}", config.public_url, path);
    let catalog = if inputs.llms_catalog.trim().is_empty() {
        format!(
            "See {} for capabilities and per-action prices in USDC.",
            url("/v1/capabilities")
        )
    } else {
        inputs.llms_catalog.trim_end().to_owned()
    };
    let render = |catalog: &str| {
        format!(
            "# {name}\n\n\
         > A JECP Hub: AI agents discover capabilities, call them, and pay per call from a prepaid USDC wallet.\n\n\
         Operated by {operator}. Failed calls are never charged, and retrying with the same request id never \
         charges twice.\n\n\
         ## For AI Agents\n\n\
         - Agent guide (start here): {guide}\n\
         - Register: POST {register} with {{\"name\": \"My Agent\"}} to get agent_id and api_key \
         ({free} free calls)\n\
         - Invoke: POST {invoke} with headers X-Agent-ID and X-API-Key and body \
         {{\"jecp\":\"1.0\",\"id\":\"<unique>\",\"capability\":\"<ns/name>\",\"action\":\"<action>\",\"input\":{{}}}}\n\
         - Capabilities: GET {capabilities}\n\
         - Health: GET {health}\n\n\
         ## Pricing\n\n\
         Prices are per successful call in USDC; wallets are topped up in whole USD amounts ({topups}).\n\n\
         {catalog}\n\n\
         ## Documentation\n\n\
         - JECP specification: https://jecp.dev/spec/v1.0/\n\
         - Error catalog: https://jecp.dev/errors/\n\
         - Support: {support}\n",
            name = config.hub_name,
            operator = config.operator_name,
            guide = url("/.well-known/agent-guide.json"),
            register = url("/api/agent/register"),
            free = config.free_calls_per_agent,
            invoke = url("/v1/invoke"),
            capabilities = url("/v1/capabilities"),
            health = url("/health"),
            topups = config
                .allowed_topup_usd
                .iter()
                .map(|usd| format!("${usd}"))
                .collect::<Vec<_>>()
                .join(", "),
            support = config.support_contact,
        )
    };
    // The catalog is the only unbounded part: give it whatever the fixed text leaves.
    let budget = LLMS_TXT_BYTES_MAX.saturating_sub(render("").len());
    render(&truncate_at_line(catalog, budget))
}

/// Cuts `text` at a line boundary so that it plus a truncation note fits in `bytes_max`.
fn truncate_at_line(mut text: String, bytes_max: usize) -> String {
    const NOTE: &str = "\n(truncated; see /v1/capabilities for the full catalog)";
    if text.len() <= bytes_max {
        return text;
    }
    if bytes_max < NOTE.len() {
        return String::new();
    }
    let mut cut = bytes_max - NOTE.len();
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let cut = text[..cut].rfind('\n').unwrap_or(cut);
    text.truncate(cut);
    text.push_str(NOTE);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> DiscoveryInputs {
        DiscoveryInputs {
            supported_capabilities: json!(["hub/echo", {"id": "hub/pdf", "name": "PDF"}, 7]),
            llms_catalog: "- hub/echo: $0.001 per call".into(),
        }
    }

    #[test]
    fn capability_ids_accept_strings_and_objects() {
        assert_eq!(
            inputs().capability_ids(),
            vec!["hub/echo".to_owned(), "hub/pdf".to_owned()]
        );
        assert!(DiscoveryInputs::default().capability_ids().is_empty());
    }

    #[test]
    fn guide_has_required_sections_and_config_values() {
        let config = Config {
            public_url: "https://hub.example".into(),
            ..Config::default()
        };
        let guide = agent_guide(&config, &inputs(), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(guide["last_updated"], "1970-01-01T00:00:00Z");
        assert_eq!(guide["hub_url"], "https://hub.example");
        assert_eq!(
            guide["register_endpoint"],
            "https://hub.example/api/agent/register"
        );
        assert_eq!(guide["provenance_versions_supported"], json!(["v2"]));
        assert_eq!(
            guide["supported_capabilities"],
            json!(["hub/echo", "hub/pdf"])
        );
        for code in [
            "AUTH_REQUIRED",
            "INSUFFICIENT_BALANCE",
            "INSUFFICIENT_TRUST",
        ] {
            assert!(
                guide["error_recovery"][code]["action"].is_string(),
                "{code}"
            );
        }
        assert_eq!(
            guide["related_resources"]["capabilities_url"],
            "https://hub.example/v1/capabilities"
        );
        assert_eq!(guide["trust_tiers"]["silver"]["min_total_calls"], 100);
        assert_eq!(guide["rate_limits_default_rpm"]["platinum"], 500);
    }

    #[test]
    fn llms_txt_has_spec_sections_and_is_bounded() {
        let config = Config::default();
        let text = llms_txt(&config, &inputs());
        for heading in [
            "# JECP Hub\n",
            "## For AI Agents",
            "## Pricing",
            "## Documentation",
            "hub/echo: $0.001",
        ] {
            assert!(text.contains(heading), "{heading}");
        }
        let huge = DiscoveryInputs {
            llms_catalog: "- a line of catalog\n".repeat(10_000),
            ..inputs()
        };
        let text = llms_txt(&config, &huge);
        assert!(text.len() <= LLMS_TXT_BYTES_MAX, "{}", text.len());
        assert!(text.contains("(truncated; see /v1/capabilities for the full catalog)\n"));
        assert!(text.contains("## Documentation"));
    }

    #[test]
    fn rendered_documents_have_stable_etags() {
        let config = Config::default();
        let first = DiscoveryDocs::build(&config, &inputs());
        let second = DiscoveryDocs::build(&config, &inputs());
        assert_eq!(first.agent_card.etag, second.agent_card.etag);
        assert_eq!(first.llms_txt.etag, second.llms_txt.etag);
        assert!(!first.is_due_for_restamp());
    }
}
