//! Wallet funding through Stripe: the library side of issue 7.
//!
//! This module owns everything that talks Stripe, and nothing else: the
//! Hub's HTTP routes and the ledger credit live elsewhere and call in here.
//!
//! - [`stripe`]: [`StripeConfig`], the pooled [`StripeClient`] that creates
//!   Checkout Sessions over Stripe's form-encoded REST API, and
//!   [`StripeError`] with its mapping onto the JECP error catalog.
//! - [`webhook`]: `Stripe-Signature` verification ([`verify_webhook`]),
//!   parsing of the one event that moves money ([`parse_webhook_event`]),
//!   and [`sign_jecp_webhook`] for the Hub's own outgoing webhooks
//!   (CLIENT-COMPAT §7, a different scheme that shares the HMAC idea).
//! - [`https`]: the one hyper-util connection pool over rustls (ring
//!   provider, bundled Mozilla roots) so the binary has a single HTTP stack.
//! - `form`: the tiny `application/x-www-form-urlencoded` encoder.
//!
//! Exactly-once crediting is not enforced here: the ledger refuses a second
//! credit with the same reference, and [`CompletedCheckout::credit_reference`]
//! gives every delivery that names one Checkout Session the same reference.
//!
//! # Wiring (for the HTTP routes)
//!
//! - Top-up: check `amount` against the configured set (400 with
//!   `allowed_amounts_usd` otherwise) and `returnTo` with
//!   [`validate_return_to`]; without a [`StripeClient`] answer 503
//!   `TOPUP_UNAVAILABLE`. Call [`StripeClient::create_checkout_session`]
//!   and answer [`CheckoutSession::to_json`]; on error log the error's
//!   `Display` (safe) and answer [`StripeError::to_jecp`].
//! - Webhook: read the raw body (bounded), call [`verify_webhook`] with the
//!   `Stripe-Signature` header, `client.config().webhook_secret`, the current
//!   Unix time and [`DEFAULT_WEBHOOK_TOLERANCE_S`] (400 on error), then
//!   [`parse_webhook_event`]: `Ignored` → 200; `CheckoutCompleted` with
//!   `paid` → credit `amount_micros` to `agent_id` under `credit_reference()`,
//!   then 200 (also when the ledger says the reference was already credited).

mod form;
pub mod https;
pub mod stripe;
pub mod webhook;

pub use stripe::{
    CheckoutRequest, CheckoutSession, DEFAULT_STRIPE_API_BASE, StripeClient, StripeConfig,
    StripeError, validate_return_to,
};
pub use webhook::{
    CompletedCheckout, DEFAULT_WEBHOOK_TOLERANCE_S, WebhookError, WebhookEvent,
    parse_webhook_event, sign_jecp_webhook, verify_webhook,
};
