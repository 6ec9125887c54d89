//! The invoke pipeline: `Hub::invoke`, shared by `/v1/invoke` and the legacy
//! `/v1/jecp` alias. Transport-agnostic: it takes the request's bytes and the
//! few headers that matter and returns a [`Reply`].
//!
//! # Order of checks
//!
//! Each step runs only when every earlier one passed, and nothing that costs
//! money or runs a handler happens before funds are reserved.
//!
//! 1. **Media type**: `application/json` (parameters allowed, missing tolerated), else 415.
//! 2. **Envelope**: JSON parse (400 `INVALID_REQUEST`), version (400
//!    `UNSUPPORTED_VERSION`), shape (400 `VALIDATION_FAILED` with
//!    `details.errors`), `metadata` > 4 KB or `input` > 5 MB (413).
//! 3. **Authentication and mandate**: credentials (mandate fields win over
//!    headers), key check, `expires_at`, then provenance v2 (HMAC, skew,
//!    nonce replay) — subcauses only after the key verified.
//! 4. **Idempotency**: fingerprint over capability, action, canonical input,
//!    provenance and payment; a stored answer is replayed, a different
//!    fingerprint is 409, an in-flight twin is waited for.
//! 5. **Capability resolution**: plain or `<hub-namespace>/<name>` → built-in;
//!    another namespace → 404 `PROVIDER_NOT_FOUND`; unknown → 404; unknown action → 404.
//!    A caller that accepts only `text/event-stream` gets 406 `NOT_STREAMABLE`
//!    (no built-in action streams).
//! 6. **Deprecation**: past sunset → 410 with `Sunset`/`Deprecation`/`Link`.
//! 7. **Trust gate**: tier from `total_calls` (or the operator's floor) → 403.
//! 8. **Rate limit**: per agent at the tier's (or operator's) RPM, and per
//!    action when it declares `rate_limit_rpm` → 429 with `Retry-After`.
//! 9. **Input schema** → 400 `INPUT_SCHEMA_VIOLATION`.
//! 10. **Funds**: a free call when the agent has any left (reserved so
//!     concurrent calls cannot overspend the allowance), otherwise the
//!     mandate budget check and a **hold** on the wallet → 402 when short.
//! 11. **Handler**, then its output against the output schema (502 when
//!     invalid); any failure voids the hold: failed calls cost nothing.
//! 12. **Post**: charge, 85/10/5 split, `total_calls`+1 and the idempotency
//!     record in one commit; the reply is sent after that commit per the
//!     durability mode.

use std::io::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};

use super::envelope::{self, is_valid_request_id};
use super::idempotency::{Claim, StoredResponse, duplicate_error};
use super::{Hub, Reply, now_s};
use crate::auth::{self, Mandate, provenance};
use crate::catalog::{Action, Capability, HandlerError, Resolution};
use crate::gate::{self, Tier};
use crate::ledger::{AccountId, ChargeMemo, ChargeMethod, LedgerError, Posted};
use crate::money::Micros;
use crate::protocol::canonical::{FingerprintParts, fingerprint};
use crate::protocol::{ErrorCode, JecpError};
use crate::records::{AgentRecord, IdempotencyRecord};
use crate::store::{Command, Reply as StoreReply, StoreError};

/// How long a request waits for an in-flight twin with the same id.
const IDEMPOTENT_WAIT_MAX: Duration = Duration::from_secs(30);
/// Successful responses within this many days of a sunset carry the
/// deprecation headers (spec 01 §4.6).
const SUNSET_NOTICE_DAYS: i64 = 30;
/// Engine label in `execution.engine`.
pub const ENGINE: &str = concat!("jecp-hub/", env!("CARGO_PKG_VERSION"));
/// The legacy alias's sunset (spec 01 §2.1).
pub const LEGACY_SUNSET: &str = "Sat, 01 Jan 2028 00:00:00 GMT";
const LEGACY_LINK: &str =
    "<https://jecp.dev/spec/v1.0/01-protocol.md#21-legacy-alias>; rel=\"deprecation\"";
const DEPRECATED_LINK: &str =
    "<https://jecp.dev/spec/v1.0/03-errors.md#capability-deprecated>; rel=\"deprecation\"";
/// The largest `X-Payment` header the SDK sends (CLIENT-COMPAT §9).
const X_PAYMENT_BYTES_MAX: usize = 8 * 1024;

/// Which path the request came in on; decides the success body's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/invoke`: the SDK's fields with the spec's beside them.
    Invoke,
    /// `/v1/jecp`: spec v1.0 shape plus RFC 8594 deprecation headers.
    Legacy,
}

/// The parts of an HTTP request the pipeline reads.
#[derive(Clone, Copy, Debug)]
pub struct InvokeCall<'a> {
    pub endpoint: Endpoint,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    pub agent_id_header: Option<&'a str>,
    pub api_key_header: Option<&'a str>,
    pub idempotency_key_header: Option<&'a str>,
    pub x_payment_header: Option<&'a str>,
    /// `Accept`: a caller that accepts only `text/event-stream` asks for SSE.
    pub accept_header: Option<&'a str>,
}

/// A failure on the way, with the request id to echo when known.
struct Failure {
    error: JecpError,
    request_id: Option<String>,
}

impl Failure {
    fn new(error: JecpError, request_id: Option<&str>) -> Failure {
        Failure {
            error,
            request_id: request_id.map(str::to_owned),
        }
    }
}

/// How the call is paid for.
enum Funding<'a> {
    /// A free-tier call; the reservation is released when dropped.
    Free(super::FreeCallReservation<'a>),
    /// A hold on the wallet.
    Held {
        hold: crate::ledger::HoldId,
        method: ChargeMethod,
    },
    /// The action is free of charge.
    Nothing,
}

