//! The operator surface: crediting wallets, inspecting, listing, freezing
//! and tuning agents. Authenticated by the admin token from configuration
//! (Bearer, compared in constant time); with no token configured the whole
//! surface is disabled.
//!
//! The same operations back the `jecp-hub agent ...` CLI, which calls them
//! in-process on a stopped Hub's data directory or over HTTP on a running one.

use ring::digest::{SHA256, digest};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{Hub, Reply};
use crate::gate::Tier;
use crate::ledger::AccountId;
use crate::money::Micros;
use crate::protocol::{ErrorCode, JecpError};
use crate::store::{Command, Reply as StoreReply};

/// Page size bounds for `GET /v1/operator/agents`.
const LIST_LIMIT_DEFAULT: usize = 50;
const LIST_LIMIT_MAX: usize = 500;
/// Longest external reference a credit may carry.
const REFERENCE_BYTES_MAX: usize = 256;

/// Body of `POST /v1/operator/agents/{id}/credit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditRequest {
    /// `"20"`, `"$0.50"` or a JSON number.
    pub amount_usdc: Value,
    /// External reference; the same reference credits at most once.
    pub reference: String,
}

/// Body of `PATCH /v1/operator/agents/{id}`: each present field is applied;
/// `null` clears an override.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    pub frozen: Option<bool>,
    #[serde(default, with = "double_option")]
    pub tier_floor: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    pub rate_limit_rpm: Option<Option<u32>>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

impl Hub {
    /// Checks `Authorization: Bearer <admin token>`.
    pub fn authorize_operator(&self, authorization: Option<&str>) -> Result<(), JecpError> {
        let Some(expected) = self.config.admin_token.as_deref() else {
            return Err(JecpError::new(
                ErrorCode::OperatorAuthFailed,
                "the operator API is disabled on this Hub (no admin_token configured)",
            ));
        };
        let presented = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compare digests so neither the content nor the length leaks through timing.
        let matches = digest(&SHA256, presented.as_bytes())
            .as_ref()
            .ct_eq(digest(&SHA256, expected.as_bytes()).as_ref());
        if presented.is_empty() || !bool::from(matches) {
            return Err(JecpError::new(
                ErrorCode::OperatorAuthFailed,
                "missing or wrong operator token",
            ));
        }
        Ok(())
    }

