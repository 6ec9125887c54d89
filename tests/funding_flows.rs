//! Funding a wallet end to end over HTTP (issue 7): the operator API, Stripe
//! Checkout top-up against a fake Stripe on loopback, webhook delivery (valid,
//! forged, stale, duplicate, concurrent), the agent's own balance and history,
//! and `ledger verify` on the data directory afterwards.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::TestHub;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jecp_hub::config::StripeSettings;
use ring::hmac;
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
const WEBHOOK_SECRET: &str = "whsec_test_secret_for_the_hub";

/// A fake Stripe: answers Checkout Session creation and records each request.
struct FakeStripe {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<(String, String, String)>>>,
}

async fn fake_stripe() -> FakeStripe {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let recorded = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let recorded = recorded.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        let auth = request
                            .headers()
                            .get("authorization")
                            .map(|value| value.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        recorded.lock().unwrap().push((
                            path,
                            auth,
                            String::from_utf8_lossy(&body).into_owned(),
                        ));
                        let reply = json!({"id": "cs_test_42", "object": "checkout.session",
                                           "url": "https://checkout.stripe.com/c/pay/cs_test_42"});
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(reply.to_string()),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    FakeStripe { addr, requests }
}

async fn funded_hub(stripe: Option<&FakeStripe>) -> TestHub {
    let api_base = stripe.map(|stripe| format!("http://{}", stripe.addr));
    TestHub::start(move |config| {
        config.admin_token = Some(ADMIN_TOKEN.into());
        config.free_calls_per_agent = 0;
        config.stripe = api_base.map(|api_base| StripeSettings {
            secret_key: "sk_test_fake_key".into(),
            webhook_secret: WEBHOOK_SECRET.into(),
            success_url: "https://hub.example/topup/success".into(),
            cancel_url: "https://hub.example/topup/cancel".into(),
            api_base,
        });
    })
    .await
}

fn stripe_signature(body: &str, timestamp: i64, secret: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
    format!("t={timestamp},v1={}", hex::encode(tag.as_ref()))
}

fn checkout_completed(event_id: &str, session_id: &str, agent_id: &str, cents: u64) -> String {
    json!({
        "id": event_id, "object": "event", "type": "checkout.session.completed",
        "data": {"object": {
            "id": session_id, "object": "checkout.session", "amount_total": cents, "currency": "usd",
            "client_reference_id": agent_id, "metadata": {"agent_id": agent_id, "amount_usd": (cents / 100).to_string()},
            "payment_status": "paid", "status": "complete"
        }}
    })
    .to_string()
}

async fn deliver(hub: &TestHub, body: &str, signature: &str) -> common::Response {
    hub.post(
        "/api/stripe/webhook",
        &[
            ("content-type", "application/json"),
            ("stripe-signature", signature),
        ],
        body,
    )
    .await
}

#[tokio::test]
async fn operator_credits_once_per_reference_and_the_agent_sees_it() {
    let hub = funded_hub(None).await;
    let agent = hub.register("funded-by-operator").await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let path = format!("/v1/operator/agents/{}/credit", agent.0);
    let body = json!({"amount_usdc": "12.5", "reference": "invoice-001"}).to_string();
    let first = hub
        .post(
            &path,
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            &body,
        )
        .await;
    assert_eq!(
        first.status,
        201,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(first.json()["credited"], true);
    assert_eq!(first.json()["balance_usdc"], json!(12.5));
    let again = hub
        .post(
            &path,
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            &body,
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.json()["credited"],
        false,
        "the same reference credits once"
    );
    assert_eq!(again.json()["balance_usdc"], json!(12.5));

    // Wrong or missing token.
    let denied = hub
        .post(
            &path,
            &[("authorization", "Bearer wrong-token-wrong-token")],
            &body,
        )
        .await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.json()["error"]["code"], "OPERATOR_AUTH_FAILED");
    assert_eq!(hub.post(&path, &[], &body).await.status, 401);

    // Bad amounts are refused with a clear message.
    for amount in [json!("-1"), json!("0"), json!("0.0000001"), json!("abc")] {
        let bad = json!({"amount_usdc": amount, "reference": "bad"}).to_string();
        let response = hub.post(&path, &[("authorization", &bearer)], &bad).await;
        assert_eq!(
            response.status,
            400,
            "{amount}: {}",
            String::from_utf8_lossy(&response.body)
        );
    }
    let unknown = hub
        .post(
            "/v1/operator/agents/hub_ag_nobody/credit",
            &[("authorization", &bearer)],
            &body,
        )
        .await;
    assert_eq!(unknown.status, 404);

    // The agent's own view.
    let me = hub
        .get("/v1/agents/me", &common::agent_headers(&agent))
        .await;
    assert_eq!(me.status, 200);
    let me = me.json();
    assert_eq!(me["balance_usdc"], json!(12.5));
    assert_eq!(me["tier"], "bronze");
    assert_eq!(me["total_calls"], 0);
    assert_eq!(me["rate_limit_rpm"], 10);

    // Spend some, then read the history: newest first, charge then credit.
    let paid = hub
        .invoke(&agent, "spend-0001", "utility", "echo", json!({"x": 1}))
        .await;
    assert_eq!(paid.status, 200);
    let history = hub
        .get("/v1/agents/me/transactions", &common::agent_headers(&agent))
        .await;
    assert_eq!(
        history.status,
        200,
        "{}",
        String::from_utf8_lossy(&history.body)
    );
    let history = history.json();
    let entries = history["transactions"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["type"], "charge");
    assert_eq!(entries[0]["capability"], "hub/utility");
    assert_eq!(entries[0]["amount_usdc"], json!(0.001));
    assert_eq!(
        entries[0]["transaction_id"],
        paid.json()["billing"]["transaction_id"]
    );
    assert_eq!(entries[1]["type"], "credit");
    assert_eq!(entries[1]["source"], "operator");
    assert_eq!(entries[1]["amount_usdc"], json!(12.5));
    assert_eq!(history["has_more"], false);
    assert_eq!(hub.ledger_violations(), 0);
}

#[tokio::test]
async fn history_pages_with_a_cursor() {
    let hub = funded_hub(None).await;
    let agent = hub.register("paging-agent").await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    for index in 0..5 {
        let body = json!({"amount_usdc": "1", "reference": format!("ref-{index}")}).to_string();
        let path = format!("/v1/operator/agents/{}/credit", agent.0);
        assert_eq!(
            hub.post(&path, &[("authorization", &bearer)], &body)
                .await
                .status,
            201
        );
    }
    for index in 0..3 {
        let response = hub
            .invoke(
                &agent,
                &format!("page-{index:04}"),
                "utility",
                "echo",
                json!({}),
            )
            .await;
        assert_eq!(response.status, 200);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/agents/me/transactions?limit=3&cursor={cursor}"),
            None => "/v1/agents/me/transactions?limit=3".to_owned(),
        };
        let page = hub.get(&path, &common::agent_headers(&agent)).await.json();
        for entry in page["transactions"].as_array().unwrap() {
            seen.push(entry["type"].as_str().unwrap().to_owned());
        }
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
        assert!(seen.len() <= 8, "paging must end");
    }
    assert_eq!(
        seen,
        [
            "charge", "charge", "charge", "credit", "credit", "credit", "credit", "credit"
        ]
    );
    let bad = hub
        .get(
            "/v1/agents/me/transactions?cursor=zz",
            &common::agent_headers(&agent),
        )
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn topup_without_stripe_points_at_the_operator() {
    let hub = funded_hub(None).await;
    let agent = hub.register("no-stripe-agent").await;
    let response = hub
        .post(
            "/api/agents/topup",
            &common::agent_headers(&agent),
            r#"{"amount": 20}"#,
        )
        .await;
    assert_eq!(response.status, 503);
    let body = response.json();
    assert_eq!(body["error"]["code"], "TOPUP_UNAVAILABLE");
    assert_eq!(body["next_action"]["type"], "contact_operator");
    let bad = hub
        .post(
            "/api/agent/topup",
            &common::agent_headers(&agent),
            r#"{"amount": 7}"#,
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json()["error"]["details"]["allowed_amounts_usd"],
        json!([5, 20, 100])
    );
    let anonymous = hub
        .post("/api/agents/topup", &[], r#"{"amount": 20}"#)
        .await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test]
async fn stripe_topup_and_webhook_credit_exactly_once() {
    let stripe = fake_stripe().await;
    let hub = funded_hub(Some(&stripe)).await;
    let agent = hub.register("stripe-agent").await;

    // Checkout: the Hub asks Stripe for a session of 20 USD for this agent.
    let response = hub
        .post(
            "/api/agents/topup",
            &common::agent_headers(&agent),
            r#"{"amount": 20, "returnTo": "https://agent.example/back"}"#,
        )
        .await;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let body = response.json();
    assert_eq!(body["sessionId"], "cs_test_42");
    assert_eq!(body["url"], "https://checkout.stripe.com/c/pay/cs_test_42");
    {
        let requests = stripe.requests.lock().unwrap();
        assert_eq!(requests.len(), 1);
        let (path, auth, form) = &requests[0];
        assert_eq!(path, "/v1/checkout/sessions");
        assert_eq!(auth, "Bearer sk_test_fake_key");
        assert!(
            form.contains("unit_amount%5D=2000") || form.contains("unit_amount]=2000"),
            "{form}"
        );
        assert!(form.contains(&agent.0), "{form}");
    }

    let now = jecp_hub::hub::now_s();
    let event = checkout_completed("evt_1", "cs_test_42", &agent.0, 2000);

    // Forged and stale deliveries credit nothing.
    let forged = deliver(
        &hub,
        &event,
        &stripe_signature(&event, now, "whsec_attacker"),
    )
    .await;
    assert_eq!(forged.status, 400);
    let stale = deliver(
        &hub,
        &event,
        &stripe_signature(&event, now - 3_600, WEBHOOK_SECRET),
    )
    .await;
    assert_eq!(stale.status, 400);
    assert_eq!(deliver(&hub, &event, "garbage").await.status, 400);
    assert_eq!(
        hub.get("/v1/agents/me", &common::agent_headers(&agent))
            .await
            .json()["balance_usdc"],
        json!(0)
    );

    // A valid delivery credits; a duplicate and many concurrent ones do not.
    let valid = stripe_signature(&event, now, WEBHOOK_SECRET);
    let first = deliver(&hub, &event, &valid).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["credited"], true);
    let duplicate = deliver(&hub, &event, &valid).await;
    assert_eq!(duplicate.status, 200);
    assert_eq!(duplicate.json()["credited"], false);

    let hub = Arc::new(hub);
    let second_event = checkout_completed("evt_2", "cs_test_43", &agent.0, 500);
    let second_signature = stripe_signature(&second_event, now, WEBHOOK_SECRET);
    let deliveries: Vec<_> = (0..16)
        .map(|_| {
            let hub = hub.clone();
            let event = second_event.clone();
            let signature = second_signature.clone();
            tokio::spawn(async move { deliver(&hub, &event, &signature).await.json() })
        })
        .collect();
    let mut credited = 0;
    for delivery in deliveries {
        let outcome: Value = delivery.await.unwrap();
        assert_eq!(outcome["received"], true);
        if outcome["credited"] == true {
            credited += 1;
        }
    }
    assert_eq!(
        credited, 1,
        "16 concurrent deliveries of one session credit once"
    );

    // Unknown events are acknowledged and ignored.
    let other = json!({"id": "evt_9", "type": "invoice.paid", "data": {"object": {}}}).to_string();
    let ignored = deliver(&hub, &other, &stripe_signature(&other, now, WEBHOOK_SECRET)).await;
    assert_eq!(ignored.status, 200);

    let me = hub
        .get("/v1/agents/me", &common::agent_headers(&agent))
        .await
        .json();
    assert_eq!(me["balance_usdc"], json!(25));
    let history = hub
        .get("/v1/agents/me/transactions", &common::agent_headers(&agent))
        .await
        .json();
    let sources: Vec<&str> = history["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["stripe", "stripe"]);
    assert_eq!(hub.ledger_violations(), 0);

    // `ledger verify` on the stopped Hub's data directory.
    let TestHub { running, dir, .. } =
        Arc::try_unwrap(hub).unwrap_or_else(|_| panic!("deliveries finished"));
    running.stop().await.unwrap();
    let report = jecp_hub::store::admin::verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.balance_sum, 0);
}

#[tokio::test]
async fn operator_freezes_and_tunes_agents_and_ledger_verify_passes_on_disk() {
    let hub = funded_hub(None).await;
    let agent = hub.register("tuned-agent").await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let path = format!("/v1/operator/agents/{}", agent.0);

    let frozen = hub
        .request(
            hyper::Method::PATCH,
            &path,
            &[("authorization", &bearer)],
            r#"{"frozen": true}"#,
        )
        .await;
    assert_eq!(
        frozen.status,
        200,
        "{}",
        String::from_utf8_lossy(&frozen.body)
    );
    let refused = hub
        .get("/v1/agents/me", &common::agent_headers(&agent))
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["error"]["code"], "INVALID_AGENT");
    hub.request(
        hyper::Method::PATCH,
        &path,
        &[("authorization", &bearer)],
        r#"{"frozen": false}"#,
    )
    .await;

    let tuned = hub
        .request(
            hyper::Method::PATCH,
            &path,
            &[("authorization", &bearer)],
            r#"{"tier_floor": "gold", "rate_limit_rpm": 1000}"#,
        )
        .await;
    assert_eq!(tuned.status, 200);
    let me = hub
        .get("/v1/agents/me", &common::agent_headers(&agent))
        .await
        .json();
    assert_eq!(me["tier"], "gold");
    assert_eq!(me["rate_limit_rpm"], 1000);
    let bad = hub
        .request(
            hyper::Method::PATCH,
            &path,
            &[("authorization", &bearer)],
            r#"{"tier_floor": "diamond"}"#,
        )
        .await;
    assert_eq!(bad.status, 400);

    let shown = hub.get(&path, &[("authorization", &bearer)]).await.json();
    assert_eq!(shown["tier_floor"], "gold");
    let list = hub
        .get("/v1/operator/agents?limit=1", &[("authorization", &bearer)])
        .await
        .json();
    assert_eq!(list["count"], 1);
    assert_eq!(list["total"], 1);

    // Stop the Hub, then verify the data directory with the CLI's library half.
    let credit = json!({"amount_usdc": "3", "reference": "final"}).to_string();
    let credit_path = format!("/v1/operator/agents/{}/credit", agent.0);
    assert_eq!(
        hub.post(&credit_path, &[("authorization", &bearer)], &credit)
            .await
            .status,
        201
    );
    let TestHub { running, dir, .. } = hub;
    running.stop().await.unwrap();
    let report = jecp_hub::store::admin::verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.balance_sum, 0);
    assert!(report.transfers >= 1);
}