impl Hub {
    /// Runs one invoke request through the pipeline described in the module doc.
    pub async fn invoke(&self, call: InvokeCall<'_>) -> Reply {
        let started = Instant::now();
        let mut reply = match self.invoke_steps(&call, started).await {
            Ok(reply) => reply,
            Err(failure) => {
                let mut error = failure.error;
                if call.endpoint == Endpoint::Legacy {
                    error = error.detail("endpoint_alias", "/v1/jecp (legacy; use /v1/invoke)");
                }
                Reply::error(&error, failure.request_id.as_deref(), &self.links)
            }
        };
        if call.endpoint == Endpoint::Legacy {
            reply.headers.push(("Deprecation".into(), "true".into()));
            reply.headers.push(("Sunset".into(), LEGACY_SUNSET.into()));
            reply.headers.push(("Link".into(), LEGACY_LINK.into()));
        }
        reply
    }

    async fn invoke_steps(
        &self,
        call: &InvokeCall<'_>,
        started: Instant,
    ) -> Result<Reply, Failure> {
        // 1–2. Media type and envelope.
        envelope::check_content_type(call.content_type)
            .map_err(|error| Failure::new(error, None))?;
        let mut request = envelope::parse(call.body).map_err(|(error, id)| Failure {
            error,
            request_id: id,
        })?;
        let id = request.id.as_str();
        let fail = |error: JecpError| Failure::new(error, Some(id));

        // 3. Authentication, mandate expiry, provenance.
        let now = now_s();
        let mandate = match &request.mandate {
            Some(value) => Some(Mandate::from_json(value).map_err(fail)?),
            None => None,
        };
        let credentials =
            auth::resolve_credentials(call.agent_id_header, call.api_key_header, mandate.as_ref())
                .map_err(fail)?;
        let agent = self
            .directory
            .authenticate(credentials.agent_id, credentials.api_key, now)
            .map_err(fail)?;
        let agent: &AgentRecord = &agent;
        if let Some(mandate) = &mandate {
            auth::check_expiry(mandate, now).map_err(fail)?;
        }
        let provenance_hash = mandate
            .as_ref()
            .and_then(|mandate| mandate.provenance_hash.as_deref());
        if let Some(wire) = provenance_hash {
            let verified = provenance::verify_v2(wire, &agent.agent_id, credentials.api_key, now)
                .map_err(|subcause| fail(provenance::mismatch_error(&subcause)))?;
            let nonce = self
                .replay
                .check_and_insert(&agent.agent_id, &verified.nonce_lower, now)
                .map_err(|subcause| fail(provenance::mismatch_error(&subcause)))?;
            // FIFO through the writer: any later acknowledged commit implies
            // this nonce is on disk too.
            self.store
                .enqueue(Command::PutNonce(nonce))
                .map_err(|error| fail(error.to_jecp()))?;
        }

        // 4. Idempotency.
        let x_payment = decode_x_payment(call.x_payment_header).map_err(fail)?;
        let request_key = match call.idempotency_key_header {
            Some(key) if is_valid_request_id(key) => key,
            Some(_) => {
                return Err(fail(
                    JecpError::new(ErrorCode::ValidationFailed, "X-Idempotency-Key must be 4-64 characters from [A-Za-z0-9_-]")
                        .detail("errors", json!([{"path": "header:X-Idempotency-Key", "reason": "must match ^[A-Za-z0-9_-]{4,64}$"}])),
                ));
            }
            None => id,
        };
        let request_fingerprint = fingerprint(FingerprintParts {
            capability: &request.capability,
            action: &request.action,
            input: &request.input,
            provenance_hash,
            x_payment: x_payment.as_deref(),
        });
        let mut consult_store = true;
        let leader = loop {
            let claim = self
                .idempotency
                .claim(
                    &agent.agent_id,
                    request_key,
                    request_fingerprint,
                    now,
                    IDEMPOTENT_WAIT_MAX,
                    consult_store,
                )
                .await
                .map_err(fail)?;
            match claim {
                Claim::Replay(stored) => return Ok(replay(stored)),
                Claim::Leader(guard) => break guard,
                Claim::Stored => {
                    if let Some(stored) = self
                        .read_stored_answer(&agent.agent_id, request_key, request_fingerprint)
                        .await
                        .map_err(fail)?
                    {
                        return Ok(replay(stored));
                    }
                    // Expired in the store meanwhile: the id is free again.
                    consult_store = false;
                }
            }
        };

        // 5. Capability and action.
        let capability = match self.catalog.resolve(&request.capability) {
            Resolution::Found(capability) => capability,
            Resolution::OtherNamespace(namespace) => {
                return Err(fail(
                    JecpError::new(
                        ErrorCode::ProviderNotFound,
                        format!(
                            "no Provider is registered under namespace {namespace:?} on this Hub"
                        ),
                    )
                    .detail("namespace", namespace),
                ));
            }
            Resolution::NotFound => {
                return Err(fail(
                    JecpError::new(
                        ErrorCode::CapabilityNotFound,
                        format!(
                            "capability {:?} does not exist on this Hub",
                            request.capability
                        ),
                    )
                    .detail("capability", request.capability.clone()),
                ));
            }
        };
        // Only error answers carry it: not built for the calls that succeed.
        let schema_url = || {
            self.links
                .url(&format!("/v1/capabilities/{}", capability.id))
        };
        let Some(action) = capability.action(&request.action) else {
            let actions: Vec<&str> = capability
                .actions
                .iter()
                .map(|action| action.name.as_str())
                .collect();
            return Err(fail(
                JecpError::new(
                    ErrorCode::ActionNotFound,
                    format!(
                        "capability {} has no action {:?}",
                        capability.id, request.action
                    ),
                )
                .detail("available_actions", json!(actions))
                .detail("schema_url", schema_url()),
            ));
        };

        // A stream was asked for; no built-in action streams (spec 01 §4.3).
        if wants_only_event_stream(call.accept_header) {
            return Err(fail(
                JecpError::new(
                    ErrorCode::NotStreamable,
                    format!(
                        "{}/{} does not stream; resend without Accept: text/event-stream",
                        capability.id, action.name
                    ),
                )
                .detail("capability", capability.id.clone())
                .detail("action", action.name.clone()),
            ));
        }

        // 6. Deprecation.
        let deprecation_headers = self.deprecation_headers(capability, now);
        if let Some(deprecation) = &capability.deprecation
            && deprecation.sunset_at.unix_timestamp() <= now
        {
            let mut error = JecpError::new(
                ErrorCode::CapabilityDeprecated,
                format!(
                    "capability {} was sunset and no longer accepts calls",
                    capability.id
                ),
            )
            .detail("sunset_at", rfc3339(deprecation.sunset_at.unix_timestamp()));
            if let Some(successor) = &deprecation.successor_version {
                error = error
                    .detail("successor_version", successor.clone())
                    .detail("successor", successor.clone());
            }
            for (name, value) in deprecation_headers.unwrap_or_default() {
                error = error.header(name, value);
            }
            tracing::info!(capability = %capability.id, "rejected a call to a sunset capability");
            return Err(fail(error));
        }

        // 7. Trust gate.
        let total_calls = self.total_calls(agent);
        let tier = effective_tier(agent, total_calls);
        if tier < action.trust_tier_required {
            let alternatives: Vec<String> = self
                .catalog
                .capabilities()
                .iter()
                .filter(|candidate| candidate.min_tier() <= tier)
                .map(|candidate| candidate.id.clone())
                .collect();
            return Err(fail(gate::trust_error(
                action.trust_tier_required,
                tier,
                alternatives,
            )));
        }

        // 8. Rate limits.
        let now_ms = now_ms();
        let agent_rpm = agent.rate_limit_rpm.unwrap_or_else(|| self.tier_rpm(tier));
        let decision = self.limiter.check(&agent.agent_id, agent_rpm, now_ms);
        if !decision.allowed {
            return Err(fail(gate::rate_limited_error(
                &decision,
                tier.as_str(),
                now,
            )));
        }
        if let Some(action_rpm) = action.rate_limit_rpm {
            let key = format!("{}\u{0}{}/{}", agent.agent_id, capability.id, action.name);
            let decision = self.limiter.check(&key, action_rpm, now_ms);
            if !decision.allowed {
                return Err(fail(gate::rate_limited_error(
                    &decision,
                    tier.as_str(),
                    now,
                )));
            }
        }

        // 9. Input schema.
        if let Err(violations) = action.validate_input(&request.input) {
            return Err(fail(schema_violation(
                violations,
                &format!("{}#input_schema", schema_url()),
            )));
        }

        // 10. Funds: reserved before the handler runs.
        if x_payment.is_some() && !action.payment_methods.iter().any(|method| method == "x402") {
            return Err(fail(
                JecpError::new(
                    ErrorCode::X402NotAccepted,
                    "this action does not accept x402 payments; drop X-Payment and use the wallet",
                )
                .detail("accepted", json!(action.payment_methods))
                .detail("received", "x402")
                .detail("subcause", "capability_wallet_only")
                .next_action(crate::protocol::NextAction::new(
                    "switch_to_wallet",
                    "Retry without X-Payment; the wallet pays.",
                )),
            ));
        }
        let wallet = AccountId(agent.wallet_account);
        let funding = match self.reserve_funds(agent, wallet, action) {
            Some(free) => free,
            None => {
                if let Some(mandate) = &mandate {
                    auth::check_budget(mandate, action.price).map_err(fail)?;
                }
                let method = if mandate
                    .as_ref()
                    .is_some_and(|mandate| mandate.budget_usdc.is_some())
                {
                    ChargeMethod::Mandate
                } else {
                    ChargeMethod::Wallet
                };
                match self.store.hold(wallet, action.price) {
                    Ok(hold) => Funding::Held { hold, method },
                    Err(StoreError::Ledger(LedgerError::InsufficientFunds {
                        required,
                        available,
                    })) => {
                        return Err(fail(insufficient_balance(required, available, &self.links)));
                    }
                    Err(error) => return Err(fail(error.to_jecp())),
                }
            }
        };

        // 11. Handler and output check; any failure releases the funds.
        let output = match self
            .run_handler(capability, action, std::mem::take(&mut request.input))
            .await
        {
            Ok(output) => output,
            Err(error) => {
                self.release(funding).await;
                return Err(fail(error));
            }
        };
        if let Err(violations) = action.validate_output(&output) {
            tracing::error!(capability = %capability.id, action = %action.name, ?violations, "handler output broke its schema");
            self.release(funding).await;
            return Err(fail(
                JecpError::new(ErrorCode::OutputInvalid, "the capability returned output that does not match its output_schema; you were not charged")
                    .detail("errors", violations_json(&violations)),
            ));
        }

        // 12. Post (or book the free call) with the stored response in the same commit.
        let deprecation_headers = deprecation_headers.unwrap_or_default();
        let success = SuccessContext::new(SuccessParts {
            endpoint: call.endpoint,
            request_id: id,
            request_key,
            agent_id: &agent.agent_id,
            fingerprint: request_fingerprint,
            capability,
            action: &action.name,
            output: &output,
            metadata: request.metadata.as_ref(),
            tier,
            started,
            headers: deprecation_headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect(),
            created_at_s: now,
            expires_at_s: now + self.config.idempotency_ttl_s as i64,
        });
        let reply_headers = success.headers.clone();
        let expires_at_s = success.expires_at_s;
        let body_slot: Arc<OnceLock<Bytes>> = Arc::new(OnceLock::new());
        let memo = ChargeMemo {
            agent_id: agent.agent_id.clone(),
            capability: capability.id.clone(),
            action: action.name.clone(),
            request_id: id.to_owned(),
            method: ChargeMethod::Wallet,
        };
        let (command, free_reservation) = match funding {
            Funding::Held { hold, method } => {
                let record = success.recorder(method, body_slot.clone());
                (
                    Command::Post {
                        hold,
                        provider: AccountId::HUB_PROVIDER,
                        memo: ChargeMemo { method, ..memo },
                        idempotency: Some(record),
                    },
                    None,
                )
            }
            Funding::Free(reservation) => {
                let record = success.recorder(ChargeMethod::FreeCall, body_slot.clone());
                (
                    Command::ChargeFree {
                        wallet,
                        cost: action.price,
                        provider: AccountId::HUB_PROVIDER,
                        free_allowance: self.config.free_calls_per_agent,
                        memo: ChargeMemo {
                            method: ChargeMethod::FreeCall,
                            ..memo
                        },
                        idempotency: Some(record),
                    },
                    Some(reservation),
                )
            }
            Funding::Nothing => {
                // A zero-price action moves no money; still count the call
                // and keep the answer for replays, in one commit.
                let record = success.recorder(ChargeMethod::FreeCall, body_slot.clone());
                (
                    Command::ChargeFree {
                        wallet,
                        cost: Micros::ZERO,
                        provider: AccountId::HUB_PROVIDER,
                        free_allowance: u64::MAX,
                        memo: ChargeMemo {
                            method: ChargeMethod::FreeCall,
                            ..memo
                        },
                        idempotency: Some(record),
                    },
                    None,
                )
            }
        };
        let outcome = self.store.execute(command).await;
        drop(free_reservation);
        match outcome {
            Ok(StoreReply::Posted(_)) => {}
            Ok(StoreReply::Replayed(record)) => {
                // An earlier attempt's charge reached the store after all (its
                // caller saw a 503): answer with it; nothing was charged now.
                if record.fingerprint != request_fingerprint {
                    return Err(fail(duplicate_error(request_key)));
                }
                let stored = StoredResponse::from_record(record);
                leader.finish(&stored);
                return Ok(replay(stored));
            }
            Ok(other) => {
                tracing::error!(?other, "writer answered a charge with an unexpected reply");
                return Err(fail(JecpError::internal()));
            }
            Err(StoreError::Ledger(LedgerError::FreeCallsExhausted)) => {
                return Err(fail(
                    JecpError::new(
                        ErrorCode::ServiceDegraded,
                        "the free-call allowance changed under this call; retry with the same id",
                    )
                    .retry_after(1),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "charge was not committed; the call is not charged");
                return Err(fail(error.to_jecp()));
            }
        }
        // The writer's recorder (which held the other handle) is gone once
        // the charge is committed, so the body is moved out, not shared.
        let body = Arc::try_unwrap(body_slot)
            .map_or_else(|slot| slot.get().cloned(), OnceLock::into_inner);
        let Some(body) = body else {
            tracing::error!("charge committed without a stored response body");
            return Err(fail(JecpError::internal()));
        };
        let stored = StoredResponse {
            fingerprint: request_fingerprint,
            http_status: 200,
            body,
            headers: reply_headers,
            expires_at_s,
        };
        leader.finish(&stored);
        Ok(reply_of(stored))
    }

    /// A stored answer whose body the idempotency table let go of, read back
    /// from the store and kept in memory again for the retries after it.
    async fn read_stored_answer(
        &self,
        agent_id: &str,
        request_key: &str,
        fingerprint: [u8; 32],
    ) -> Result<Option<StoredResponse>, JecpError> {
        let command = Command::ReadIdempotency {
            agent_id: agent_id.to_owned(),
            request_key: request_key.to_owned(),
        };
        let record = match self.store.execute(command).await {
            Ok(StoreReply::Stored(record)) => record,
            Ok(other) => {
                tracing::error!(
                    ?other,
                    "writer answered an idempotency read with an unexpected reply"
                );
                return Err(JecpError::internal());
            }
            Err(error) => return Err(error.to_jecp()),
        };
        let Some(record) = record else {
            return Ok(None);
        };
        if record.fingerprint != fingerprint {
            // The table compared fingerprints already; the store is the authority.
            return Err(duplicate_error(request_key));
        }
        let stored = StoredResponse::from_record(record);
        self.idempotency.rewarm(agent_id, request_key, &stored);
        Ok(Some(stored))
    }

    /// Trust tier inputs: completed calls from the ledger.
    pub(super) fn total_calls(&self, agent: &AgentRecord) -> u64 {
        self.store
            .read_ledger(|ledger| {
                ledger
                    .account(AccountId(agent.wallet_account))
                    .map(|account| account.charges_posted)
            })
            .unwrap_or(0)
    }

    /// Step 10's first half: a free call when any remain. `Ok(None)` means
    /// "pay from the wallet".
    fn reserve_funds(
        &self,
        agent: &AgentRecord,
        wallet: AccountId,
        action: &Action,
    ) -> Option<Funding<'_>> {
        if action.price.is_zero() {
            return Some(Funding::Nothing);
        }
        let used = self
            .store
            .read_ledger(|ledger| {
                ledger
                    .account(wallet)
                    .map(|account| account.free_calls_used)
            })
            .unwrap_or(u64::MAX);
        self.free_calls
            .try_reserve(&agent.agent_id, used, self.config.free_calls_per_agent)
            .map(Funding::Free)
    }

