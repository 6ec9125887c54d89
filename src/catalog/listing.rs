//! The catalog's wire shapes: `GET /v1/capabilities` (spec 05 §6 plus the
//! SDK's fields, CLIENT-COMPAT A6/A7), `GET /v1/capabilities/{id}` (§7), the
//! query parameters and their validation, the opaque cursor, and ETags.
//!
//! Everything here is a pure function of the built catalog and the already
//! split query string; the HTTP layer adds headers ([`CACHE_CONTROL`], the
//! ETag) and status codes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest::{SHA256, digest};
use serde_json::{Map, Value, json};

use super::model::{Action, Capability};
use crate::gate::Tier;
use crate::protocol::canonical::canonical_json;
use crate::protocol::{ErrorCode, JecpError};

/// `Cache-Control` for both catalog endpoints (spec 05 §11).
pub const CACHE_CONTROL: &str = "public, max-age=300, s-maxage=600";
pub const PAGE_SIZE_DEFAULT: usize = 50;
pub const PAGE_SIZE_MAX: usize = 200;
/// Filters are short; longer values are refused rather than scanned.
const FILTER_CHARS_MAX: usize = 256;
const TAGS_MAX: usize = 8;
const TAG_CHARS_MAX: usize = 32;
const CURSOR_CHARS_MAX: usize = 256;
/// Cursors carry a format tag so a later format can tell old ones apart.
const CURSOR_PREFIX: &str = "c1:";

/// Raw query-string values for `GET /v1/capabilities`; [`super::Catalog::list`]
/// validates them. Empty values count as absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// 1–200, default 50.
    pub page_size: Option<String>,
    /// The spec's name for `page_size` (used when `page_size` is absent).
    pub limit: Option<String>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
    pub namespace: Option<String>,
    /// The spec's name for `namespace`.
    pub provider: Option<String>,
    /// Only capabilities an agent of this tier can call at least one action of.
    pub tier: Option<String>,
    /// Comma-separated; a capability must carry every listed tag.
    pub tags: Option<String>,
    /// `false` returns every match in one response.
    pub paginated: Option<String>,
}

/// A validated [`ListQuery`].
#[derive(Debug)]
pub(crate) struct ListFilter {
    pub(crate) page_size: usize,
    pub(crate) paginated: bool,
    /// Capabilities strictly after this id.
    pub(crate) after: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) tier: Option<Tier>,
    pub(crate) tags: Vec<String>,
}

impl ListFilter {
    // `JecpError` is the crate-wide error the HTTP layer renders; this path
    // is not hot (one call per catalog request), so its size does not matter.
    pub(crate) fn parse(query: &ListQuery) -> Result<ListFilter, JecpError> {
        let page_size = match present(&query.page_size)
            .map(|value| ("page_size", value))
            .or_else(|| present(&query.limit).map(|value| ("limit", value)))
        {
            None => PAGE_SIZE_DEFAULT,
            Some((name, value)) => value
                .parse::<usize>()
                .ok()
                .filter(|size| (1..=PAGE_SIZE_MAX).contains(size))
                .ok_or_else(|| {
                    bad_parameter(
                        name,
                        &format!("{name} must be an integer from 1 to {PAGE_SIZE_MAX}"),
                    )
                })?,
        };
        let paginated = match present(&query.paginated) {
            None => true,
            Some(value) => match value.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(bad_parameter(
                        "paginated",
                        "paginated must be true or false",
                    ));
                }
            },
        };
        let after = match present(&query.cursor) {
            Some(cursor) if paginated => Some(decode_cursor(cursor)?),
            _ => None,
        };
        let namespace = match (present(&query.namespace), present(&query.provider)) {
            (Some(namespace), Some(provider)) if namespace != provider => {
                return Err(bad_parameter(
                    "namespace",
                    "namespace and provider name different namespaces",
                ));
            }
            (Some(value), _) | (None, Some(value)) => {
                if value.chars().count() > FILTER_CHARS_MAX {
                    return Err(bad_parameter("namespace", "namespace is too long"));
                }
                Some(value.to_owned())
            }
            (None, None) => None,
        };
        let tier = match present(&query.tier) {
            None => None,
            Some(value) => Some(Tier::parse(value).ok_or_else(|| {
                bad_parameter("tier", "tier must be bronze, silver, gold or platinum")
            })?),
        };
        let tags = match present(&query.tags) {
            None => Vec::new(),
            Some(value) => {
                if value.len() > FILTER_CHARS_MAX {
                    return Err(bad_parameter("tags", "tags is too long"));
                }
                let tags: Vec<String> = value
                    .split(',')
                    .map(|tag| tag.trim().to_ascii_lowercase())
                    .filter(|tag| !tag.is_empty())
                    .collect();
                if tags.len() > TAGS_MAX
                    || tags.iter().any(|tag| tag.chars().count() > TAG_CHARS_MAX)
                {
                    return Err(bad_parameter(
                        "tags",
                        &format!(
                            "tags takes at most {TAGS_MAX} tags of at most {TAG_CHARS_MAX} characters"
                        ),
                    ));
                }
                tags
            }
        };
        Ok(ListFilter {
            page_size,
            paginated,
            after,
            namespace,
            tier,
            tags,
        })
    }

    pub(crate) fn matches(&self, capability: &Capability) -> bool {
        if self
            .namespace
            .as_ref()
            .is_some_and(|namespace| *namespace != capability.namespace)
        {
            return false;
        }
        if self.tier.is_some_and(|tier| capability.min_tier() > tier) {
            return false;
        }
        self.tags.iter().all(|wanted| {
            capability
                .tags
                .iter()
                .any(|tag| tag.eq_ignore_ascii_case(wanted))
        })
    }
}

