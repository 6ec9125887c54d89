//! The Hub's route table: every path it serves, the methods each accepts, and the outcome for
//! anything else (404 `NOT_FOUND`, 405 `METHOD_NOT_ALLOWED` with `Allow`, or a CORS preflight).
//!
//! Routing is a hand-written match over path segments rather than a generic router: the table
//! is small and fixed, matching allocates only for captured ids, and the complete list of
//! routes is readable in one place.

use hyper::Method;

/// Longest capability id or agent id accepted in a path; longer ones cannot exist.
pub const PATH_ID_LEN_MAX: usize = 256;

/// Every endpoint of the Hub. Captured ids are percent-decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Health,
    AgentCard,
    AgentGuide,
    LlmsTxt,
    Capabilities,
    /// `/v1/capabilities/{id}`; `id` may contain `/` (`namespace/name`).
    Capability {
        id: String,
    },
    Invoke,
    /// `/v1/jecp`, the deprecated alias of `/v1/invoke` (spec v1.0 shape).
    LegacyInvoke,
    /// `/api/agents/register` (SDK) and `/api/agent/register` (spec).
    RegisterAgent,
    RotateKey,
    AgentMe,
    AgentTransactions,
    /// `/api/agents/topup` (SDK) and `/api/agent/topup` (spec).
    Topup,
    StripeWebhook,
    OperatorAgents,
    OperatorAgent {
        agent_id: String,
    },
    OperatorCredit {
        agent_id: String,
    },
}

const GET: &[Method] = &[Method::GET, Method::HEAD];
const POST: &[Method] = &[Method::POST];
const GET_PATCH: &[Method] = &[Method::GET, Method::HEAD, Method::PATCH];

impl Route {
    /// Methods this route answers besides `OPTIONS` (answered for every route).
    pub fn allowed_methods(&self) -> &'static [Method] {
        match self {
            Route::Health
            | Route::AgentCard
            | Route::AgentGuide
            | Route::LlmsTxt
            | Route::Capabilities
            | Route::Capability { .. }
            | Route::AgentMe
            | Route::AgentTransactions
            | Route::OperatorAgents => GET,
            Route::Invoke
            | Route::LegacyInvoke
            | Route::RegisterAgent
            | Route::RotateKey
            | Route::Topup
            | Route::StripeWebhook
            | Route::OperatorCredit { .. } => POST,
            Route::OperatorAgent { .. } => GET_PATCH,
        }
    }
}