    async fn release(&self, funding: Funding<'_>) {
        if let Funding::Held { hold, .. } = funding
            && let Err(error) = self.store.void(hold)
        {
            // A hold lost to a failed batch is already gone; anything else
            // leaves a pending hold that the next restart clears.
            tracing::warn!(%error, "could not void a hold after a failed call");
        }
    }

    async fn run_handler(
        &self,
        capability: &Capability,
        action: &Action,
        input: Value,
    ) -> Result<Value, JecpError> {
        let result = if action.is_heavy() {
            let catalog = self.catalog.clone();
            let capability_id = capability.id.clone();
            let action_name = action.name.clone();
            tokio::task::spawn_blocking(move || {
                let Resolution::Found(capability) = catalog.resolve(&capability_id) else {
                    return Err(HandlerError::Failed("capability vanished".into()));
                };
                match capability.action(&action_name) {
                    Some(action) => action.run(&input),
                    None => Err(HandlerError::Failed("action vanished".into())),
                }
            })
            .await
            .unwrap_or_else(|join_error| {
                tracing::error!(%join_error, "handler task panicked");
                Err(HandlerError::Failed("the handler crashed".into()))
            })
        } else {
            action.run(&input)
        };
        result.map_err(|error| match error {
            HandlerError::InvalidInput(reason) => schema_violation(
                vec![crate::catalog::SchemaViolation { instance_path: String::new(), schema_path: String::new(), reason }],
                &self.links.url(&format!("/v1/capabilities/{}#input_schema", capability.id)),
            ),
            HandlerError::Failed(message) => {
                tracing::warn!(capability = %capability.id, action = %action.name, %message, "handler failed");
                JecpError::new(ErrorCode::ExecutionFailed, format!("the capability failed: {message}; you were not charged"))
            }
        })
    }

