//! [`App`], the Hub's [`Service`]: routes each request and renders the answer.
//!
//! Dispatch is one `match` over [`Route`] in `App::dispatch`. Discovery, health, CORS
//! preflight, 404 and 405 are answered here; the arms for business endpoints (invoke, catalog,
//! agents, operator, webhooks) call into the `hub` layer once it is wired in. Every response
//! leaves with CORS headers, and a safe client `X-Request-Id` is echoed back. A response that
//! sets no `Cache-Control` of its own gets `no-store`: only discovery documents are cacheable,
//! and a cached paid result or error would replay to the wrong caller (spec 06 §11.1 requires
//! `no-store` on every `/v1/invoke` response).

use std::sync::{Arc, RwLock};
use std::time::Instant;

use hyper::header::{self, HeaderValue};

use crate::config::Config;
use crate::http::discovery::{self, DiscoveryDocs, DiscoveryInputs, RenderedDocument};
use crate::http::endpoints;
use crate::http::health::{self, HealthProbe};
use crate::http::request::{Request, Service};
use crate::http::response::{self, JSON_CONTENT_TYPE, Response, TEXT_CONTENT_TYPE};
use crate::http::router::{self, Resolution, Route};
use crate::hub::Hub;
use crate::protocol::{ErrorCode, HubLinks, JecpError};

/// The Hub's HTTP application.
pub struct App {
    hub: Arc<Hub>,
    config: Arc<Config>,
    links: HubLinks,
    discovery: RwLock<DiscoveryState>,
    health: Arc<dyn HealthProbe>,
    started_at: Instant,
}

struct DiscoveryState {
    inputs: DiscoveryInputs,
    docs: Arc<DiscoveryDocs>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .field("started_at", &self.started_at)
            .finish()
    }
}

impl App {
    /// The production app: discovery documents list the Hub's live catalog and `/health`
    /// asks the Hub's store.
    pub fn for_hub(hub: Arc<Hub>) -> App {
        let discovery = DiscoveryInputs {
            supported_capabilities: hub.catalog.guide_entries(),
            llms_catalog: hub.catalog.llms_lines(),
        };
        let health: Arc<dyn HealthProbe> = hub.clone();
        App::new(hub, discovery, health)
    }

