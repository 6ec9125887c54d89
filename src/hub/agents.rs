//! Agent self-service: registration, key rotation and `GET /v1/agents/me`.
//!
//! Each operation changes memory first (so a second, concurrent request sees
//! the reservation, e.g. a taken name), then persists through the store, and
//! rolls memory back if the commit fails: nothing is acknowledged that is not
//! on disk, and nothing on disk is missing from memory.

use serde_json::{Value, json};

use super::invoke::{effective_tier, rfc3339};
use super::{Hub, Reply, now_ms, now_s};
use crate::auth::{RegisterError, RegisterRequest, RotateRequest};
use crate::ledger::AccountId;
use crate::money::Micros;
use crate::protocol::{ErrorCode, JecpError};
use crate::store::Command;

/// Page sizes for the transaction history.
const HISTORY_PAGE_DEFAULT: usize = 20;
const HISTORY_PAGE_MAX: usize = 100;

/// One history entry: a credit, or a charge with its split legs.
fn history_entry(legs: &[&crate::ledger::Transfer]) -> Value {
    let first = legs[0];
    let created_at = rfc3339(first.timestamp_ms.div_euclid(1000));
    // Only one leg of a charge carries its memo; the legs arrive newest first.
    let memo = legs.iter().find_map(|leg| leg.memo.as_ref());
    match (&first.charge, memo) {
        (Some(charge), memo) => {
            let mut cost = Micros::ZERO;
            for leg in legs {
                cost = cost.checked_add(leg.amount).unwrap_or(Micros::MAX);
            }
            let leg_amount = |kind: crate::ledger::TransferKind| {
                legs.iter()
                    .find(|leg| leg.kind == kind)
                    .map_or(Micros::ZERO, |leg| leg.amount)
                    .to_json()
            };
            json!({
                "type": "charge",
                "transaction_id": super::transaction_uuid(*charge).to_string(),
                "capability": memo.as_ref().map(|memo| memo.capability.clone()),
                "action": memo.as_ref().map(|memo| memo.action.clone()),
                "request_id": memo.as_ref().map(|memo| memo.request_id.clone()),
                "method": memo.as_ref().map(|memo| memo.method.as_str()),
                "amount_usdc": cost.to_json(),
                "provider_share_usdc": leg_amount(crate::ledger::TransferKind::ProviderShare),
                "hub_fee_usdc": leg_amount(crate::ledger::TransferKind::HubFee),
                "payment_fee_usdc": leg_amount(crate::ledger::TransferKind::PaymentFee),
                "created_at": created_at,
            })
        }
        (None, _) => {
            let reference = first.reference.clone().unwrap_or_default();
            let source = reference
                .split_once(':')
                .map_or("credit", |(source, _)| source)
                .to_owned();
            json!({
                "type": "credit",
                "transfer_id": format!("{:032x}", first.id.0),
                "source": source,
                "reference": reference,
                "amount_usdc": first.amount.to_json(),
                "created_at": created_at,
            })
        }
    }
}

/// The credentials an authenticated agent endpoint received.
#[derive(Clone, Copy, Debug)]
pub struct AgentHeaders<'a> {
    pub agent_id: Option<&'a str>,
    pub api_key: Option<&'a str>,
}

