//! Webhook verification and event parsing, at the library level: Stripe's
//! signature scheme (signatures computed here, independently of the crate),
//! the events that move money, and the exactly-once property the ledger
//! relies on (every delivery naming one session yields one credit reference).
//! Also the Hub's outgoing JECP webhook signature against the shared vector.

use std::collections::HashMap;
use std::sync::{Arc, Barrier, Mutex};

use jecp_hub::funding::{
    CompletedCheckout, DEFAULT_WEBHOOK_TOLERANCE_S, WebhookError, WebhookEvent,
    parse_webhook_event, sign_jecp_webhook, verify_webhook,
};
use jecp_hub::money::Micros;
use ring::hmac;

const WEBHOOK_SECRET: &str = "whsec_test_5kq0a7b2c9d8e1f6";
const NOW_S: i64 = 1_764_072_000;

/// Stripe's scheme, written out here so the test does not trust the crate.
fn stripe_v1(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut payload = format!("{timestamp_s}.").into_bytes();
    payload.extend_from_slice(body);
    hex::encode(hmac::sign(&key, &payload).as_ref())
}

fn checkout_event(
    event_id: &str,
    event_type: &str,
    session_id: &str,
    payment_status: &str,
) -> String {
    format!(
        r#"{{"id":"{event_id}","object":"event","type":"{event_type}","data":{{"object":{{
            "id":"{session_id}","object":"checkout.session","amount_total":2000,"currency":"usd",
            "client_reference_id":"agent_7f3a","metadata":{{"agent_id":"agent_7f3a","amount_usd":"20"}},
            "payment_status":"{payment_status}","status":"complete"}}}}}}"#
    )
}

fn completed(body: &str) -> CompletedCheckout {
    match parse_webhook_event(body.as_bytes()) {
        Ok(WebhookEvent::CheckoutCompleted(checkout)) => checkout,
        other => panic!("expected a completed checkout, got {other:?}"),
    }
}

#[test]
fn a_valid_signature_verifies() {
    let body = checkout_event("evt_1", "checkout.session.completed", "cs_test_1", "paid");
    let header = format!(
        "t={NOW_S},v1={}",
        stripe_v1(WEBHOOK_SECRET, NOW_S, body.as_bytes())
    );
    assert_eq!(
        verify_webhook(
            &header,
            body.as_bytes(),
            WEBHOOK_SECRET,
            NOW_S,
            DEFAULT_WEBHOOK_TOLERANCE_S
        ),
        Ok(())
    );
}

#[test]
fn any_one_of_several_v1_signatures_may_match() {
    let body = b"{\"id\":\"evt_2\"}";
    let valid = stripe_v1(WEBHOOK_SECRET, NOW_S, body);
    let old_secret = stripe_v1("whsec_rolled_over", NOW_S, body);
    for header in [
        format!("t={NOW_S},v1={old_secret},v1={valid}"),
        format!("t={NOW_S},v1={valid},v1={old_secret}"),
        format!("t={NOW_S},v0={},v1={old_secret},v1={valid}", "0".repeat(64)),
        format!(" t={NOW_S} , v1=nothex , v1={valid} "),
    ] {
        assert_eq!(
            verify_webhook(&header, body, WEBHOOK_SECRET, NOW_S, 300),
            Ok(()),
            "{header}"
        );
    }
}

#[test]
fn a_wrong_secret_or_a_changed_body_is_a_mismatch() {
    let body = b"{\"id\":\"evt_3\",\"type\":\"checkout.session.completed\"}";
    let forged = format!("t={NOW_S},v1={}", stripe_v1("whsec_attacker", NOW_S, body));
    assert_eq!(
        verify_webhook(&forged, body, WEBHOOK_SECRET, NOW_S, 300),
        Err(WebhookError::Mismatch)
    );

    let genuine = format!("t={NOW_S},v1={}", stripe_v1(WEBHOOK_SECRET, NOW_S, body));
    let tampered = b"{\"id\":\"evt_3\",\"type\":\"checkout.session.completed\" }";
    assert_eq!(
        verify_webhook(&genuine, tampered, WEBHOOK_SECRET, NOW_S, 300),
        Err(WebhookError::Mismatch)
    );

    // Re-dating a genuine signature breaks it: the timestamp is signed.
    let redated = genuine.replace(&format!("t={NOW_S}"), &format!("t={}", NOW_S + 1));
    assert_eq!(
        verify_webhook(&redated, body, WEBHOOK_SECRET, NOW_S, 300),
        Err(WebhookError::Mismatch)
    );

    // A stale forgery is still reported as a forgery.
    let stale_forgery = format!(
        "t={},v1={}",
        NOW_S - 10_000,
        stripe_v1("whsec_attacker", NOW_S - 10_000, body)
    );
    assert_eq!(
        verify_webhook(&stale_forgery, body, WEBHOOK_SECRET, NOW_S, 300),
        Err(WebhookError::Mismatch)
    );
}

