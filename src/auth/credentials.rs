//! Credential resolution (spec 02 §3.5, §4.3): where a request's
//! `agent_id` and `api_key` come from.
//!
//! Each field is taken from the mandate when the mandate carries it, else
//! from the `X-Agent-ID` / `X-API-Key` header. Empty values count as absent.
//! If either field is still missing the answer is 401 `AUTH_REQUIRED`
//! (next_action `register`); whether the pair is valid is
//! [`crate::auth::Directory::authenticate`]'s question.

use std::fmt;

use crate::auth::mandate::Mandate;
use crate::protocol::{ErrorCode, JecpError};

/// The credentials a request presents, borrowed from its headers or mandate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub agent_id: &'a str,
    pub api_key: &'a str,
    /// True when at least one of the two fields came from the mandate.
    pub from_mandate: bool,
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("agent_id", &self.agent_id)
            .field("api_key", &"<redacted>")
            .field("from_mandate", &self.from_mandate)
            .finish()
    }
}

/// Picks the credentials per spec 02 §3.5: mandate fields win over headers.
pub fn resolve_credentials<'a>(
    header_agent_id: Option<&'a str>,
    header_api_key: Option<&'a str>,
    mandate: Option<&'a Mandate>,
) -> Result<Credentials<'a>, JecpError> {
    let present = |value: Option<&'a str>| value.map(str::trim).filter(|value| !value.is_empty());
    let mandate_agent_id = present(mandate.and_then(|m| m.agent_id.as_deref()));
    let mandate_api_key = present(mandate.and_then(|m| m.api_key.as_deref()));
    let agent_id = mandate_agent_id.or_else(|| present(header_agent_id));
    let api_key = mandate_api_key.or_else(|| present(header_api_key));
    match (agent_id, api_key) {
        (Some(agent_id), Some(api_key)) => Ok(Credentials {
            agent_id,
            api_key,
            from_mandate: mandate_agent_id.is_some() || mandate_api_key.is_some(),
        }),
        (None, None) => Err(JecpError::new(
            ErrorCode::AuthRequired,
            "Authentication required: send X-Agent-ID and X-API-Key (or mandate.agent_id and mandate.api_key).",
        )),
        (None, Some(_)) => Err(JecpError::new(
            ErrorCode::AuthRequired,
            "Authentication required: the agent id is missing (X-Agent-ID or mandate.agent_id).",
        )),
        (Some(_), None) => Err(JecpError::new(
            ErrorCode::AuthRequired,
            "Authentication required: the api key is missing (X-API-Key or mandate.api_key).",
        )),
    }
}