/// What the router decided for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The path is known and the method accepted.
    Matched(Route),
    /// `OPTIONS` on a known path: answer the CORS preflight.
    Preflight(&'static [Method]),
    /// Known path, wrong method.
    MethodNotAllowed(&'static [Method]),
    /// No such path.
    NotFound,
}

/// Resolves `method` + `path` (no query string) against the route table.
pub fn resolve(method: &Method, path: &str) -> Resolution {
    let Some(route) = match_path(path) else {
        return Resolution::NotFound;
    };
    let allowed = route.allowed_methods();
    if allowed.contains(method) {
        Resolution::Matched(route)
    } else if method == Method::OPTIONS {
        Resolution::Preflight(allowed)
    } else {
        Resolution::MethodNotAllowed(allowed)
    }
}

fn match_path(path: &str) -> Option<Route> {
    let route = match path {
        "/health" => Route::Health,
        "/.well-known/agent.json" => Route::AgentCard,
        "/.well-known/agent-guide.json" => Route::AgentGuide,
        "/llms.txt" => Route::LlmsTxt,
        "/v1/capabilities" => Route::Capabilities,
        "/v1/invoke" => Route::Invoke,
        "/v1/jecp" => Route::LegacyInvoke,
        "/api/agents/register" | "/api/agent/register" => Route::RegisterAgent,
        "/v1/agents/me/rotate-key" => Route::RotateKey,
        "/v1/agents/me" => Route::AgentMe,
        "/v1/agents/me/transactions" => Route::AgentTransactions,
        "/api/agents/topup" | "/api/agent/topup" => Route::Topup,
        "/api/stripe/webhook" => Route::StripeWebhook,
        "/v1/operator/agents" => Route::OperatorAgents,
        _ => return match_parameterised(path),
    };
    Some(route)
}

fn match_parameterised(path: &str) -> Option<Route> {
    if let Some(raw_id) = path.strip_prefix("/v1/capabilities/") {
        // The id is `name` or `namespace/name`; a client may also send the slash as %2F.
        let id = percent_decode(raw_id)?;
        let segments = id.split('/').count();
        let valid = segments <= 2 && id.split('/').all(|segment| !segment.is_empty());
        return valid.then_some(Route::Capability { id });
    }
    let rest = path.strip_prefix("/v1/operator/agents/")?;
    let (raw_id, tail) = match rest.split_once('/') {
        Some((raw_id, tail)) => (raw_id, Some(tail)),
        None => (rest, None),
    };
    let agent_id = percent_decode(raw_id)?;
    if agent_id.is_empty() || agent_id.contains('/') {
        return None;
    }
    match tail {
        None => Some(Route::OperatorAgent { agent_id }),
        Some("credit") => Some(Route::OperatorCredit { agent_id }),
        Some(_) => None,
    }
}

/// Decodes `%XX` escapes. Returns `None` for bad escapes, non-UTF-8 results, control
/// characters, or more than [`PATH_ID_LEN_MAX`] bytes, so handlers only see printable ids.
fn percent_decode(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > PATH_ID_LEN_MAX * 3 {
        return None;
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            decoded.push(u8::from_str_radix(text, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    let text = String::from_utf8(decoded).ok()?;
    let printable = !text.chars().any(char::is_control);
    (printable && !text.is_empty() && text.len() <= PATH_ID_LEN_MAX).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_routes_and_aliases() {
        let cases: &[(&Method, &str, Route)] = &[
            (&Method::GET, "/health", Route::Health),
            (&Method::HEAD, "/health", Route::Health),
            (&Method::GET, "/.well-known/agent.json", Route::AgentCard),
            (
                &Method::GET,
                "/.well-known/agent-guide.json",
                Route::AgentGuide,
            ),
            (&Method::GET, "/llms.txt", Route::LlmsTxt),
            (&Method::GET, "/v1/capabilities", Route::Capabilities),
            (&Method::POST, "/v1/invoke", Route::Invoke),
            (&Method::POST, "/v1/jecp", Route::LegacyInvoke),
            (&Method::POST, "/api/agents/register", Route::RegisterAgent),
            (&Method::POST, "/api/agent/register", Route::RegisterAgent),
            (&Method::POST, "/v1/agents/me/rotate-key", Route::RotateKey),
            (&Method::GET, "/v1/agents/me", Route::AgentMe),
            (
                &Method::GET,
                "/v1/agents/me/transactions",
                Route::AgentTransactions,
            ),
            (&Method::POST, "/api/agents/topup", Route::Topup),
            (&Method::POST, "/api/agent/topup", Route::Topup),
            (&Method::POST, "/api/stripe/webhook", Route::StripeWebhook),
            (&Method::GET, "/v1/operator/agents", Route::OperatorAgents),
        ];
        for (method, path, route) in cases {
            assert_eq!(
                resolve(method, path),
                Resolution::Matched(route.clone()),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn capability_ids_may_contain_one_slash() {
        assert_eq!(
            resolve(&Method::GET, "/v1/capabilities/hub/echo"),
            Resolution::Matched(Route::Capability {
                id: "hub/echo".into()
            })
        );
        assert_eq!(
            resolve(&Method::GET, "/v1/capabilities/hub%2Fecho"),
            Resolution::Matched(Route::Capability {
                id: "hub/echo".into()
            })
        );
        assert_eq!(
            resolve(&Method::GET, "/v1/capabilities/echo"),
            Resolution::Matched(Route::Capability { id: "echo".into() })
        );
        assert_eq!(
            resolve(&Method::GET, "/v1/capabilities/a/b/c"),
            Resolution::NotFound
        );
        assert_eq!(
            resolve(&Method::GET, "/v1/capabilities/"),
            Resolution::NotFound
        );
        assert_eq!(
            resolve(&Method::GET, "/v1/capabilities/a//"),
            Resolution::NotFound
        );
        assert_eq!(
            resolve(&Method::GET, "/v1/capabilities/%zz"),
            Resolution::NotFound
        );
        assert_eq!(
            resolve(&Method::GET, "/v1/capabilities/%0a"),
            Resolution::NotFound
        );
        let long = format!("/v1/capabilities/{}", "a".repeat(PATH_ID_LEN_MAX + 1));
        assert_eq!(resolve(&Method::GET, &long), Resolution::NotFound);
    }

    #[test]
    fn operator_routes_capture_the_agent_id() {
        assert_eq!(
            resolve(&Method::PATCH, "/v1/operator/agents/hub_ag_1"),
            Resolution::Matched(Route::OperatorAgent {
                agent_id: "hub_ag_1".into()
            })
        );
        assert_eq!(
            resolve(&Method::POST, "/v1/operator/agents/hub_ag_1/credit"),
            Resolution::Matched(Route::OperatorCredit {
                agent_id: "hub_ag_1".into()
            })
        );
        assert_eq!(
            resolve(&Method::POST, "/v1/operator/agents/hub_ag_1/other"),
            Resolution::NotFound
        );
        assert_eq!(
            resolve(&Method::GET, "/v1/operator/agents//credit"),
            Resolution::NotFound
        );
    }

    #[test]
    fn wrong_method_preflight_and_unknown_path() {
        assert_eq!(
            resolve(&Method::POST, "/health"),
            Resolution::MethodNotAllowed(GET)
        );
        assert_eq!(
            resolve(&Method::GET, "/v1/invoke"),
            Resolution::MethodNotAllowed(POST)
        );
        assert_eq!(
            resolve(&Method::OPTIONS, "/v1/invoke"),
            Resolution::Preflight(POST)
        );
        assert_eq!(resolve(&Method::GET, "/nope"), Resolution::NotFound);
        assert_eq!(resolve(&Method::OPTIONS, "/nope"), Resolution::NotFound);
        assert_eq!(resolve(&Method::GET, "/health/"), Resolution::NotFound);
    }
}
