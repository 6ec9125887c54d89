//! Discovery, health, routing and CORS over real HTTP against the real `App`.

mod http_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http_support::{SwitchableProbe, TestServer, app, exchange, fast_limits, get, request_bytes};
use jecp_hub::config::Config;
use serde_json::Value;

fn https_config() -> Config {
    let flags = jecp_hub::config::ServeFlags {
        public_url: Some("https://hub.example.com/".into()),
        hub_name: Some("Example Hub".into()),
        operator_name: Some("Example Operator Inc.".into()),
        support_contact: Some("support@hub.example.com".into()),
        vendor_prefix: Some("exh".into()),
        ..Default::default()
    };
    Config::from_sources(None, &|_| None, &flags).expect("valid config")
}

async fn start_default() -> (TestServer, Arc<SwitchableProbe>) {
    let probe = Arc::new(SwitchableProbe::default());
    let (app, dir) = app(https_config(), probe.clone());
    let server = TestServer::start(app, fast_limits())
        .await
        .with_data_dir(dir);
    (server, probe)
}

#[tokio::test]
async fn health_reports_ok_and_503_when_the_store_is_down() {
    let (server, probe) = start_default().await;
    let response = get(server.addr, "/health", &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("cache-control"), Some("no-cache"));
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    let body = response.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["engine"], "jecp-v1");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].is_u64());
    assert_eq!(body["checks"]["database"], "ok");
    assert!(body["checks"]["response_ms"].is_u64());
    assert_eq!(body["durability"], "batched(5ms)");
    assert_eq!(body["loss_window_ms"], 5);

    probe.down.store(true, Ordering::SeqCst);
    let response = get(server.addr, "/health", &[]).await;
    assert_eq!(response.status, 503);
    let body = response.json();
    assert_eq!(body["status"], "down");
    assert_eq!(body["checks"]["database"], "down");
    assert!(
        !String::from_utf8_lossy(&response.body).contains("disk unplugged"),
        "internal cause leaked"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn head_health_has_headers_and_no_body() {
    let (server, _) = start_default().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, &request_bytes("HEAD", "/health", &[], b""))
        .await
        .unwrap();
    let received = http_support::read_to_close(&mut stream).await;
    let (response, consumed) =
        http_support::parse_head_response(&received).expect("a response head");
    assert_eq!(response.status, 200);
    assert_eq!(consumed, received.len(), "HEAD must not carry a body");
    assert!(
        response
            .header("content-length")
            .is_some_and(|len| len != "0")
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn agent_card_has_spec_fields_from_config() {
    let (server, _) = start_default().await;
    let response = get(server.addr, "/.well-known/agent.json", &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.header("cache-control"),
        Some("public, max-age=3600, s-maxage=86400")
    );
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    let card = response.json();
    assert_eq!(card["name"], "Example Hub");
    assert_eq!(card["url"], "https://hub.example.com");
    assert_eq!(card["provider"]["organization"], "Example Operator Inc.");
    assert_eq!(
        card["jecp"]["endpoint"],
        "https://hub.example.com/v1/invoke"
    );
    assert_eq!(
        card["jecp"]["capabilities_url"],
        "https://hub.example.com/v1/capabilities"
    );
    assert_eq!(card["authentication"]["api_key_header"], "X-API-Key");
    assert_eq!(
        card["authentication"]["registration_url"],
        "https://hub.example.com/api/agent/register"
    );
    server.stop().await.unwrap();
}

fn compile_schema(path: &std::path::Path) -> jsonschema::Validator {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

fn assert_valid(validator: &jsonschema::Validator, document: &Value, which: &str) {
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "agent-guide.json is invalid against {which}: {errors:#?}"
    );
}

#[tokio::test]
async fn agent_guide_validates_against_project_and_spec_schemas() {
    let (server, _) = start_default().await;
    let response = get(server.addr, "/.well-known/agent-guide.json", &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    // JECP-DISCOVERY-MUST-001 requires both directives.
    let cache_control = response.header("cache-control").unwrap();
    assert!(
        cache_control.contains("max-age=300") && cache_control.contains("must-revalidate"),
        "{cache_control}"
    );
    let guide = response.json();

    let project_schema =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/agent-guide.json");
    assert_valid(
        &compile_schema(&project_schema),
        &guide,
        "schemas/agent-guide.json",
    );
    match http_support::shared_spec_file("schemas/v1/agent-guide.json") {
        Some(spec_schema) => assert_valid(
            &compile_schema(&spec_schema),
            &guide,
            &spec_schema.display().to_string(),
        ),
        None => println!(
            "note: ../shared/jecp-spec is absent; skipped validation against the spec's own schema"
        ),
    }

    assert_eq!(guide["vendor_prefix"], "exh");
    assert_eq!(guide["hub_url"], "https://hub.example.com");
    assert_eq!(
        guide["register_endpoint"],
        "https://hub.example.com/api/agent/register"
    );
    assert_eq!(guide["contact"]["support"], "support@hub.example.com");
    assert_eq!(
        guide["provenance_versions_supported"],
        serde_json::json!(["v2"])
    );
    assert_eq!(
        guide["supported_capabilities"],
        serde_json::json!(["hub/echo", "hub/pdf-render"])
    );
    // last_updated is the real build time, not a constant.
    let stamped = time::OffsetDateTime::parse(
        guide["last_updated"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339 last_updated");
    let age = time::OffsetDateTime::now_utc() - stamped;
    assert!(age.whole_seconds().abs() < 300, "last_updated is {age} old");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_schema_rejects_a_guide_missing_required_fields() {
    // Guards the validation above against a schema that accepts anything.
    let project_schema =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/agent-guide.json");
    let validator = compile_schema(&project_schema);
    let mut guide = jecp_hub::http::discovery::agent_guide(
        &https_config(),
        &Default::default(),
        time::OffsetDateTime::now_utc(),
    );
    assert!(validator.is_valid(&guide));
    guide["hub_url"] = Value::from("http://insecure.example");
    assert!(!validator.is_valid(&guide));
    guide.as_object_mut().unwrap().remove("hub_url");
    assert!(!validator.is_valid(&guide));
}

#[tokio::test]
async fn llms_txt_is_text_bounded_and_cacheable() {
    let (server, _) = start_default().await;
    let response = get(server.addr, "/llms.txt", &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        response.header("cache-control"),
        Some("public, max-age=3600")
    );
    assert!(response.body.len() <= 50 * 1024);
    let text = String::from_utf8(response.body).unwrap();
    assert!(text.starts_with("# Example Hub\n"));
    assert!(
        text.contains("## For AI Agents") && text.contains("https://hub.example.com/v1/invoke")
    );
    assert!(text.contains("hub/echo: $0.001 per call"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn etag_and_if_none_match_give_304_on_every_document() {
    let (server, _) = start_default().await;
    for path in [
        "/.well-known/agent.json",
        "/.well-known/agent-guide.json",
        "/llms.txt",
    ] {
        let first = get(server.addr, path, &[]).await;
        let etag = first
            .header("etag")
            .unwrap_or_else(|| panic!("{path} has no ETag"))
            .to_owned();
        assert!(etag.starts_with('"'), "strong ETag expected: {etag}");
        let again = get(server.addr, path, &[]).await;
        assert_eq!(
            again.header("etag"),
            Some(etag.as_str()),
            "{path} ETag must be stable"
        );

        let conditional = get(server.addr, path, &[&format!("If-None-Match: {etag}")]).await;
        assert_eq!(conditional.status, 304, "{path}");
        assert!(conditional.body.is_empty());
        assert_eq!(conditional.header("etag"), Some(etag.as_str()));
        assert!(conditional.header("cache-control").is_some());

        let stale = get(
            server.addr,
            path,
            &["If-None-Match: \"not-the-current-one\""],
        )
        .await;
        assert_eq!(stale.status, 200, "{path}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn preflight_answers_with_cors_headers_on_known_paths_only() {
    let (server, _) = start_default().await;
    let preflight = |path: &'static str| {
        request_bytes(
            "OPTIONS",
            path,
            &[
                "Origin: https://agent.example",
                "Access-Control-Request-Method: POST",
                "Access-Control-Request-Headers: X-Agent-ID, X-API-Key, X-Payment, Content-Type",
            ],
            b"",
        )
    };
    let response = exchange(server.addr, &preflight("/v1/invoke")).await;
    assert_eq!(response.status, 204);
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        response.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    let allow_headers = response.header("access-control-allow-headers").unwrap();
    for name in [
        "X-Agent-ID",
        "X-API-Key",
        "X-Payment",
        "X-Request-Id",
        "Content-Type",
        "Authorization",
    ] {
        assert!(
            allow_headers.contains(name),
            "{name} missing from {allow_headers}"
        );
    }
    let expose = response.header("access-control-expose-headers").unwrap();
    for name in [
        "X-Payment-Response",
        "X-Request-Id",
        "Retry-After",
        "WWW-Authenticate",
    ] {
        assert!(expose.contains(name), "{name} missing from {expose}");
    }
    assert!(response.header("access-control-max-age").is_some());

    let response = exchange(server.addr, &preflight("/.well-known/agent-guide.json")).await;
    assert_eq!(response.status, 204);
    assert_eq!(
        response.header("access-control-allow-methods"),
        Some("GET, HEAD, OPTIONS")
    );

    let response = exchange(server.addr, &preflight("/v1/capabilities/hub/echo")).await;
    assert_eq!(response.status, 204);

    let response = exchange(server.addr, &preflight("/no/such/path")).await;
    assert_eq!(response.status, 404);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_path_is_a_404_envelope() {
    let (server, _) = start_default().await;
    let response = get(
        server.addr,
        "/definitely/not/here?x=1",
        &["X-Request-Id: trace-123"],
    )
    .await;
    assert_eq!(response.status, 404);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(response.header("x-request-id"), Some("trace-123"));
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let body = response.json();
    assert_eq!(body["jecp"], "1.0");
    assert_eq!(body["status"], "failed");
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    assert_eq!(body["error"]["details"]["path"], "/definitely/not/here");
    assert_eq!(
        body["error"]["documentation_url"],
        "https://jecp.dev/errors/not_found"
    );
    assert_eq!(
        body["error"]["details"]["documentation_url"],
        "https://jecp.dev/errors/not_found"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_id_unsafe_to_echo_is_not_reflected() {
    let (server, _) = start_default().await;
    let response = get(
        server.addr,
        "/health",
        &["X-Request-Id: has spaces and <html>"],
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-request-id"), None);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let (server, _) = start_default().await;
    let response = exchange(server.addr, &request_bytes("POST", "/health", &[], b"{}")).await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(response.json()["error"]["code"], "METHOD_NOT_ALLOWED");

    let response = get(server.addr, "/v1/invoke", &[]).await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("POST, OPTIONS"));

    let response = exchange(
        server.addr,
        &request_bytes("DELETE", "/v1/operator/agents/hub_ag_1", &[], b""),
    )
    .await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD, PATCH, OPTIONS"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn discovery_refreshes_when_the_catalog_changes() {
    let probe = Arc::new(SwitchableProbe::default());
    let (app, dir) = app(https_config(), probe);
    let server = TestServer::start(app.clone(), fast_limits())
        .await
        .with_data_dir(dir);
    let before = get(server.addr, "/.well-known/agent-guide.json", &[]).await;
    app.update_discovery(jecp_hub::http::DiscoveryInputs {
        supported_capabilities: serde_json::json!(["hub/echo", "hub/new-thing"]),
        llms_catalog: String::new(),
    });
    let after = get(server.addr, "/.well-known/agent-guide.json", &[]).await;
    assert_ne!(before.header("etag"), after.header("etag"));
    assert_eq!(
        after.json()["supported_capabilities"],
        serde_json::json!(["hub/echo", "hub/new-thing"])
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn errors_raised_by_the_server_carry_cors_and_no_store() {
    use tokio::io::AsyncWriteExt;
    let (server, _) = start_default().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /v1/invoke HTTP/1.1\r\nHost: hub.test\r\nContent-Length: 11534336\r\n\r\n",
        )
        .await
        .unwrap();
    let response = http_support::read_one_response(&mut stream).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert!(
        response
            .header("access-control-expose-headers")
            .unwrap()
            .contains("X-Payment-Response")
    );
    let body = response.json();
    assert_eq!(body["error"]["code"], "INPUT_TOO_LARGE");
    server.stop().await.unwrap();
}