    /// `Sunset`, `Deprecation`, `Link` headers when the capability is within
    /// the notice window or past its sunset.
    fn deprecation_headers(
        &self,
        capability: &Capability,
        now: i64,
    ) -> Option<Vec<(&'static str, String)>> {
        let deprecation = capability.deprecation.as_ref()?;
        let sunset = deprecation.sunset_at.unix_timestamp();
        if sunset - now > SUNSET_NOTICE_DAYS * 86_400 {
            return None;
        }
        let sunset_time = std::time::UNIX_EPOCH + Duration::from_secs(sunset.max(0) as u64);
        let mut headers = vec![
            ("Sunset", httpdate::fmt_http_date(sunset_time)),
            ("Deprecation", "true".to_owned()),
            ("Link", DEPRECATED_LINK.to_owned()),
        ];
        if deprecation.successor_version.is_some() {
            // The successor is a later version of the same capability; its
            // catalog entry is where an agent reads what changed.
            let url = self
                .links
                .url(&format!("/v1/capabilities/{}", capability.id));
            headers.push(("Link", format!("<{url}>; rel=\"successor-version\"")));
        }
        Some(headers)
    }
}

/// The agent's tier: earned from calls, never below the operator's floor.
pub(super) fn effective_tier(agent: &AgentRecord, total_calls: u64) -> Tier {
    let earned = Tier::from_total_calls(total_calls);
    match agent.tier_floor.and_then(Tier::from_u8) {
        Some(floor) if floor > earned => floor,
        _ => earned,
    }
}