#[test]
fn timestamps_outside_the_tolerance_are_stale_in_both_directions() {
    let body = b"{}";
    let signed_at = |timestamp_s: i64| {
        format!(
            "t={timestamp_s},v1={}",
            stripe_v1(WEBHOOK_SECRET, timestamp_s, body)
        )
    };
    assert_eq!(
        verify_webhook(&signed_at(NOW_S - 300), body, WEBHOOK_SECRET, NOW_S, 300),
        Ok(())
    );
    assert_eq!(
        verify_webhook(&signed_at(NOW_S + 300), body, WEBHOOK_SECRET, NOW_S, 300),
        Ok(())
    );
    assert_eq!(
        verify_webhook(&signed_at(NOW_S - 301), body, WEBHOOK_SECRET, NOW_S, 300),
        Err(WebhookError::Stale { age_s: 301 })
    );
    assert_eq!(
        verify_webhook(&signed_at(NOW_S + 301), body, WEBHOOK_SECRET, NOW_S, 300),
        Err(WebhookError::Stale { age_s: -301 })
    );
    assert_eq!(
        verify_webhook(&signed_at(NOW_S - 86_400), body, WEBHOOK_SECRET, NOW_S, 300),
        Err(WebhookError::Stale { age_s: 86_400 })
    );
    // A configured window is honoured; a negative one means "exact second only".
    assert_eq!(
        verify_webhook(&signed_at(NOW_S - 500), body, WEBHOOK_SECRET, NOW_S, 600),
        Ok(())
    );
    assert_eq!(
        verify_webhook(&signed_at(NOW_S - 1), body, WEBHOOK_SECRET, NOW_S, -5),
        Err(WebhookError::Stale { age_s: 1 })
    );
}

#[test]
fn malformed_headers_are_refused() {
    let body = b"{}";
    let valid = stripe_v1(WEBHOOK_SECRET, NOW_S, body);
    for header in [
        String::new(),
        "garbage".to_owned(),
        format!("v1={valid}"),
        format!("t={NOW_S}"),
        format!("t={NOW_S},v0={valid}"),
        format!("t=abc,v1={valid}"),
        format!("t={NOW_S},t={NOW_S},v1={valid}"),
        format!("t={NOW_S} v1={valid}"),
        format!("t={NOW_S},v1={valid},{}", "x".repeat(5000)),
    ] {
        assert_eq!(
            verify_webhook(&header, body, WEBHOOK_SECRET, NOW_S, 300),
            Err(WebhookError::Malformed),
            "{header:?}"
        );
    }
}

#[test]
fn a_paid_completed_session_names_agent_amount_and_session() {
    let checkout = completed(&checkout_event(
        "evt_10",
        "checkout.session.completed",
        "cs_test_10",
        "paid",
    ));
    assert_eq!(
        checkout,
        CompletedCheckout {
            event_id: "evt_10".into(),
            session_id: "cs_test_10".into(),
            agent_id: "agent_7f3a".into(),
            amount_micros: Micros::from_usdc(20),
            paid: true,
        }
    );
    assert_eq!(checkout.credit_reference(), "stripe:cs_test_10");
}

#[test]
fn an_unpaid_completed_session_is_reported_as_not_paid() {
    let checkout = completed(&checkout_event(
        "evt_11",
        "checkout.session.completed",
        "cs_test_11",
        "unpaid",
    ));
    assert!(!checkout.paid);
    let async_success = completed(&checkout_event(
        "evt_12",
        "checkout.session.async_payment_succeeded",
        "cs_test_11",
        "paid",
    ));
    assert!(async_success.paid);
    assert_eq!(
        async_success.credit_reference(),
        checkout.credit_reference()
    );
}

#[test]
fn cents_convert_exactly_and_the_agent_falls_back_to_client_reference_id() {
    let body = r#"{"id":"evt_13","type":"checkout.session.completed","data":{"object":{
        "id":"cs_13","amount_total":1,"client_reference_id":"agent_x","payment_status":"paid"}}}"#;
    let checkout = completed(body);
    assert_eq!(checkout.agent_id, "agent_x");
    assert_eq!(checkout.amount_micros, Micros::new(10_000).unwrap());
}

