//! Wallet funding by card: `POST /api/agents/topup` opens a Stripe Checkout
//! Session; `POST /api/stripe/webhook` credits the wallet when Stripe says the
//! session was paid. Crediting is keyed on `stripe:<session id>`, so however
//! often (or concurrently) Stripe delivers the event, the wallet is credited
//! once: the ledger refuses a second credit with the same reference.

use serde::Deserialize;
use serde_json::{Value, json};

use super::agents::AgentHeaders;
use super::{Hub, Reply, now_s};
use crate::funding::{
    CheckoutRequest, DEFAULT_WEBHOOK_TOLERANCE_S, StripeClient, StripeConfig, WebhookError,
    WebhookEvent, parse_webhook_event, verify_webhook,
};
use crate::protocol::{ErrorCode, JecpError, NextAction};

/// Body of a top-up request (CLIENT-COMPAT A8: camelCase `returnTo`).
#[derive(Debug, Deserialize)]
struct TopupRequest {
    amount: Value,
    #[serde(rename = "returnTo")]
    return_to: Option<String>,
}

/// Builds the Stripe client when the configuration has Stripe settings.
pub(super) fn stripe_client(
    config: &crate::config::Config,
) -> Result<Option<StripeClient>, String> {
    let Some(settings) = &config.stripe else {
        return Ok(None);
    };
    let mut stripe = StripeConfig::new(
        settings.secret_key.clone(),
        settings.webhook_secret.clone(),
        settings.success_url.clone(),
        settings.cancel_url.clone(),
    );
    stripe.api_base = settings.api_base.clone();
    StripeClient::new(stripe).map(Some)
}

impl Hub {
    /// `POST /api/agents/topup` (and `/api/agent/topup`).
    pub async fn topup(&self, headers: AgentHeaders<'_>, body: &[u8]) -> Reply {
        let agent = match self.authenticate_headers(headers, now_s()) {
            Ok(agent) => agent,
            Err(error) => return Reply::error(&error, None, &self.links),
        };
        let allowed = &self.config.allowed_topup_usd;
        let request: TopupRequest = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(error) => {
                let error = JecpError::new(
                    ErrorCode::ValidationFailed,
                    format!("invalid top-up body: {error}"),
                )
                .detail("allowed_amounts_usd", json!(allowed))
                .without_next_action();
                return Reply::error(&error, None, &self.links);
            }
        };
        let amount_usd = match request.amount.as_u64() {
            Some(amount) if allowed.contains(&amount) => amount,
            _ => {
                let error = JecpError::new(
                    ErrorCode::ValidationFailed,
                    format!("amount must be one of {allowed:?} (whole USD)"),
                )
                .detail("allowed_amounts_usd", json!(allowed))
                .detail(
                    "errors",
                    json!([{"path": "/amount", "reason": "not an allowed top-up amount"}]),
                )
                .without_next_action();
                return Reply::error(&error, None, &self.links);
            }
        };
        let Some(stripe) = &self.stripe else {
            let error = JecpError::new(
                ErrorCode::TopupUnavailable,
                "card top-up is not configured on this Hub; the operator credits wallets directly",
            )
            .next_action(
                NextAction::new(
                    "contact_operator",
                    "Ask this Hub's operator to credit your wallet (jecp-hub agent credit).",
                )
                .with("contact", self.config.support_contact.clone())
                .with("agent_id", agent.agent_id.clone()),
            );
            return Reply::error(&error, None, &self.links);
        };
        let checkout = CheckoutRequest {
            agent_id: agent.agent_id.clone(),
            amount_usd,
            return_to: request.return_to,
            idempotency_key: uuid::Uuid::now_v7().to_string(),
        };
        match stripe.create_checkout_session(&checkout).await {
            Ok(session) => {
                tracing::info!(agent_id = %agent.agent_id, amount_usd, session = %session.id, "checkout session created");
                Reply::json(200, &session.to_json())
            }
            Err(error) => {
                tracing::warn!(%error, "checkout session failed");
                Reply::error(&error.to_jecp(), None, &self.links)
            }
        }
    }

    /// `POST /api/stripe/webhook`.
    pub async fn stripe_webhook(&self, signature: Option<&str>, body: &[u8]) -> Reply {
        let Some(stripe) = &self.stripe else {
            return Reply::json(
                404,
                &json!({"error": "Stripe is not configured on this Hub"}),
            );
        };
        let Some(signature) = signature else {
            return Reply::json(400, &json!({"error": "missing Stripe-Signature header"}));
        };
        if let Err(error) = verify_webhook(
            signature,
            body,
            &stripe.config().webhook_secret,
            now_s(),
            DEFAULT_WEBHOOK_TOLERANCE_S,
        ) {
            let reason = match error {
                WebhookError::Malformed => "malformed Stripe-Signature header",
                WebhookError::Stale { .. } => "Stripe-Signature timestamp outside the tolerance",
                WebhookError::Mismatch => "Stripe-Signature does not match",
            };
            tracing::warn!(reason, "rejected a webhook");
            return Reply::json(400, &json!({"error": reason}));
        }
        let event = match parse_webhook_event(body) {
            Ok(event) => event,
            Err(reason) => {
                tracing::warn!(%reason, "signed webhook with an unusable body");
                return Reply::json(400, &json!({"error": "unusable event body"}));
            }
        };
        let checkout = match event {
            WebhookEvent::Ignored { event_type } => {
                return Reply::json(200, &json!({"received": true, "ignored": event_type}));
            }
            WebhookEvent::CheckoutCompleted(checkout) => checkout,
        };
        if !checkout.paid {
            return Reply::json(
                200,
                &json!({"received": true, "credited": false, "reason": "not paid yet"}),
            );
        }
        match self
            .credit_wallet(
                &checkout.agent_id,
                checkout.amount_micros,
                &checkout.credit_reference(),
            )
            .await
        {
            Ok(credited) => Reply::json(200, &json!({"received": true, "credited": credited})),
            Err(error) if error.code == ErrorCode::AgentNotFound => {
                // Retrying cannot help; the money needs an operator's attention.
                tracing::error!(session = %checkout.session_id, agent_id = %checkout.agent_id,
                    amount = %checkout.amount_micros, "paid checkout names an unknown agent");
                Reply::json(
                    200,
                    &json!({"received": true, "credited": false, "reason": "unknown agent"}),
                )
            }
            Err(error) => {
                // A 5xx makes Stripe redeliver; the reference keeps that safe.
                tracing::warn!(code = error.code.as_str(), "webhook credit not committed");
                Reply::json(
                    503,
                    &json!({"error": "the Hub could not record the payment; retry"}),
                )
            }
        }
    }
}