/// True when `Accept` lists `text/event-stream` and nothing that a JSON
/// answer would satisfy (the SDK's streaming call sends exactly that).
fn wants_only_event_stream(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let media_types: Vec<&str> = accept
        .split(',')
        .map(|part| part.split(';').next().unwrap_or("").trim())
        .collect();
    media_types
        .iter()
        .any(|media| media.eq_ignore_ascii_case("text/event-stream"))
        && !media_types.iter().any(|media| {
            media.eq_ignore_ascii_case("application/json")
                || *media == "*/*"
                || media.eq_ignore_ascii_case("application/*")
        })
}

fn decode_x_payment(header: Option<&str>) -> Result<Option<Vec<u8>>, JecpError> {
    let Some(header) = header else {
        return Ok(None);
    };
    let invalid = |subcause: &str, message: &str| {
        JecpError::new(ErrorCode::X402PaymentInvalid, message.to_owned())
            .detail("subcause", subcause.to_owned())
    };
    if header.len() > X_PAYMENT_BYTES_MAX {
        return Err(invalid("header_too_large", "X-Payment is larger than 8 KB"));
    }
    base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .map(Some)
        .map_err(|_| invalid("payload_decode_error", "X-Payment is not valid base64"))
}

fn insufficient_balance(
    required: Micros,
    available: Micros,
    links: &crate::protocol::HubLinks,
) -> JecpError {
    JecpError::new(
        ErrorCode::InsufficientBalance,
        format!("the wallet holds {available} USDC available; this call costs {required} USDC"),
    )
    .detail("required_usdc", required.to_json())
    .detail("remaining_usdc", available.to_json())
    .next_action(crate::protocol::error::topup_action(links))
}

fn violations_json(violations: &[crate::catalog::SchemaViolation]) -> Value {
    Value::Array(
        violations
            .iter()
            .map(|violation| {
                json!({
                    "instance_path": violation.instance_path,
                    "schema_path": violation.schema_path,
                    "reason": violation.reason,
                })
            })
            .collect(),
    )
}