    /// Credits an agent's wallet from the funding account.
    pub async fn operator_credit(&self, agent_id: &str, body: &[u8]) -> Reply {
        let request: CreditRequest = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(error) => {
                return self.operator_error(invalid(format!("invalid credit body: {error}")));
            }
        };
        let amount = match Micros::from_json(&request.amount_usdc) {
            Ok(amount) if !amount.is_zero() => amount,
            Ok(_) => {
                return self
                    .operator_error(invalid("amount_usdc must be greater than zero".into()));
            }
            Err(error) => return self.operator_error(invalid(format!("amount_usdc: {error}"))),
        };
        if request.reference.trim().is_empty() || request.reference.len() > REFERENCE_BYTES_MAX {
            return self.operator_error(invalid(format!(
                "reference must be 1-{REFERENCE_BYTES_MAX} bytes"
            )));
        }
        match self
            .credit_wallet(agent_id, amount, &format!("operator:{}", request.reference))
            .await
        {
            Ok(credited) => {
                let agent = self.directory.get(agent_id);
                let mut summary = agent
                    .map(|agent| self.agent_summary(&agent))
                    .unwrap_or(Value::Null);
                if let Value::Object(members) = &mut summary {
                    members.insert("credited".into(), json!(credited));
                    members.insert("amount_usdc".into(), amount.to_json());
                    members.insert("reference".into(), json!(request.reference));
                }
                Reply::json(if credited { 201 } else { 200 }, &summary)
            }
            Err(error) => self.operator_error(error),
        }
    }

    /// Credits `amount` once per `reference`. `Ok(false)` means the reference
    /// was already used and nothing moved.
    pub async fn credit_wallet(
        &self,
        agent_id: &str,
        amount: Micros,
        reference: &str,
    ) -> Result<bool, JecpError> {
        let Some(agent) = self.directory.get(agent_id) else {
            return Err(JecpError::new(
                ErrorCode::AgentNotFound,
                format!("no agent {agent_id:?}"),
            ));
        };
        let command = Command::Credit {
            wallet: AccountId(agent.wallet_account),
            amount,
            reference: reference.to_owned(),
        };
        match self.store.execute(command).await {
            Ok(StoreReply::Credited(_)) => {
                tracing::info!(agent_id, amount = %amount, "wallet credited");
                Ok(true)
            }
            Ok(StoreReply::AlreadyCredited) => Ok(false),
            Ok(other) => {
                tracing::error!(?other, "writer answered a credit with an unexpected reply");
                Err(JecpError::internal())
            }
            Err(crate::store::StoreError::Ledger(
                crate::ledger::LedgerError::DuplicateReference,
            )) => Ok(false),
            Err(crate::store::StoreError::Ledger(error)) => {
                Err(invalid(format!("credit refused: {error}")))
            }
            Err(error) => Err(error.to_jecp()),
        }
    }

    pub fn operator_show(&self, agent_id: &str) -> Reply {
        match self.directory.get(agent_id) {
            Some(agent) => Reply::json(200, &self.agent_summary(&agent)),
            None => self.operator_error(JecpError::new(
                ErrorCode::AgentNotFound,
                format!("no agent {agent_id:?}"),
            )),
        }
    }

    /// `?after=<agent_id>&limit=<n>`, sorted by agent id.
    pub fn operator_list(&self, query: Option<&str>) -> Reply {
        let mut after = None;
        let mut limit = LIST_LIMIT_DEFAULT;
        for (key, value) in parse_query(query.unwrap_or("")) {
            match key.as_str() {
                "after" | "cursor" => after = Some(value),
                "limit" => match value.parse::<usize>() {
                    Ok(parsed) if (1..=LIST_LIMIT_MAX).contains(&parsed) => limit = parsed,
                    _ => {
                        return self
                            .operator_error(invalid(format!("limit must be 1-{LIST_LIMIT_MAX}")));
                    }
                },
                _ => {}
            }
        }
        let page = self.directory.list(after.as_deref(), limit + 1);
        let has_more = page.len() > limit;
        let agents: Vec<Value> = page
            .iter()
            .take(limit)
            .map(|agent| self.agent_summary(agent))
            .collect();
        let next_cursor = if has_more {
            page.get(limit - 1).map(|agent| agent.agent_id.clone())
        } else {
            None
        };
        Reply::json(
            200,
            &json!({"agents": agents, "count": agents.len(), "total": self.directory.len(),
                    "has_more": has_more, "next_cursor": next_cursor}),
        )
    }

    /// Freeze/unfreeze, tier floor and per-agent rate limit.
    pub async fn operator_patch(&self, agent_id: &str, body: &[u8]) -> Reply {
        let patch: AgentPatch = match serde_json::from_slice(body) {
            Ok(patch) => patch,
            Err(error) => {
                return self.operator_error(invalid(format!("invalid agent patch: {error}")));
            }
        };
        match self.apply_agent_patch(agent_id, &patch).await {
            Ok(summary) => Reply::json(200, &summary),
            Err(error) => self.operator_error(error),
        }
    }

    pub async fn apply_agent_patch(
        &self,
        agent_id: &str,
        patch: &AgentPatch,
    ) -> Result<Value, JecpError> {
        let Some(current) = self.directory.get(agent_id) else {
            return Err(JecpError::new(
                ErrorCode::AgentNotFound,
                format!("no agent {agent_id:?}"),
            ));
        };
        let previous = current.as_ref().clone();
        let mut updated = previous.clone();
        if let Some(frozen) = patch.frozen {
            updated.frozen = frozen;
        }
        if let Some(floor) = &patch.tier_floor {
            updated.tier_floor = match floor {
                None => None,
                Some(name) => match Tier::parse(name) {
                    Some(tier) => Some(tier.as_u8()),
                    None => {
                        return Err(invalid(format!(
                            "tier_floor {name:?} is not bronze, silver, gold or platinum"
                        )));
                    }
                },
            };
        }
        if let Some(rpm) = patch.rate_limit_rpm {
            if rpm == Some(0) {
                return Err(invalid(
                    "rate_limit_rpm must be at least 1 (freeze the agent to stop it)".into(),
                ));
            }
            updated.rate_limit_rpm = rpm;
        }
        self.directory.put(updated.clone());
        if let Err(error) = self.store.execute(Command::PutAgent(updated.clone())).await {
            self.directory.put(previous);
            return Err(error.to_jecp());
        }
        tracing::info!(
            agent_id,
            frozen = updated.frozen,
            "agent updated by operator"
        );
        Ok(self.agent_summary(&updated))
    }

    fn operator_error(&self, error: JecpError) -> Reply {
        Reply::error(&error, None, &self.links)
    }
}

fn invalid(message: String) -> JecpError {
    JecpError::new(ErrorCode::ValidationFailed, message).without_next_action()
}

/// Decodes `a=b&c=d` with `%XX` and `+` escapes.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[index + 1..index + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_decodes_escapes() {
        assert_eq!(
            parse_query("after=hub_ag_x&limit=10&tags=a%2Cb&q=a+b&bad=%zz"),
            vec![
                ("after".into(), "hub_ag_x".into()),
                ("limit".into(), "10".into()),
                ("tags".into(), "a,b".into()),
                ("q".into(), "a b".into()),
                ("bad".into(), "%zz".into()),
            ]
        );
        assert_eq!(parse_query("x=%4"), vec![("x".into(), "%4".into())]);
    }

    #[test]
    fn patch_distinguishes_absent_from_null() {
        let patch: AgentPatch = serde_json::from_str(r#"{"tier_floor": null}"#).unwrap();
        assert_eq!(patch.tier_floor, Some(None));
        assert_eq!(patch.rate_limit_rpm, None);
        let patch: AgentPatch =
            serde_json::from_str(r#"{"rate_limit_rpm": 42, "frozen": true}"#).unwrap();
        assert_eq!(patch.rate_limit_rpm, Some(Some(42)));
        assert_eq!(patch.frozen, Some(true));
        assert!(serde_json::from_str::<AgentPatch>(r#"{"nope": 1}"#).is_err());
    }
}