fn present(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

fn bad_parameter(name: &str, message: &str) -> JecpError {
    JecpError::new(ErrorCode::ValidationFailed, message).detail("parameter", name)
}

/// The opaque cursor: base64url of a format tag and the last id served.
pub(crate) fn encode_cursor(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{last_id}"))
}

fn decode_cursor(cursor: &str) -> Result<String, JecpError> {
    let invalid = || {
        bad_parameter(
            "cursor",
            "cursor is not one this Hub issued; start again without it",
        )
    };
    if cursor.len() > CURSOR_CHARS_MAX {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let id = text.strip_prefix(CURSOR_PREFIX).ok_or_else(invalid)?;
    if id.is_empty() {
        return Err(invalid());
    }
    Ok(id.to_owned())
}

/// One action as the catalog shows it; `examples` only in the detail view.
fn action_json(action: &Action, with_examples: bool) -> Value {
    let mut object = Map::new();
    object.insert("id".into(), json!(action.name));
    object.insert("name".into(), json!(action.name));
    object.insert("description".into(), json!(action.description));
    object.insert("price_usdc".into(), action.price.to_json());
    object.insert(
        "pricing".into(),
        json!({
            "base": format!("${}", action.price),
            "currency": "USDC",
            "model": "per_call",
            "amount_usd": action.price.to_json(),
        }),
    );
    object.insert("payment_methods".into(), json!(action.payment_methods));
    object.insert(
        "trust_tier_required".into(),
        json!(action.trust_tier_required.as_str()),
    );
    object.insert("rate_limit_rpm".into(), json!(action.rate_limit_rpm));
    object.insert("streaming".into(), json!(false));
    object.insert("input_schema".into(), action.input_schema.clone());
    object.insert("output_schema".into(), action.output_schema.clone());
    object.insert("side_effects".into(), action.side_effects_json());
    if with_examples {
        let examples: Vec<Value> = action
            .examples
            .iter()
            .map(|example| json!({"input": example.input, "output": example.output}))
            .collect();
        object.insert("examples".into(), Value::Array(examples));
    }
    Value::Object(object)
}

/// One capability as the list (`with_detail = false`) or the detail endpoint
/// shows it.
pub(crate) fn capability_json(
    capability: &Capability,
    public_url: &str,
    with_detail: bool,
) -> Value {
    let actions: Vec<Value> = capability
        .actions
        .iter()
        .map(|action| action_json(action, with_detail))
        .collect();
    // The strictest per-action limit, as the spec's capability-level hint.
    let rate_limit_rpm = capability
        .actions
        .iter()
        .filter_map(|action| action.rate_limit_rpm)
        .min();
    let mut object = Map::new();
    object.insert("id".into(), json!(capability.id));
    object.insert("namespace".into(), json!(capability.namespace));
    object.insert("provider".into(), json!(capability.namespace));
    object.insert("name".into(), json!(capability.name));
    object.insert("version".into(), json!(capability.version.to_string()));
    object.insert("description".into(), json!(capability.description));
    object.insert("tags".into(), json!(capability.tags));
    object.insert("source".into(), json!("builtin"));
    object.insert(
        "trust_tier_required".into(),
        json!(capability.min_tier().as_str()),
    );
    object.insert("rate_limit_rpm".into(), json!(rate_limit_rpm));
    object.insert(
        "deprecation".into(),
        capability
            .deprecation
            .as_ref()
            .map_or(Value::Null, |d| d.to_json()),
    );
    object.insert(
        "detail_url".into(),
        json!(format!("{public_url}/v1/capabilities/{}", capability.id)),
    );
    object.insert("actions".into(), Value::Array(actions));
    if with_detail {
        // Built-ins have no provider manifest.
        object.insert("manifest_url".into(), Value::Null);
    }
    Value::Object(object)
}

/// A strong ETag over the canonical JSON of everything the endpoints show.
pub(crate) fn etag_of(details: &[Value]) -> String {
    let sum = digest(&SHA256, &canonical_json(&Value::Array(details.to_vec())));
    format!("\"{}\"", hex::encode(&sum.as_ref()[..16]))
}

/// `If-None-Match` evaluation (RFC 9110 §13.1.2): `*` or any listed tag
/// equal to `etag` under weak comparison (a `W/` prefix is ignored).
pub fn if_none_match_matches(header: &str, etag: &str) -> bool {
    let wanted = etag.trim_start_matches("W/");
    header
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> ListQuery {
        let mut query = ListQuery::default();
        for (name, value) in pairs {
            let value = Some((*value).to_owned());
            match *name {
                "page_size" => query.page_size = value,
                "limit" => query.limit = value,
                "cursor" => query.cursor = value,
                "namespace" => query.namespace = value,
                "provider" => query.provider = value,
                "tier" => query.tier = value,
                "tags" => query.tags = value,
                "paginated" => query.paginated = value,
                other => panic!("unknown parameter {other}"),
            }
        }
        query
    }

    fn rejected(pairs: &[(&str, &str)]) -> String {
        let error = ListFilter::parse(&query(pairs)).unwrap_err();
        assert_eq!(error.code, ErrorCode::ValidationFailed);
        assert_eq!(error.http_status(), 400);
        error.details["parameter"].as_str().unwrap().to_owned()
    }

    #[test]
    fn defaults_and_aliases() {
        let filter = ListFilter::parse(&ListQuery::default()).unwrap();
        assert_eq!(filter.page_size, PAGE_SIZE_DEFAULT);
        assert!(filter.paginated);
        assert_eq!(
            ListFilter::parse(&query(&[("limit", "7")]))
                .unwrap()
                .page_size,
            7
        );
        assert_eq!(
            ListFilter::parse(&query(&[("page_size", "3"), ("limit", "7")]))
                .unwrap()
                .page_size,
            3
        );
        assert_eq!(
            ListFilter::parse(&query(&[("provider", "hub")]))
                .unwrap()
                .namespace
                .as_deref(),
            Some("hub")
        );
        assert_eq!(
            ListFilter::parse(&query(&[("page_size", "")]))
                .unwrap()
                .page_size,
            PAGE_SIZE_DEFAULT
        );
        let filter =
            ListFilter::parse(&query(&[("tags", " PDF, ,csv "), ("tier", "Silver")])).unwrap();
        assert_eq!(filter.tags, vec!["pdf", "csv"]);
        assert_eq!(filter.tier, Some(Tier::Silver));
        assert!(
            !ListFilter::parse(&query(&[("paginated", "false"), ("cursor", "garbage!")]))
                .unwrap()
                .paginated
        );
    }

    #[test]
    fn bad_values_name_their_parameter() {
        assert_eq!(rejected(&[("page_size", "0")]), "page_size");
        assert_eq!(rejected(&[("page_size", "201")]), "page_size");
        assert_eq!(rejected(&[("page_size", "ten")]), "page_size");
        assert_eq!(rejected(&[("page_size", "-1")]), "page_size");
        assert_eq!(rejected(&[("limit", "1000")]), "limit");
        assert_eq!(rejected(&[("cursor", "not base64 !")]), "cursor");
        assert_eq!(
            rejected(&[("cursor", &URL_SAFE_NO_PAD.encode("x:hub/utility"))]),
            "cursor"
        );
        assert_eq!(
            rejected(&[("cursor", &"A".repeat(CURSOR_CHARS_MAX + 1))]),
            "cursor"
        );
        assert_eq!(rejected(&[("tier", "diamond")]), "tier");
        assert_eq!(rejected(&[("paginated", "maybe")]), "paginated");
        assert_eq!(rejected(&[("tags", "a,b,c,d,e,f,g,h,i")]), "tags");
        assert_eq!(
            rejected(&[("tags", &"t".repeat(TAG_CHARS_MAX + 1))]),
            "tags"
        );
        assert_eq!(
            rejected(&[("namespace", "hub"), ("provider", "other")]),
            "namespace"
        );
    }

    #[test]
    fn cursor_round_trips() {
        let cursor = encode_cursor("hub/utility");
        assert!(!cursor.contains(['/', '+', '=']));
        assert_eq!(
            ListFilter::parse(&query(&[("cursor", &cursor)]))
                .unwrap()
                .after
                .as_deref(),
            Some("hub/utility")
        );
    }

    #[test]
    fn if_none_match_handles_lists_weak_tags_and_star() {
        let etag = "\"abc\"";
        assert!(if_none_match_matches("\"abc\"", etag));
        assert!(if_none_match_matches("W/\"abc\"", etag));
        assert!(if_none_match_matches("\"x\", \"abc\"", etag));
        assert!(if_none_match_matches("*", etag));
        assert!(!if_none_match_matches("\"abd\"", etag));
        assert!(!if_none_match_matches("", etag));
    }
}