fn schema_violation(
    violations: Vec<crate::catalog::SchemaViolation>,
    schema_url: &str,
) -> JecpError {
    let count = violations.len();
    JecpError::new(
        ErrorCode::InputSchemaViolation,
        format!("input does not match the action's input_schema ({count} problem(s)); see details.errors"),
    )
    .detail("errors", violations_json(&violations))
    .detail("schema_url", schema_url.to_owned())
}

fn replay(stored: StoredResponse) -> Reply {
    reply_of(stored).with_header("X-Idempotent-Replay", "true")
}

fn reply_of(stored: StoredResponse) -> Reply {
    Reply {
        status: stored.http_status,
        content_type: "application/json",
        headers: stored.headers,
        body: stored.body,
    }
}

pub(super) fn rfc3339(unix_s: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_s)
        .ok()
        .and_then(|moment| {
            moment
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// Everything the success body and its idempotency record need except what
/// the commit decides (transaction id, balance after, duration).
///
/// The parts known before the commit — the output, the provider, the echoed
/// metadata — are rendered to JSON on the request's own task, so the store
/// writer, which every charge passes through one at a time, only formats the
/// billing block and joins three byte strings.
struct SuccessContext {
    endpoint: Endpoint,
    request_key: String,
    agent_id: String,
    fingerprint: [u8; 32],
    capability_namespace: String,
    /// `{"jecp":"1.0","id":…,"status":"completed","result":…` (and
    /// `,"provider":{…}` on `/v1/invoke`).
    body_head: Vec<u8>,
    /// `,"metadata":…` on `/v1/invoke` when the request had metadata.
    body_tail: Vec<u8>,
    tier: Tier,
    started: Instant,
    headers: Vec<(String, String)>,
    created_at_s: i64,
    expires_at_s: i64,
}

/// The request-side inputs of [`SuccessContext::new`].
struct SuccessParts<'a> {
    endpoint: Endpoint,
    request_id: &'a str,
    request_key: &'a str,
    agent_id: &'a str,
    fingerprint: [u8; 32],
    capability: &'a Capability,
    action: &'a str,
    output: &'a Value,
    metadata: Option<&'a Value>,
    tier: Tier,
    started: Instant,
    headers: Vec<(String, String)>,
    created_at_s: i64,
    expires_at_s: i64,
}

/// `billing` of a success body (CLIENT-COMPAT §1 A3, spec 01 §4.4).
///
/// Written by hand ([`BillingBlock::write_json`]): the store writer renders
/// one per charge, and serde's map machinery (escaping nine constant member
/// names) cost more than the numbers. Tests compare it with serde's output.
#[cfg_attr(test, derive(serde::Serialize))]
struct BillingBlock<'a> {
    charged: bool,
    amount_usdc: Micros,
    cost_usdc: Micros,
    method: &'static str,
    balance_after: Micros,
    /// A hyphenated UUID: hex digits and `-`, nothing to escape.
    transaction_id: &'a str,
    provider_share_usdc: Micros,
    hub_fee_usdc: Micros,
    payment_fee_usdc: Micros,
}

