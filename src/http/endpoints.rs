//! Business endpoints: each function reads what its route needs from the
//! [`Request`] (headers, query, body), calls the [`Hub`], and turns the
//! transport-agnostic [`Reply`] into a hyper response. No business rules
//! live here.

use hyper::StatusCode;
use hyper::header::{self, HeaderName, HeaderValue};

use crate::catalog::{self, ListQuery};
use crate::http::request::{Request, names};
use crate::http::response::{self, JSON_CONTENT_TYPE, Response};
use crate::hub::agents::AgentHeaders;
use crate::hub::operator::parse_query;
use crate::hub::{Endpoint, Hub, InvokeCall, Reply};
use crate::protocol::{ErrorCode, JecpError};

/// Converts a hub [`Reply`] to a response. Repeated header names (two
/// `Link`s) are appended, not replaced.
pub fn reply(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = response::bytes_response(status, reply.content_type, reply.body);
    let headers = response.headers_mut();
    for (name, value) in reply.headers {
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => tracing::warn!(header = %name, "dropped a response header that is not valid HTTP"),
        }
    }
    response
}

fn agent_headers(request: &Request) -> AgentHeaders<'_> {
    AgentHeaders {
        agent_id: request.header_str(names::X_AGENT_ID),
        api_key: request.header_str(names::X_API_KEY),
    }
}

/// `GET /v1/capabilities` with the SDK's and the spec's query parameters.
pub fn capabilities(hub: &Hub, request: &Request) -> Response {
    let mut query = ListQuery::default();
    for (key, value) in parse_query(request.query.as_deref().unwrap_or("")) {
        let slot = match key.as_str() {
            "page_size" => &mut query.page_size,
            "limit" => &mut query.limit,
            "cursor" => &mut query.cursor,
            "namespace" => &mut query.namespace,
            "provider" => &mut query.provider,
            "tier" => &mut query.tier,
            "tags" => &mut query.tags,
            "paginated" => &mut query.paginated,
            _ => continue,
        };
        *slot = Some(value);
    }
    match hub.catalog.list(&query) {
        Ok(listing) => cacheable_catalog(hub, request, &listing),
        Err(error) => response::error(&error, None, &hub.links),
    }
}

/// `GET /v1/capabilities/{id}`, plain or `namespace/name`.
pub fn capability(hub: &Hub, request: &Request, id: &str) -> Response {
    match hub.catalog.detail(id) {
        Some(detail) => cacheable_catalog(hub, request, &detail),
        None => {
            let error = JecpError::new(
                ErrorCode::CapabilityNotFound,
                format!("capability {id:?} does not exist on this Hub"),
            )
            .detail("capability", id.to_owned());
            response::error(&error, None, &hub.links)
        }
    }
}

/// Catalog answers share the catalog's ETag: every listing and detail is a
/// function of the catalog, so one tag tells a client whether anything moved.
fn cacheable_catalog(hub: &Hub, request: &Request, body: &serde_json::Value) -> Response {
    let bytes = bytes::Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    response::cacheable_bytes(
        &request.headers,
        JSON_CONTENT_TYPE,
        bytes,
        hub.catalog.etag(),
        catalog::CACHE_CONTROL,
    )
}

/// `POST /v1/invoke` and `POST /v1/jecp`.
pub async fn invoke(hub: &Hub, request: &Request, endpoint: Endpoint) -> Response {
    let call = InvokeCall {
        endpoint,
        content_type: request.header_str(header::CONTENT_TYPE),
        body: &request.body,
        agent_id_header: request.header_str(names::X_AGENT_ID),
        api_key_header: request.header_str(names::X_API_KEY),
        idempotency_key_header: request.header_str(names::X_IDEMPOTENCY_KEY),
        x_payment_header: request.header_str(names::X_PAYMENT),
        accept_header: request.header_str(header::ACCEPT),
    };
    let mut response = reply(hub.invoke(call).await);
    // Spec 06 §11: never cache an invoke answer, success or error.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /api/agents/register` and `/api/agent/register`.
pub async fn register(hub: &Hub, request: &Request) -> Response {
    reply(hub.register(&request.body, request.remote.ip()).await)
}

/// `POST /v1/agents/me/rotate-key`.
pub async fn rotate_key(hub: &Hub, request: &Request) -> Response {
    reply(hub.rotate_key(agent_headers(request), &request.body).await)
}

/// `GET /v1/agents/me`.
pub fn me(hub: &Hub, request: &Request) -> Response {
    reply(hub.me(agent_headers(request)))
}

/// `GET /v1/agents/me/transactions?cursor=&limit=`.
pub async fn transactions(hub: &Hub, request: &Request) -> Response {
    reply(
        hub.transactions(agent_headers(request), request.query.as_deref())
            .await,
    )
}

/// `POST /api/agents/topup` and `/api/agent/topup`.
pub async fn topup(hub: &Hub, request: &Request) -> Response {
    reply(hub.topup(agent_headers(request), &request.body).await)
}

/// `POST /api/stripe/webhook`: the raw body is what Stripe signed.
pub async fn stripe_webhook(hub: &Hub, request: &Request) -> Response {
    reply(
        hub.stripe_webhook(request.header_str(names::STRIPE_SIGNATURE), &request.body)
            .await,
    )
}

fn operator_guard(hub: &Hub, request: &Request) -> Result<(), Response> {
    hub.authorize_operator(request.header_str(header::AUTHORIZATION))
        .map_err(|error| response::error(&error, None, &hub.links))
}

/// `GET /v1/operator/agents?after=&limit=`.
pub fn operator_agents(hub: &Hub, request: &Request) -> Response {
    if let Err(denied) = operator_guard(hub, request) {
        return denied;
    }
    reply(hub.operator_list(request.query.as_deref()))
}

/// `GET` or `PATCH /v1/operator/agents/{agent_id}`.
pub async fn operator_agent(hub: &Hub, request: &Request, agent_id: &str) -> Response {
    if let Err(denied) = operator_guard(hub, request) {
        return denied;
    }
    if request.method == hyper::Method::PATCH {
        reply(hub.operator_patch(agent_id, &request.body).await)
    } else {
        reply(hub.operator_show(agent_id))
    }
}

/// `POST /v1/operator/agents/{agent_id}/credit`.
pub async fn operator_credit(hub: &Hub, request: &Request, agent_id: &str) -> Response {
    if let Err(denied) = operator_guard(hub, request) {
        return denied;
    }
    reply(hub.operator_credit(agent_id, &request.body).await)
}