impl Hub {
    /// `POST /api/agents/register` (and `/api/agent/register`). Errors are
    /// `{"error": "<string>"}` here: the SDK reads a string (CLIENT-COMPAT A1).
    pub async fn register(&self, body: &[u8], client_ip: std::net::IpAddr) -> Reply {
        let limit = self.config.registration_per_minute_per_ip;
        let decision = self.limiter.check(
            &crate::gate::client_ip_key("register", client_ip),
            limit,
            now_ms(),
        );
        if !decision.allowed {
            return Reply::plain_error(
                429,
                &format!(
                    "too many registrations from this address; retry in {} s",
                    decision.retry_after_s
                ),
            )
            .with_header("Retry-After", decision.retry_after_s.to_string());
        }
        let request: RegisterRequest = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(error) => {
                return Reply::plain_error(400, &format!("invalid registration body: {error}"));
            }
        };
        let account = self.allocate_wallet_account();
        let registered =
            match self
                .directory
                .register(&request, account, &self.config.vendor_prefix, now_s())
            {
                Ok(registered) => registered,
                Err(RegisterError::NameTaken) => {
                    return Reply::plain_error(
                        409,
                        "an agent with this name is already registered",
                    );
                }
                Err(error @ RegisterError::Invalid(_)) => {
                    return Reply::plain_error(400, &error.to_string());
                }
            };
        let agent_id = registered.record.agent_id.clone();
        let name = registered.record.name.clone();
        let command = Command::OpenWallet {
            account: AccountId(account),
            agent: registered.record,
        };
        if let Err(error) = self.store.execute(command).await {
            self.directory.unregister(&agent_id);
            tracing::warn!(%error, "registration not committed");
            let retry_after = error.to_jecp().retry_after_seconds.unwrap_or(1);
            return Reply::plain_error(
                503,
                "the Hub could not store the registration; retry shortly",
            )
            .with_header("Retry-After", retry_after.to_string());
        }
        tracing::info!(agent_id = %agent_id, "agent registered");
        let links = &self.links;
        Reply::json(
            201,
            &json!({
                "agent_id": agent_id,
                "api_key": registered.api_key,
                "name": name,
                "free_calls_remaining": self.config.free_calls_per_agent,
                "tier": "bronze",
                "wallet_balance_usdc": 0,
                "endpoints": {
                    "invoke": links.url("/v1/invoke"),
                    "capabilities": links.url("/v1/capabilities"),
                    "me": links.url("/v1/agents/me"),
                    "transactions": links.url("/v1/agents/me/transactions"),
                    "rotate_key": links.url("/v1/agents/me/rotate-key"),
                    "topup": links.url("/api/agents/topup"),
                    "agent_guide": links.url("/.well-known/agent-guide.json"),
                },
                "note": "Store api_key now: it is shown once and cannot be retrieved.",
            }),
        )
    }

    /// `POST /v1/agents/me/rotate-key`.
    pub async fn rotate_key(&self, headers: AgentHeaders<'_>, body: &[u8]) -> Reply {
        let now = now_s();
        let agent = match self.authenticate_headers(headers, now) {
            Ok(agent) => agent,
            Err(error) => return Reply::error(&error, None, &self.links),
        };
        let request: RotateRequest = if body.iter().all(u8::is_ascii_whitespace) {
            RotateRequest {
                grace_seconds: None,
                revoke_old: None,
            }
        } else {
            match serde_json::from_slice(body) {
                Ok(request) => request,
                Err(error) => {
                    let error = JecpError::new(
                        ErrorCode::InvalidRequest,
                        format!("invalid rotate-key body: {error}"),
                    );
                    return Reply::error(&error, None, &self.links);
                }
            }
        };
        let rotated = match self.directory.rotate(&agent.agent_id, &request, now) {
            Ok(rotated) => rotated,
            Err(error) => return Reply::error(&error, None, &self.links),
        };
        if let Err(error) = self
            .store
            .execute(Command::PutAgent(rotated.record.clone()))
            .await
        {
            self.directory.rollback_rotation(&rotated);
            tracing::warn!(%error, "key rotation not committed; old key stays");
            return Reply::error(&error.to_jecp(), None, &self.links);
        }
        tracing::info!(agent_id = %agent.agent_id, "api key rotated");
        Reply::json(
            200,
            &json!({
                "jecp": "1.0",
                "agent_id": agent.agent_id,
                "api_key": rotated.api_key,
                "previous_key_valid_until": rotated.previous_key_valid_until_s.map(rfc3339),
                "grace_seconds": rotated.grace_seconds,
                "revoke_old": request.revoke_old.unwrap_or(false),
                "rotations_in_last_24h": rotated.rotations_in_last_24h,
                "warning": "Store api_key now: it is shown once. The previous key stops working at previous_key_valid_until.",
            }),
        )
    }

    /// `GET /v1/agents/me`: tier, calls, free calls left, balance, rate limit.
    pub fn me(&self, headers: AgentHeaders<'_>) -> Reply {
        let now = now_s();
        let agent = match self.authenticate_headers(headers, now) {
            Ok(agent) => agent,
            Err(error) => return Reply::error(&error, None, &self.links),
        };
        Reply::json(200, &self.agent_summary(&agent))
    }

    /// The agent as the agent itself and the operator see it.
    pub fn agent_summary(&self, agent: &crate::records::AgentRecord) -> Value {
        let wallet = AccountId(agent.wallet_account);
        let (total_calls, free_used, available, pending) =
            self.store
                .read_ledger(|ledger| match ledger.account(wallet) {
                    Some(account) => (
                        account.charges_posted,
                        account.free_calls_used,
                        ledger.available(wallet).unwrap_or(Micros::ZERO),
                        account.debits_pending,
                    ),
                    None => (0, 0, Micros::ZERO, Micros::ZERO),
                });
        let tier = effective_tier(agent, total_calls);
        let rpm = agent.rate_limit_rpm.unwrap_or_else(|| self.tier_rpm(tier));
        json!({
            "jecp": "1.0",
            "agent_id": agent.agent_id,
            "name": agent.name,
            "tier": tier.as_str(),
            "tier_floor": agent.tier_floor.and_then(crate::gate::Tier::from_u8).map(|tier| tier.as_str()),
            "total_calls": total_calls,
            "free_calls_remaining": self.config.free_calls_per_agent.saturating_sub(free_used),
            "balance_usdc": available.to_json(),
            "pending_usdc": pending.to_json(),
            "rate_limit_rpm": rpm,
            "frozen": agent.frozen,
            "created_at": rfc3339(agent.created_at_s),
        })
    }

    /// `GET /v1/agents/me/transactions?cursor=&limit=`: the wallet's money
    /// movements, newest first: credits (top-ups, operator credits) and paid
    /// charges with their split. Free calls move no wallet money; they show
    /// in `total_calls` and `free_calls_remaining` instead.
    pub async fn transactions(&self, headers: AgentHeaders<'_>, query: Option<&str>) -> Reply {
        let agent = match self.authenticate_headers(headers, now_s()) {
            Ok(agent) => agent,
            Err(error) => return Reply::error(&error, None, &self.links),
        };
        let mut limit = HISTORY_PAGE_DEFAULT;
        let mut before = None;
        for (key, value) in super::operator::parse_query(query.unwrap_or("")) {
            match key.as_str() {
                "limit" | "page_size" => match value.parse::<usize>() {
                    Ok(parsed) if (1..=HISTORY_PAGE_MAX).contains(&parsed) => limit = parsed,
                    _ => return self.history_error(&format!("limit must be 1-{HISTORY_PAGE_MAX}")),
                },
                "cursor" => match u128::from_str_radix(&value, 16) {
                    Ok(cursor) if value.len() == 32 => before = Some(cursor),
                    _ => return self.history_error("cursor is not one this Hub issued"),
                },
                _ => {}
            }
        }
        // A charge is up to three legs; read enough rows for `limit` entries
        // plus one more row to learn whether anything older exists.
        let rows = limit * 3 + 1;
        let command = Command::History {
            wallet: AccountId(agent.wallet_account),
            before,
            limit: rows,
        };
        let transfers = match self.store.execute(command).await {
            Ok(crate::store::Reply::History(transfers)) => transfers,
            Ok(other) => {
                tracing::error!(
                    ?other,
                    "writer answered a history read with an unexpected reply"
                );
                return Reply::error(&JecpError::internal(), None, &self.links);
            }
            Err(error) => return Reply::error(&error.to_jecp(), None, &self.links),
        };
        let exhausted = transfers.len() < rows;
        let mut entries: Vec<Vec<&crate::ledger::Transfer>> = Vec::new();
        for transfer in &transfers {
            match entries.last_mut() {
                Some(group) if transfer.charge.is_some() && group[0].charge == transfer.charge => {
                    group.push(transfer)
                }
                _ => entries.push(vec![transfer]),
            }
        }
        // The oldest group may be cut by the row limit; keep it for the next page.
        if !exhausted {
            entries.pop();
        }
        let has_more = !exhausted || entries.len() > limit;
        entries.truncate(limit);
        let next_cursor = if has_more {
            entries
                .last()
                .and_then(|group| group.iter().map(|transfer| transfer.id.0).min())
                .map(|id| format!("{id:032x}"))
        } else {
            None
        };
        let items: Vec<Value> = entries.iter().map(|group| history_entry(group)).collect();
        Reply::json(
            200,
            &json!({"jecp": "1.0", "agent_id": agent.agent_id, "transactions": items, "count": items.len(),
                    "has_more": has_more, "next_cursor": next_cursor}),
        )
    }

    fn history_error(&self, message: &str) -> Reply {
        let error =
            JecpError::new(ErrorCode::ValidationFailed, message.to_owned()).without_next_action();
        Reply::error(&error, None, &self.links)
    }

    /// Header credentials only (these endpoints have no mandate).
    pub fn authenticate_headers(
        &self,
        headers: AgentHeaders<'_>,
        now: i64,
    ) -> Result<std::sync::Arc<crate::records::AgentRecord>, JecpError> {
        let credentials =
            crate::auth::resolve_credentials(headers.agent_id, headers.api_key, None)?;
        self.directory
            .authenticate(credentials.agent_id, credentials.api_key, now)
    }
}