#[test]
fn unknown_events_are_ignored() {
    for event_type in [
        "payment_intent.succeeded",
        "checkout.session.expired",
        "charge.refunded",
    ] {
        let body = format!(r#"{{"id":"evt_20","type":"{event_type}","data":{{"object":{{}}}}}}"#);
        assert_eq!(
            parse_webhook_event(body.as_bytes()),
            Ok(WebhookEvent::Ignored {
                event_type: event_type.to_owned()
            })
        );
    }
}

#[test]
fn unusable_checkout_events_are_errors_not_credits() {
    let cases = [
        ("not json", "not JSON"),
        (r#"{"type":"checkout.session.completed"}"#, "event id"),
        (
            r#"{"id":"evt_1","type":"checkout.session.completed"}"#,
            "data.object",
        ),
        (
            r#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"id":"cs_1","amount_total":500,"payment_status":"paid"}}}"#,
            "names no agent",
        ),
        (
            r#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"id":"cs_1","client_reference_id":"a","payment_status":"paid"}}}"#,
            "amount_total",
        ),
        (
            r#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"id":"cs_1","amount_total":-5,"client_reference_id":"a"}}}"#,
            "amount_total",
        ),
        (
            r#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"id":"cs_1","amount_total":500,"currency":"eur","client_reference_id":"a"}}}"#,
            "currency",
        ),
        (
            r#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"id":"cs_1","amount_total":500,"client_reference_id":"a","metadata":{"agent_id":"b"}}}}"#,
            "different agents",
        ),
        (
            r#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"id":"cs_1","amount_total":18446744073709551615,"client_reference_id":"a"}}}"#,
            "beyond",
        ),
        (
            r#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"object":"payment_intent","id":"pi_1"}}}"#,
            "not a checkout.session",
        ),
    ];
    for (body, expected) in cases {
        let error = parse_webhook_event(body.as_bytes()).expect_err(body);
        assert!(
            error.contains(expected),
            "{error:?} should mention {expected:?}"
        );
    }
}

/// Stands in for the ledger: a credit with a reference it has seen is a no-op.
#[derive(Default)]
struct CreditSink {
    credited: Mutex<HashMap<String, (String, Micros)>>,
}

impl CreditSink {
    fn credit(&self, reference: String, agent_id: String, amount: Micros) -> bool {
        let mut credited = self.credited.lock().unwrap();
        if credited.contains_key(&reference) {
            return false;
        }
        credited.insert(reference, (agent_id, amount));
        true
    }

    fn balance(&self, agent_id: &str) -> u64 {
        let credited = self.credited.lock().unwrap();
        credited
            .values()
            .filter(|(agent, _)| agent == agent_id)
            .map(|(_, amount)| amount.get())
            .sum()
    }
}

/// What the webhook route does with one delivery: verify, parse, credit if paid.
fn deliver(sink: &CreditSink, header: &str, body: &[u8]) -> Result<bool, String> {
    verify_webhook(
        header,
        body,
        WEBHOOK_SECRET,
        NOW_S,
        DEFAULT_WEBHOOK_TOLERANCE_S,
    )
    .map_err(|e| e.to_string())?;
    match parse_webhook_event(body)? {
        WebhookEvent::CheckoutCompleted(checkout) if checkout.paid => Ok(sink.credit(
            checkout.credit_reference(),
            checkout.agent_id,
            checkout.amount_micros,
        )),
        WebhookEvent::CheckoutCompleted(_) | WebhookEvent::Ignored { .. } => Ok(false),
    }
}

fn signed(body: &str, timestamp_s: i64) -> String {
    format!(
        "t={timestamp_s},v1={}",
        stripe_v1(WEBHOOK_SECRET, timestamp_s, body.as_bytes())
    )
}

#[test]
fn a_duplicate_delivery_credits_once() {
    let sink = CreditSink::default();
    let body = checkout_event("evt_30", "checkout.session.completed", "cs_test_30", "paid");
    // Stripe re-signs each retry with a fresh timestamp; the event id stays.
    assert_eq!(
        deliver(&sink, &signed(&body, NOW_S - 5), body.as_bytes()),
        Ok(true)
    );
    assert_eq!(
        deliver(&sink, &signed(&body, NOW_S), body.as_bytes()),
        Ok(false)
    );
    assert_eq!(sink.balance("agent_7f3a"), Micros::from_usdc(20).get());
}

#[test]
fn different_events_for_one_session_credit_once() {
    let sink = CreditSink::default();
    let completed_unpaid = checkout_event(
        "evt_40",
        "checkout.session.completed",
        "cs_test_40",
        "unpaid",
    );
    let settled = checkout_event(
        "evt_41",
        "checkout.session.async_payment_succeeded",
        "cs_test_40",
        "paid",
    );
    let completed_paid =
        checkout_event("evt_42", "checkout.session.completed", "cs_test_40", "paid");
    assert_eq!(
        deliver(
            &sink,
            &signed(&completed_unpaid, NOW_S),
            completed_unpaid.as_bytes()
        ),
        Ok(false)
    );
    assert_eq!(
        deliver(&sink, &signed(&settled, NOW_S), settled.as_bytes()),
        Ok(true)
    );
    assert_eq!(
        deliver(
            &sink,
            &signed(&completed_paid, NOW_S),
            completed_paid.as_bytes()
        ),
        Ok(false)
    );
    assert_eq!(sink.balance("agent_7f3a"), Micros::from_usdc(20).get());

    // A second, separate session for the same agent is a separate credit.
    let other = checkout_event("evt_43", "checkout.session.completed", "cs_test_41", "paid");
    assert_eq!(
        deliver(&sink, &signed(&other, NOW_S), other.as_bytes()),
        Ok(true)
    );
    assert_eq!(sink.balance("agent_7f3a"), Micros::from_usdc(40).get());
}

#[test]
fn concurrent_deliveries_of_one_event_credit_once() {
    const DELIVERIES: usize = 8;
    let sink = Arc::new(CreditSink::default());
    let body = Arc::new(checkout_event(
        "evt_50",
        "checkout.session.completed",
        "cs_test_50",
        "paid",
    ));
    let barrier = Arc::new(Barrier::new(DELIVERIES));
    let workers: Vec<_> = (0..DELIVERIES)
        .map(|index| {
            let (sink, body, barrier) =
                (Arc::clone(&sink), Arc::clone(&body), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let header = signed(&body, NOW_S - index as i64);
                barrier.wait();
                deliver(&sink, &header, body.as_bytes())
            })
        })
        .collect();
    let outcomes: Vec<Result<bool, String>> = workers
        .into_iter()
        .map(|worker| worker.join().unwrap())
        .collect();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(
        outcomes
            .iter()
            .filter(|outcome| **outcome == Ok(true))
            .count(),
        1
    );
    assert_eq!(sink.balance("agent_7f3a"), Micros::from_usdc(20).get());
}

#[test]
fn a_forged_or_stale_delivery_credits_nothing() {
    let sink = CreditSink::default();
    let body = checkout_event("evt_60", "checkout.session.completed", "cs_test_60", "paid");
    let forged = format!(
        "t={NOW_S},v1={}",
        stripe_v1("whsec_attacker", NOW_S, body.as_bytes())
    );
    assert!(deliver(&sink, &forged, body.as_bytes()).is_err());
    assert!(deliver(&sink, &signed(&body, NOW_S - 301), body.as_bytes()).is_err());
    assert_eq!(sink.balance("agent_7f3a"), 0);
}

/// CLIENT-COMPAT §7 vector (copied from shared/fixtures/webhook-vector.txt).
#[test]
fn jecp_webhook_signature_matches_the_shared_vector() {
    let secret_b64 = "amVjcC13ZWJob29rLXRlc3Qtc2VjcmV0LTMyYnl0ZXMh";
    let body = br#"{"type":"invocation.completed","id":"evt_1","created_at":"2025-11-09T12:00:00Z","data":{"transaction_id":"tx-1"}}"#;
    assert_eq!(
        sign_jecp_webhook(secret_b64, 1_762_689_600, body),
        "v1=k7qhfwqchfeU2cpshgwl7pCXvDEmZnDfv2DxT0SEGoA="
    );
    // Any change to the timestamp, body or secret changes the signature.
    assert_ne!(
        sign_jecp_webhook(secret_b64, 1_762_689_601, body),
        "v1=k7qhfwqchfeU2cpshgwl7pCXvDEmZnDfv2DxT0SEGoA="
    );
    assert_ne!(
        sign_jecp_webhook("b3RoZXItc2VjcmV0", 1_762_689_600, body),
        "v1=k7qhfwqchfeU2cpshgwl7pCXvDEmZnDfv2DxT0SEGoA="
    );
}