impl BillingBlock<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let charged: &[u8] = if self.charged { b"true" } else { b"false" };
        out.extend_from_slice(br#"{"charged":"#);
        out.extend_from_slice(charged);
        push_amounts(
            out,
            &[
                (br#","amount_usdc":"#, self.amount_usdc),
                (br#","cost_usdc":"#, self.cost_usdc),
            ],
        );
        push_members(out, &[(br#","method":"#, self.method)]);
        push_amounts(out, &[(br#","balance_after":"#, self.balance_after)]);
        push_members(out, &[(br#","transaction_id":"#, self.transaction_id)]);
        push_amounts(
            out,
            &[
                (br#","provider_share_usdc":"#, self.provider_share_usdc),
                (br#","hub_fee_usdc":"#, self.hub_fee_usdc),
                (br#","payment_fee_usdc":"#, self.payment_fee_usdc),
            ],
        );
        out.push(b'}');
    }
}

/// Appends `,"name":amount` pairs (each name given with its punctuation).
fn push_amounts(out: &mut Vec<u8>, members: &[(&[u8], Micros)]) {
    for (name, amount) in members {
        out.extend_from_slice(name);
        amount.write_json(out);
    }
}

/// Appends `,"name":value` pairs (each name given with its punctuation).
fn push_members<T: serde::Serialize>(out: &mut Vec<u8>, members: &[(&[u8], T)]) {
    for (name, value) in members {
        out.extend_from_slice(name);
        push_json(out, value);
    }
}

/// `execution` of a success body, written by hand like [`BillingBlock`].
#[cfg_attr(test, derive(serde::Serialize))]
struct ExecutionBlock<'a> {
    duration_ms: u64,
    engine: &'static str,
    provider: &'a str,
    trust_tier: &'static str,
}

impl ExecutionBlock<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        push_members(out, &[(br#"{"duration_ms":"#, self.duration_ms)]);
        let texts = [
            (&br#","engine":"#[..], self.engine),
            (br#","provider":"#, self.provider),
            (br#","trust_tier":"#, self.trust_tier),
        ];
        push_members(out, &texts);
        out.push(b'}');
    }
}

/// Appends `value` as JSON. Serializing a `serde_json::Value` or one of the
/// blocks above into a `Vec` cannot fail (no I/O, string keys only).
fn push_json(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    if let Err(error) = serde_json::to_writer(&mut *out, value) {
        tracing::error!(%error, "serializing a success body part failed");
        out.extend_from_slice(b"null");
    }
}

impl SuccessContext {
    fn new(parts: SuccessParts<'_>) -> SuccessContext {
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(br#"{"jecp":"1.0","id":"#);
        push_json(&mut head, &parts.request_id);
        head.extend_from_slice(br#","status":"completed","result":"#);
        let mut tail = Vec::new();
        match parts.endpoint {
            Endpoint::Invoke => {
                push_json(&mut head, parts.output);
                head.extend_from_slice(br#","provider":{"namespace":"#);
                push_json(&mut head, &parts.capability.namespace);
                head.extend_from_slice(br#","capability":"#);
                push_json(&mut head, &parts.capability.id);
                head.extend_from_slice(br#","version":"#);
                // SemVer text is [0-9A-Za-z.+-] only: nothing to escape.
                let _ = write!(head, "\"{}\"", parts.capability.version);
                head.push(b'}');
                if let Some(metadata) = parts.metadata {
                    tail.extend_from_slice(br#","metadata":"#);
                    push_json(&mut tail, metadata);
                }
            }
            Endpoint::Legacy => {
                head.extend_from_slice(br#"{"capability":"#);
                push_json(&mut head, &parts.capability.id);
                head.extend_from_slice(br#","action":"#);
                push_json(&mut head, &parts.action);
                head.extend_from_slice(br#","output":"#);
                push_json(&mut head, parts.output);
                if let Some(metadata) = parts.metadata {
                    head.extend_from_slice(br#","metadata":"#);
                    push_json(&mut head, metadata);
                }
                head.push(b'}');
            }
        }
        SuccessContext {
            endpoint: parts.endpoint,
            request_key: parts.request_key.to_owned(),
            agent_id: parts.agent_id.to_owned(),
            fingerprint: parts.fingerprint,
            capability_namespace: parts.capability.namespace.clone(),
            body_head: head,
            body_tail: tail,
            tier: parts.tier,
            started: parts.started,
            headers: parts.headers,
            created_at_s: parts.created_at_s,
            expires_at_s: parts.expires_at_s,
        }
    }

    /// The closure the writer calls with the posted charge: it finishes the
    /// body (which needs the transaction id and balance), keeps a copy for
    /// the live reply, and returns the idempotency record for the same commit.
    fn recorder(
        mut self,
        method: ChargeMethod,
        body_slot: Arc<OnceLock<Bytes>>,
    ) -> crate::store::IdempotencyRecorder {
        // The recorder holds the key; the closure gets it back to build the record.
        let agent_id = std::mem::take(&mut self.agent_id);
        let request_key = std::mem::take(&mut self.request_key);
        crate::store::IdempotencyRecorder::new(
            agent_id,
            request_key,
            move |posted: &Posted, agent_id, request_key| {
                let rendered = self.body(method, posted);
                let body = Bytes::from(rendered);
                let _ = body_slot.set(body.clone());
                IdempotencyRecord {
                    agent_id,
                    request_key,
                    fingerprint: self.fingerprint,
                    http_status: 200,
                    body: body.to_vec(),
                    headers: self.headers,
                    created_at_s: self.created_at_s,
                    expires_at_s: self.expires_at_s,
                }
            },
        )
    }

    /// The whole body: the pre-rendered head, then `billing`,
    /// (`wallet_balance_after`,) `execution`, then the tail.
    fn body(&self, method: ChargeMethod, posted: &Posted) -> Vec<u8> {
        let agent_pays = !matches!(method, ChargeMethod::FreeCall);
        let mut uuid_text = uuid::Uuid::encode_buffer();
        let transaction_id = super::transaction_uuid(posted.charge)
            .hyphenated()
            .encode_lower(&mut uuid_text);
        let billing = BillingBlock {
            charged: agent_pays && !posted.cost.is_zero(),
            amount_usdc: if agent_pays {
                posted.cost
            } else {
                Micros::ZERO
            },
            cost_usdc: posted.cost,
            method: match method {
                ChargeMethod::Wallet => "wallet",
                ChargeMethod::Mandate => "mandate",
                ChargeMethod::FreeCall => "free_call",
            },
            balance_after: posted.wallet_balance_after,
            transaction_id,
            provider_share_usdc: posted.provider_share,
            hub_fee_usdc: posted.hub_fee,
            payment_fee_usdc: posted.payment_fee,
        };
        let execution = ExecutionBlock {
            duration_ms: self.started.elapsed().as_millis() as u64,
            engine: ENGINE,
            provider: &self.capability_namespace,
            trust_tier: self.tier.as_str(),
        };
        // One allocation: billing and execution take under 512 bytes.
        let mut body = Vec::with_capacity(self.body_head.len() + self.body_tail.len() + 512);
        body.extend_from_slice(&self.body_head);
        body.extend_from_slice(br#","billing":"#);
        billing.write_json(&mut body);
        if self.endpoint == Endpoint::Invoke {
            body.extend_from_slice(br#","wallet_balance_after":"#);
            posted.wallet_balance_after.write_json(&mut body);
        }
        body.extend_from_slice(br#","execution":"#);
        execution.write_json(&mut body);
        body.extend_from_slice(&self.body_tail);
        body.push(b'}');
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, CatalogOverrides};
    use crate::ledger::ChargeId;

    fn micros(amount: u64) -> Micros {
        Micros::new(amount).expect("within the money range")
    }

    fn posted() -> Posted {
        Posted {
            charge: ChargeId((1_700_000_000_000u128 << 64) | 7),
            cost: micros(1_000),
            transfers: Vec::new(),
            wallet_balance_after: micros(19_999_000),
            provider_share: micros(850),
            hub_fee: micros(100),
            payment_fee: micros(50),
        }
    }

    fn render(endpoint: Endpoint, metadata: Option<&Value>, method: ChargeMethod) -> Value {
        let catalog =
            Catalog::builtin("hub", "https://hub.example/", &CatalogOverrides::default()).unwrap();
        let Resolution::Found(capability) = catalog.resolve("utility") else {
            panic!("utility is a built-in")
        };
        // Quotes, a backslash, a control character and non-ASCII must all be escaped.
        let output = json!({"text": "say \"hi\"\\ \u{1} caf\u{e9}", "n": [1, 2.5, null]});
        let context = SuccessContext::new(SuccessParts {
            endpoint,
            request_id: "req-0001",
            request_key: "req-0001",
            agent_id: "agent-1",
            fingerprint: [0; 32],
            capability,
            action: "echo",
            output: &output,
            metadata,
            tier: Tier::Silver,
            started: Instant::now(),
            headers: Vec::new(),
            created_at_s: 0,
            expires_at_s: 1,
        });
        let body = context.body(method, &posted());
        let parsed: Value = serde_json::from_slice(&body).expect("the body is JSON");
        // Same document as the DOM would give: no duplicate or missing keys.
        assert_eq!(serde_json::to_vec(&parsed).unwrap().len(), body.len());
        assert_eq!(
            parsed["result"].get("output").unwrap_or(&parsed["result"]),
            &output
        );
        parsed
    }

    proptest::proptest! {
        /// The hand-written blocks are byte for byte what serde would write,
        /// for any amounts (whole, fractional, the smallest unit, the largest).
        #[test]
        fn hand_written_blocks_match_serde(
            amounts in proptest::collection::vec(
                proptest::prop_oneof![
                    0u64..2_000_000,
                    proptest::strategy::Strategy::prop_map(0u64..1_000, |whole| whole * 1_000_000),
                    proptest::strategy::Just(1u64),
                    proptest::strategy::Just(Micros::MAX.get()),
                ],
                6,
            ),
            charged in proptest::bool::ANY,
            duration_ms in 0u64..100_000,
        ) {
            let billing = BillingBlock {
                charged,
                amount_usdc: micros(amounts[0]),
                cost_usdc: micros(amounts[1]),
                method: "mandate",
                balance_after: micros(amounts[2]),
                transaction_id: "01a21598-d08d-7000-8000-000000000000",
                provider_share_usdc: micros(amounts[3]),
                hub_fee_usdc: micros(amounts[4]),
                payment_fee_usdc: micros(amounts[5]),
            };
            let mut written = Vec::new();
            billing.write_json(&mut written);
            proptest::prop_assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&billing).unwrap()
            );
            let execution = ExecutionBlock {
                duration_ms,
                engine: ENGINE,
                provider: "hub",
                trust_tier: Tier::Platinum.as_str(),
            };
            let mut written = Vec::new();
            execution.write_json(&mut written);
            proptest::prop_assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&execution).unwrap()
            );
        }
    }

    /// The body's top-level keys, sorted (serde_json's map).
    fn top_level_keys(body: &Value) -> Vec<&str> {
        body.as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn invoke_body_has_every_client_field_and_echoes_metadata() {
        let metadata = json!({"session": "s1"});
        let body = render(Endpoint::Invoke, Some(&metadata), ChargeMethod::Mandate);
        let keys = top_level_keys(&body);
        assert_eq!(
            keys,
            [
                "billing",
                "execution",
                "id",
                "jecp",
                "metadata",
                "provider",
                "result",
                "status",
                "wallet_balance_after"
            ]
        );
        assert_eq!(body["jecp"], "1.0");
        assert_eq!(body["id"], "req-0001");
        assert_eq!(body["status"], "completed");
        assert_eq!(body["metadata"], metadata);
        assert_eq!(
            body["provider"],
            json!({"namespace": "hub", "capability": "hub/utility", "version": body["provider"]["version"]})
        );
        assert_eq!(
            body["billing"],
            json!({
                "charged": true,
                "amount_usdc": 0.001,
                "cost_usdc": 0.001,
                "method": "mandate",
                "balance_after": 19.999,
                "transaction_id": super::super::transaction_uuid(posted().charge).to_string(),
                "provider_share_usdc": 0.00085,
                "hub_fee_usdc": 0.0001,
                "payment_fee_usdc": 0.00005,
            })
        );
        assert_eq!(body["wallet_balance_after"], json!(19.999));
        assert_eq!(body["execution"]["engine"], ENGINE);
        assert_eq!(body["execution"]["provider"], "hub");
        assert_eq!(body["execution"]["trust_tier"], "silver");
        assert!(body["execution"]["duration_ms"].is_u64());
    }

    #[test]
    fn legacy_body_nests_output_and_metadata_and_free_calls_charge_nothing() {
        let metadata = json!({"trace": ["a", "b"]});
        let body = render(Endpoint::Legacy, Some(&metadata), ChargeMethod::FreeCall);
        let keys = top_level_keys(&body);
        assert_eq!(
            keys,
            ["billing", "execution", "id", "jecp", "result", "status"]
        );
        assert_eq!(body["result"]["capability"], "hub/utility");
        assert_eq!(body["result"]["action"], "echo");
        assert_eq!(body["result"]["metadata"], metadata);
        assert_eq!(body["billing"]["charged"], false);
        assert_eq!(body["billing"]["amount_usdc"], json!(0));
        assert_eq!(body["billing"]["method"], "free_call");
        // Without metadata the field is absent, not null.
        let bare = render(Endpoint::Invoke, None, ChargeMethod::Wallet);
        assert!(bare.get("metadata").is_none());
    }
}