    /// An app with explicit discovery facts and health probe (tests use doubles for both).
    pub fn new(hub: Arc<Hub>, discovery: DiscoveryInputs, health: Arc<dyn HealthProbe>) -> App {
        let config = hub.config.clone();
        let docs = Arc::new(DiscoveryDocs::build(&config, &discovery));
        App {
            hub,
            links: config.hub_links(),
            config,
            discovery: RwLock::new(DiscoveryState {
                inputs: discovery,
                docs,
            }),
            health,
            started_at: Instant::now(),
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn links(&self) -> &HubLinks {
        &self.links
    }

    /// Replaces the catalog facts and re-renders the discovery documents (new `last_updated`,
    /// new ETags). Call it whenever the catalog changes (spec §4.4: within 30 minutes).
    pub fn update_discovery(&self, inputs: DiscoveryInputs) {
        let docs = Arc::new(DiscoveryDocs::build(&self.config, &inputs));
        let mut state = self
            .discovery
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *state = DiscoveryState { inputs, docs };
    }

    /// The current documents, re-stamped first if they are a day old.
    fn discovery_docs(&self) -> Arc<DiscoveryDocs> {
        {
            let state = self
                .discovery
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if !state.docs.is_due_for_restamp() {
                return state.docs.clone();
            }
        }
        let mut state = self
            .discovery
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another request may have re-stamped while this one waited for the lock.
        if state.docs.is_due_for_restamp() {
            state.docs = Arc::new(DiscoveryDocs::build(&self.config, &state.inputs));
        }
        state.docs.clone()
    }

    /// Routes and answers one request.
    pub async fn handle(&self, request: Request) -> Response {
        let mut response = match router::resolve(&request.method, &request.path) {
            Resolution::Matched(route) => self.dispatch(route, &request).await,
            Resolution::Preflight(allowed) => response::preflight(allowed),
            Resolution::MethodNotAllowed(allowed) => {
                let allow = response::allow_header_value(allowed);
                let error = JecpError::new(
                    ErrorCode::MethodNotAllowed,
                    format!(
                        "{} is not allowed on {}; allowed: {allow}.",
                        request.method, request.path
                    ),
                )
                .detail("allowed_methods", allow.clone())
                .header("Allow", allow);
                response::error(&error, None, &self.links)
            }
            Resolution::NotFound => {
                let error = JecpError::new(ErrorCode::NotFound, "No endpoint at this path.")
                    .detail("path", truncate_for_echo(&request.path))
                    .detail(
                        "agent_guide",
                        self.links.url("/.well-known/agent-guide.json"),
                    );
                response::error(&error, None, &self.links)
            }
        };
        finish(&mut response, request.client_request_id());
        response
    }

    /// One arm per route.
    async fn dispatch(&self, route: Route, request: &Request) -> Response {
        match route {
            Route::Health => self.health(),
            Route::AgentCard => {
                let docs = self.discovery_docs();
                serve_document(
                    request,
                    &docs.agent_card,
                    JSON_CONTENT_TYPE,
                    discovery::AGENT_CARD_CACHE_CONTROL,
                )
            }
            Route::AgentGuide => {
                let docs = self.discovery_docs();
                serve_document(
                    request,
                    &docs.agent_guide,
                    JSON_CONTENT_TYPE,
                    discovery::AGENT_GUIDE_CACHE_CONTROL,
                )
            }
            Route::LlmsTxt => {
                let docs = self.discovery_docs();
                serve_document(
                    request,
                    &docs.llms_txt,
                    TEXT_CONTENT_TYPE,
                    discovery::LLMS_TXT_CACHE_CONTROL,
                )
            }
            Route::Capabilities => endpoints::capabilities(&self.hub, request),
            Route::Capability { id } => endpoints::capability(&self.hub, request, &id),
            Route::Invoke => {
                endpoints::invoke(&self.hub, request, crate::hub::Endpoint::Invoke).await
            }
            Route::LegacyInvoke => {
                endpoints::invoke(&self.hub, request, crate::hub::Endpoint::Legacy).await
            }
            Route::RegisterAgent => endpoints::register(&self.hub, request).await,
            Route::RotateKey => endpoints::rotate_key(&self.hub, request).await,
            Route::AgentMe => endpoints::me(&self.hub, request),
            Route::AgentTransactions => endpoints::transactions(&self.hub, request).await,
            Route::Topup => endpoints::topup(&self.hub, request).await,
            Route::StripeWebhook => endpoints::stripe_webhook(&self.hub, request).await,
            Route::OperatorAgents => endpoints::operator_agents(&self.hub, request),
            Route::OperatorAgent { agent_id } => {
                endpoints::operator_agent(&self.hub, request, &agent_id).await
            }
            Route::OperatorCredit { agent_id } => {
                endpoints::operator_credit(&self.hub, request, &agent_id).await
            }
        }
    }

    fn health(&self) -> Response {
        let (status, body) = health::report(self.health.as_ref(), self.started_at);
        let mut response = response::json(status, &body);
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(discovery::HEALTH_CACHE_CONTROL),
        );
        response
    }
}

impl Service for App {
    fn call(&self, request: Request) -> impl Future<Output = Response> + Send {
        self.handle(request)
    }

    fn edge_error(&self, error: &JecpError) -> Response {
        let mut response = response::error(error, None, &self.links);
        finish(&mut response, None);
        response
    }
}

/// Headers every response gets: CORS, `no-store` unless the handler chose a cache policy, and
/// the client's request id when it is safe to echo.
fn finish(response: &mut Response, client_request_id: Option<&str>) {
    response::with_cors(response);
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response::no_store(response);
    }
    if let Some(id) = client_request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        response.headers_mut().insert("x-request-id", id);
    }
}

fn serve_document(
    request: &Request,
    document: &RenderedDocument,
    content_type: &'static str,
    cache_control: &'static str,
) -> Response {
    // For HEAD, hyper sends the headers (Content-Length included) and omits the body.
    response::cacheable_bytes(
        &request.headers,
        content_type,
        document.body.clone(),
        &document.etag,
        cache_control,
    )
}

/// Paths are echoed in 404 details; cap them so a huge URL is not reflected whole.
fn truncate_for_echo(path: &str) -> String {
    const ECHO_LEN_MAX: usize = 256;
    if path.len() <= ECHO_LEN_MAX {
        return path.to_owned();
    }
    let mut cut = ECHO_LEN_MAX;
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &path[..cut])
}
