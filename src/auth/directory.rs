//! The agent directory: every [`AgentRecord`] in memory, O(1) lookup by id,
//! registration, authentication and key rotation.
//!
//! Records live in sharded `RwLock<HashMap<agent_id, Arc<AgentRecord>>>`s, so
//! authentication takes one shared lock on one shard and clones an `Arc`.
//! Names are unique case-insensitively through a separate name index.
//!
//! The directory never persists anything: `register`, `rotate` and `put`
//! return or take the records the pipeline hands to the store, and
//! `unregister` / `rollback_rotation` roll memory back when persisting fails.
//!
//! Authentication does the same work for an unknown id as for a wrong key
//! (one HMAC, one constant-time compare against a dummy hash) and answers
//! with the identical error, so responses do not reveal which ids exist
//! (spec 02 §3.5 step 5).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::auth::keys::{self, ServerSecret};
use crate::auth::mandate::rfc3339;
use crate::protocol::{ErrorCode, JecpError};
use crate::records::AgentRecord;

const SHARD_COUNT: usize = 16;

/// Registration field limits (characters after trimming).
pub const NAME_MAX_CHARS: usize = 100;
pub const AGENT_TYPE_MAX_CHARS: usize = 64;
pub const DESCRIPTION_MAX_CHARS: usize = 500;
pub const HOMEPAGE_MAX_CHARS: usize = 2048;
pub const CAPABILITIES_MAX_COUNT: usize = 50;
pub const CAPABILITY_MAX_CHARS: usize = 100;
/// Presented ids/keys longer than this are rejected without hashing them.
pub const PRESENTED_CREDENTIAL_MAX_BYTES: usize = 256;

/// Rotation limits: grace is clamped to this range (the SDK's range).
pub const ROTATION_GRACE_MIN_S: i64 = 60;
pub const ROTATION_GRACE_MAX_S: i64 = 604_800;
/// Grace when the request names none (spec 04's default for provider keys).
pub const ROTATION_GRACE_DEFAULT_S: i64 = 3_600;
pub const ROTATIONS_PER_24H: usize = 3;
const DAY_S: i64 = 86_400;

/// The one message for every failed key check, so unknown id and wrong key
/// are byte-identical on the wire.
const INVALID_CREDENTIALS_MESSAGE: &str = "Invalid agent_id or api_key.";

/// `POST /api/agents/register` body.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct RegisterRequest {
    pub name: String,
    #[serde(default)]
    pub agent_type: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    #[serde(default)]
    pub homepage: Option<String>,
    #[serde(default)]
    pub referred_by: Option<String>,
}

/// A new agent: the record to persist and the key to show exactly once.
#[derive(Clone, PartialEq, Eq)]
pub struct Registered {
    pub record: AgentRecord,
    pub api_key: String,
}

impl Registered {
    /// The A1 success body the SDK reads: `agent_id`, `api_key` (shown this
    /// once), `name`, `free_calls_remaining`, `endpoints`.
    pub fn to_json(&self, free_calls_remaining: u64, endpoints: Value) -> Value {
        json!({
            "agent_id": self.record.agent_id,
            "api_key": self.api_key,
            "name": self.record.name,
            "free_calls_remaining": free_calls_remaining,
            "endpoints": endpoints,
        })
    }
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered")
            .field("agent_id", &self.record.agent_id)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

/// Why registration failed. `Display` is the text for `{"error": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// 400: a field failed validation.
    Invalid(String),
    /// 409: another agent already has this name (case-insensitive).
    NameTaken,
}

impl RegisterError {
    pub fn http_status(&self) -> u16 {
        match self {
            RegisterError::Invalid(_) => 400,
            RegisterError::NameTaken => 409,
        }
    }
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::Invalid(reason) => f.write_str(reason),
            RegisterError::NameTaken => {
                f.write_str("An agent with this name already exists; choose another name.")
            }
        }
    }
}

impl std::error::Error for RegisterError {}

/// `POST /v1/agents/me/rotate-key` body.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct RotateRequest {
    #[serde(default)]
    pub grace_seconds: Option<i64>,
    #[serde(default)]
    pub revoke_old: Option<bool>,
}

/// A completed rotation (in memory); persist `record`, or undo it with
/// [`Directory::rollback_rotation`] if persisting fails.
#[derive(Clone, PartialEq, Eq)]
pub struct Rotated {
    pub record: AgentRecord,
    pub previous: AgentRecord,
    /// The new plaintext key, shown once.
    pub api_key: String,
    /// The grace actually applied (0 when the old key was revoked at once).
    pub grace_seconds: u32,
    pub previous_key_valid_until_s: Option<i64>,
    /// Including this rotation.
    pub rotations_in_last_24h: u32,
}

impl Rotated {
    /// The A9 success body: the SDK stores `api_key`; `previous_key_valid_until`
    /// is RFC 3339 or `null` when the old key was revoked at once.
    pub fn to_json(&self) -> Value {
        json!({
            "agent_id": self.record.agent_id,
            "api_key": self.api_key,
            "previous_key_valid_until": self.previous_key_valid_until_s.and_then(rfc3339),
            "grace_seconds": self.grace_seconds,
            "revoke_old": self.previous_key_valid_until_s.is_none(),
            "rotations_in_last_24h": self.rotations_in_last_24h,
        })
    }
}

impl fmt::Debug for Rotated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rotated")
            .field("agent_id", &self.record.agent_id)
            .field("api_key", &"<redacted>")
            .field("grace_seconds", &self.grace_seconds)
            .field(
                "previous_key_valid_until_s",
                &self.previous_key_valid_until_s,
            )
            .field("rotations_in_last_24h", &self.rotations_in_last_24h)
            .finish()
    }
}

type Shard = HashMap<String, Arc<AgentRecord>>;

/// All agents, in memory. `Send + Sync`; share it behind an `Arc`.
pub struct Directory {
    secret: ServerSecret,
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    /// Normalized name → agent id. Lock order: `names` before any shard.
    names: Mutex<HashMap<String, String>>,
    /// Compared against when the id is unknown, so both paths do equal work.
    dummy_key_hash: [u8; 32],
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("agents", &self.len())
            .finish_non_exhaustive()
    }
}

impl Directory {
    pub fn new(secret: ServerSecret, records: Vec<AgentRecord>) -> Directory {
        let dummy_key_hash = secret.key_hash("dummy key for unknown agent ids");
        let directory = Directory {
            secret,
            shards: (0..SHARD_COUNT)
                .map(|_| RwLock::new(HashMap::new()))
                .collect(),
            hasher: RandomState::new(),
            names: Mutex::new(HashMap::new()),
            dummy_key_hash,
        };
        for record in records {
            directory.put(record);
        }
        directory
    }

    /// Checks `(agent_id, api_key)`. The previous key (after a rotation) is
    /// accepted while `now_s < previous_key_valid_until_s`. Frozen agents get
    /// 401 `INVALID_AGENT`, but only once the key matched.
    pub fn authenticate(
        &self,
        agent_id: &str,
        api_key: &str,
        now_s: i64,
    ) -> Result<Arc<AgentRecord>, JecpError> {
        if agent_id.len() > PRESENTED_CREDENTIAL_MAX_BYTES
            || api_key.len() > PRESENTED_CREDENTIAL_MAX_BYTES
        {
            return Err(invalid_credentials());
        }
        let presented = self.secret.key_hash(api_key);
        let record = self.read_shard(agent_id).get(agent_id).cloned();
        let Some(record) = record else {
            // Same work as a known id: one constant-time compare (kept by
            // `black_box` from being optimised away), then the same error.
            std::hint::black_box(presented.ct_eq(&self.dummy_key_hash));
            tracing::debug!("authentication failed");
            return Err(invalid_credentials());
        };
        let current = presented.ct_eq(&record.key_hash);
        let previous_in_grace = match (record.previous_key_hash, record.previous_key_valid_until_s)
        {
            (Some(previous), Some(valid_until_s)) => {
                presented.ct_eq(&previous) & subtle::Choice::from(u8::from(now_s < valid_until_s))
            }
            _ => subtle::Choice::from(0),
        };
        if !bool::from(current | previous_in_grace) {
            tracing::debug!("authentication failed");
            return Err(invalid_credentials());
        }
        if record.frozen {
            tracing::info!(agent_id = %record.agent_id, "frozen agent refused");
            return Err(frozen_error());
        }
        Ok(record)
    }

    /// Validates the request, reserves the name and creates the agent in
    /// memory. The caller persists `record` and calls [`Directory::unregister`]
    /// if that fails.
    pub fn register(
        &self,
        request: &RegisterRequest,
        wallet_account: u64,
        prefix: &str,
        now_s: i64,
    ) -> Result<Registered, RegisterError> {
        if !keys::is_valid_prefix(prefix) {
            return Err(RegisterError::Invalid(
                "the Hub's credential prefix is misconfigured".into(),
            ));
        }
        let fields = validate(request)?;
        if let Some(referrer) = &fields.referred_by
            && !self.contains(referrer)
        {
            return Err(RegisterError::Invalid(
                "referred_by does not name a registered agent".into(),
            ));
        }
        let name_key = normalize_name(&fields.name);
        let mut names = self
            .names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if names.contains_key(&name_key) {
            return Err(RegisterError::NameTaken);
        }
        let api_key = keys::generate_api_key(prefix);
        let mut record = AgentRecord {
            agent_id: String::new(),
            wallet_account,
            name: fields.name,
            agent_type: fields.agent_type,
            description: fields.description,
            homepage: fields.homepage,
            capabilities: fields.capabilities,
            referred_by: fields.referred_by,
            key_hash: self.secret.key_hash(&api_key),
            previous_key_hash: None,
            previous_key_valid_until_s: None,
            rotations_s: Vec::new(),
            created_at_s: now_s,
            frozen: false,
            tier_floor: None,
            rate_limit_rpm: None,
        };
        // 24 alphanumerics make a collision astronomically unlikely; checking
        // under the write lock makes it impossible.
        loop {
            let agent_id = keys::generate_agent_id(prefix);
            let mut shard = self.write_shard(&agent_id);
            if shard.contains_key(&agent_id) {
                continue;
            }
            record.agent_id = agent_id.clone();
            shard.insert(agent_id.clone(), Arc::new(record.clone()));
            names.insert(name_key, agent_id);
            break;
        }
        tracing::info!(agent_id = %record.agent_id, "agent registered");
        Ok(Registered { record, api_key })
    }

    /// Removes an agent from memory (rollback of a registration whose
    /// persistence failed). Unknown ids are ignored.
    pub fn unregister(&self, agent_id: &str) {
        let mut names = self
            .names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let removed = self.write_shard(agent_id).remove(agent_id);
        if let Some(record) = removed {
            let name_key = normalize_name(&record.name);
            if names.get(&name_key).is_some_and(|owner| owner == agent_id) {
                names.remove(&name_key);
            }
        }
    }

    /// Issues a new key. The old one stays valid for the clamped grace, or
    /// dies at once with `revoke_old`. A fourth rotation within 24 h is
    /// refused with 429 `ROTATION_24H_CAP`. Only one previous key is kept: a
    /// rotation during another's grace ends that older key's grace.
    pub fn rotate(
        &self,
        agent_id: &str,
        request: &RotateRequest,
        now_s: i64,
    ) -> Result<Rotated, JecpError> {
        let mut shard = self.write_shard(agent_id);
        let Some(current) = shard.get(agent_id).cloned() else {
            return Err(invalid_credentials());
        };
        if current.frozen {
            return Err(frozen_error());
        }
        let window_start_s = now_s.saturating_sub(DAY_S);
        let mut recent: Vec<i64> = current
            .rotations_s
            .iter()
            .copied()
            .filter(|&at| at > window_start_s)
            .collect();
        recent.sort_unstable();
        if recent.len() >= ROTATIONS_PER_24H {
            // The slot frees when the oldest of the last `ROTATIONS_PER_24H` leaves the window.
            let next_slot_s = recent[recent.len() - ROTATIONS_PER_24H] + DAY_S;
            let wait_s = next_slot_s.saturating_sub(now_s).max(1);
            let mut error = JecpError::new(
                ErrorCode::Rotation24hCap,
                format!("At most {ROTATIONS_PER_24H} key rotations are allowed per 24 hours."),
            )
            .detail("limit_per_24h", ROTATIONS_PER_24H)
            .detail("rotations_in_last_24h", recent.len())
            .retry_after(wait_s.unsigned_abs());
            if let Some(next_slot_at) = rfc3339(next_slot_s) {
                error = error.detail("next_slot_at", next_slot_at);
            }
            return Err(error);
        }
        let revoke_old = request.revoke_old.unwrap_or(false);
        let grace_s = if revoke_old {
            0
        } else {
            request
                .grace_seconds
                .unwrap_or(ROTATION_GRACE_DEFAULT_S)
                .clamp(ROTATION_GRACE_MIN_S, ROTATION_GRACE_MAX_S)
        };
        let previous_key_valid_until_s = (!revoke_old).then(|| now_s.saturating_add(grace_s));
        let api_key = keys::generate_api_key(credential_prefix(agent_id));
        recent.push(now_s);
        let mut record = AgentRecord::clone(&current);
        record.key_hash = self.secret.key_hash(&api_key);
        record.previous_key_hash = (!revoke_old).then_some(current.key_hash);
        record.previous_key_valid_until_s = previous_key_valid_until_s;
        record.rotations_s = recent;
        shard.insert(agent_id.to_owned(), Arc::new(record.clone()));
        drop(shard);
        tracing::info!(agent_id, grace_s, revoke_old, "agent key rotated");
        Ok(Rotated {
            rotations_in_last_24h: record.rotations_s.len() as u32,
            record,
            previous: AgentRecord::clone(&current),
            api_key,
            grace_seconds: grace_s as u32,
            previous_key_valid_until_s,
        })
    }

    /// Undoes `rotated` after persisting it failed, but only if the agent
    /// still holds exactly that rotation's key (a later rotation or operator
    /// change is never overwritten). Returns whether it rolled back.
    pub fn rollback_rotation(&self, rotated: &Rotated) -> bool {
        let agent_id = rotated.record.agent_id.as_str();
        let mut shard = self.write_shard(agent_id);
        let still_current = shard
            .get(agent_id)
            .is_some_and(|current| **current == rotated.record);
        if still_current {
            shard.insert(agent_id.to_owned(), Arc::new(rotated.previous.clone()));
        }
        still_current
    }

    /// Inserts or replaces a record (operator freeze/floor, rollback, load).
    pub fn put(&self, record: AgentRecord) {
        let mut names = self
            .names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let agent_id = record.agent_id.clone();
        let new_name_key = normalize_name(&record.name);
        let replaced = self
            .write_shard(&agent_id)
            .insert(agent_id.clone(), Arc::new(record));
        if let Some(old) = replaced {
            let old_name_key = normalize_name(&old.name);
            if old_name_key != new_name_key
                && names
                    .get(&old_name_key)
                    .is_some_and(|owner| *owner == agent_id)
            {
                names.remove(&old_name_key);
            }
        }
        names.insert(new_name_key, agent_id);
    }

    pub fn get(&self, agent_id: &str) -> Option<Arc<AgentRecord>> {
        self.read_shard(agent_id).get(agent_id).cloned()
    }

    pub fn contains(&self, agent_id: &str) -> bool {
        self.read_shard(agent_id).contains_key(agent_id)
    }

    /// Up to `limit` records with ids after `after`, sorted by id (operator
    /// pagination). Linear in the number of agents, no full sort.
    pub fn list(&self, after: Option<&str>, limit: usize) -> Vec<AgentRecord> {
        if limit == 0 {
            return Vec::new();
        }
        let mut candidates: Vec<Arc<AgentRecord>> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            candidates.extend(
                shard
                    .values()
                    .filter(|record| after.is_none_or(|after| record.agent_id.as_str() > after))
                    .cloned(),
            );
        }
        if candidates.len() > limit {
            candidates.select_nth_unstable_by(limit - 1, |a, b| a.agent_id.cmp(&b.agent_id));
            candidates.truncate(limit);
        }
        candidates.sort_unstable_by(|a, b| a.agent_id.cmp(&b.agent_id));
        candidates
            .into_iter()
            .map(|record| AgentRecord::clone(&record))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard_index(&self, agent_id: &str) -> usize {
        (self.hasher.hash_one(agent_id) as usize) % self.shards.len()
    }

    // Poisoning is ignored: every mutation is a single map insert/remove, so
    // a panicking holder cannot leave a shard half-updated.
    fn read_shard(&self, agent_id: &str) -> RwLockReadGuard<'_, Shard> {
        self.shards[self.shard_index(agent_id)]
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_shard(&self, agent_id: &str) -> RwLockWriteGuard<'_, Shard> {
        self.shards[self.shard_index(agent_id)]
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn frozen_error() -> JecpError {
    JecpError::new(
        ErrorCode::InvalidAgent,
        "This agent is frozen or revoked; contact the Hub operator.",
    )
}

fn invalid_credentials() -> JecpError {
    JecpError::new(ErrorCode::InvalidApiKey, INVALID_CREDENTIALS_MESSAGE)
}

/// The vendor prefix of an id this Hub issued (`jh` in `jh_ag_…`).
fn credential_prefix(agent_id: &str) -> &str {
    agent_id
        .split_once('_')
        .map_or(agent_id, |(prefix, _)| prefix)
}

/// Case-insensitive, whitespace-trimmed name key.
fn normalize_name(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Registration fields after trimming and validation.
struct ValidFields {
    name: String,
    agent_type: Option<String>,
    description: Option<String>,
    homepage: Option<String>,
    capabilities: Vec<String>,
    referred_by: Option<String>,
}

fn validate(request: &RegisterRequest) -> Result<ValidFields, RegisterError> {
    let name = request.name.trim();
    if name.is_empty() {
        return Err(RegisterError::Invalid("name is required".into()));
    }
    check_text("name", name, NAME_MAX_CHARS, false)?;
    let agent_type = optional_text(
        "agent_type",
        request.agent_type.as_deref(),
        AGENT_TYPE_MAX_CHARS,
        false,
    )?;
    let description = optional_text(
        "description",
        request.description.as_deref(),
        DESCRIPTION_MAX_CHARS,
        true,
    )?;
    let homepage = optional_text(
        "homepage",
        request.homepage.as_deref(),
        HOMEPAGE_MAX_CHARS,
        false,
    )?;
    if let Some(homepage) = &homepage {
        check_homepage(homepage)?;
    }
    let mut capabilities = Vec::new();
    if let Some(requested) = &request.capabilities {
        if requested.len() > CAPABILITIES_MAX_COUNT {
            return Err(RegisterError::Invalid(format!(
                "capabilities may list at most {CAPABILITIES_MAX_COUNT} entries"
            )));
        }
        for capability in requested {
            let capability = capability.trim();
            if capability.is_empty() {
                return Err(RegisterError::Invalid(
                    "capabilities entries must not be empty".into(),
                ));
            }
            check_text(
                "capabilities entries",
                capability,
                CAPABILITY_MAX_CHARS,
                false,
            )?;
            capabilities.push(capability.to_owned());
        }
    }
    let referred_by = optional_text(
        "referred_by",
        request.referred_by.as_deref(),
        PRESENTED_CREDENTIAL_MAX_BYTES,
        false,
    )?;
    if let Some(referrer) = &referred_by
        && !keys::is_agent_id_shaped(referrer)
    {
        return Err(RegisterError::Invalid(
            "referred_by must be an agent_id".into(),
        ));
    }
    Ok(ValidFields {
        name: name.to_owned(),
        agent_type,
        description,
        homepage,
        capabilities,
        referred_by,
    })
}

/// A trimmed optional field; blank counts as absent.
fn optional_text(
    field: &str,
    value: Option<&str>,
    max_chars: usize,
    allow_newlines: bool,
) -> Result<Option<String>, RegisterError> {
    match value.map(str::trim).filter(|text| !text.is_empty()) {
        None => Ok(None),
        Some(text) => {
            check_text(field, text, max_chars, allow_newlines)?;
            Ok(Some(text.to_owned()))
        }
    }
}

fn check_text(
    field: &str,
    text: &str,
    max_chars: usize,
    allow_newlines: bool,
) -> Result<(), RegisterError> {
    if text.chars().count() > max_chars {
        return Err(RegisterError::Invalid(format!(
            "{field} must be at most {max_chars} characters"
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !(allow_newlines && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(RegisterError::Invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

/// An absolute `http(s)://host…` URL without whitespace. The Hub never
/// fetches it (so no SSRF pipeline); it is shown to operators only.
fn check_homepage(homepage: &str) -> Result<(), RegisterError> {
    let lower = homepage.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    let host = rest
        .and_then(|rest| rest.split(['/', '?', '#']).next())
        .unwrap_or("");
    if host.is_empty() || homepage.chars().any(char::is_whitespace) {
        return Err(RegisterError::Invalid(
            "homepage must be an http:// or https:// URL".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> Directory {
        Directory::new(ServerSecret::from_bytes([3u8; 32]), Vec::new())
    }

    fn request(name: &str) -> RegisterRequest {
        RegisterRequest {
            name: name.into(),
            ..RegisterRequest::default()
        }
    }

    #[test]
    fn register_then_authenticate() {
        let directory = directory();
        let registered = directory
            .register(&request("  Alpha "), 7, "jh", 100)
            .unwrap();
        assert_eq!(registered.record.name, "Alpha");
        assert_eq!(registered.record.wallet_account, 7);
        assert_eq!(
            registered.record.key_hash,
            directory.secret.key_hash(&registered.api_key)
        );
        let record = directory
            .authenticate(&registered.record.agent_id, &registered.api_key, 100)
            .unwrap();
        assert_eq!(*record, registered.record);
        assert_eq!(directory.len(), 1);
        assert!(!format!("{registered:?}").contains(&registered.api_key));
    }

    #[test]
    fn names_are_unique_case_insensitively_and_freed_by_unregister() {
        let directory = directory();
        let first = directory.register(&request("Alpha"), 1, "jh", 0).unwrap();
        assert_eq!(
            directory.register(&request("ALPHA "), 2, "jh", 0),
            Err(RegisterError::NameTaken)
        );
        assert_eq!(RegisterError::NameTaken.http_status(), 409);
        directory.unregister(&first.record.agent_id);
        assert!(directory.get(&first.record.agent_id).is_none());
        assert!(directory.register(&request("alpha"), 2, "jh", 0).is_ok());
    }

    #[test]
    fn validation_rejects_bad_fields() {
        let directory = directory();
        let cases = [
            request("   "),
            request(&"x".repeat(NAME_MAX_CHARS + 1)),
            request("tab\tname"),
            RegisterRequest {
                description: Some("d".repeat(DESCRIPTION_MAX_CHARS + 1)),
                ..request("a")
            },
            RegisterRequest {
                homepage: Some("ftp://example.com".into()),
                ..request("b")
            },
            RegisterRequest {
                homepage: Some("https://".into()),
                ..request("c")
            },
            RegisterRequest {
                homepage: Some(format!("https://e.com/{}", "p".repeat(HOMEPAGE_MAX_CHARS))),
                ..request("d")
            },
            RegisterRequest {
                capabilities: Some(vec!["c".into(); CAPABILITIES_MAX_COUNT + 1]),
                ..request("e")
            },
            RegisterRequest {
                capabilities: Some(vec!["c".repeat(CAPABILITY_MAX_CHARS + 1)]),
                ..request("f")
            },
            RegisterRequest {
                referred_by: Some("not an id".into()),
                ..request("g")
            },
            RegisterRequest {
                referred_by: Some("jh_ag_0000000000000000000000".into()),
                ..request("h")
            },
        ];
        for case in cases {
            let error = directory.register(&case, 1, "jh", 0).unwrap_err();
            assert!(matches!(error, RegisterError::Invalid(_)), "{case:?}");
            assert_eq!(error.http_status(), 400);
        }
        assert!(directory.is_empty());
        let full = RegisterRequest {
            agent_type: Some("automation".into()),
            description: Some("line one\nline two".into()),
            homepage: Some("HTTPS://Example.com/about".into()),
            capabilities: Some(vec![" pdf ".into()]),
            ..request("Full")
        };
        let referrer = directory.register(&full, 1, "jh", 0).unwrap();
        assert_eq!(referrer.record.capabilities, vec!["pdf".to_string()]);
        let referred = RegisterRequest {
            referred_by: Some(referrer.record.agent_id.clone()),
            ..request("Referred")
        };
        assert_eq!(
            directory
                .register(&referred, 2, "jh", 0)
                .unwrap()
                .record
                .referred_by,
            Some(referrer.record.agent_id)
        );
    }

    #[test]
    fn frozen_agents_get_invalid_agent_after_the_key_check() {
        let directory = directory();
        let registered = directory.register(&request("Frozen"), 1, "jh", 0).unwrap();
        directory.put(AgentRecord {
            frozen: true,
            ..registered.record.clone()
        });
        let error = directory
            .authenticate(&registered.record.agent_id, &registered.api_key, 0)
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidAgent);
        let error = directory
            .authenticate(&registered.record.agent_id, "jh_ak_wrong", 0)
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidApiKey);
    }

    #[test]
    fn put_renames_and_list_paginates_in_id_order() {
        let directory = directory();
        let mut ids: Vec<String> = (0..25)
            .map(|i| {
                directory
                    .register(&request(&format!("agent {i}")), i, "jh", 0)
                    .unwrap()
                    .record
                    .agent_id
            })
            .collect();
        ids.sort();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = directory.list(after.as_deref(), 10);
            if page.is_empty() {
                break;
            }
            after = page.last().map(|record| record.agent_id.clone());
            seen.extend(page.into_iter().map(|record| record.agent_id));
        }
        assert_eq!(seen, ids);
        let original = AgentRecord::clone(&directory.get(&ids[0]).unwrap());
        directory.put(AgentRecord {
            name: "Renamed".into(),
            ..original.clone()
        });
        assert!(
            directory
                .register(&request(&original.name), 99, "jh", 0)
                .is_ok(),
            "old name is free"
        );
        assert_eq!(
            directory.register(&request("renamed"), 99, "jh", 0),
            Err(RegisterError::NameTaken)
        );
    }

    #[test]
    fn rotation_clamps_grace() {
        let directory = directory();
        let agent = directory
            .register(&request("Rot"), 1, "jh", 0)
            .unwrap()
            .record
            .agent_id;
        let short = directory
            .rotate(
                &agent,
                &RotateRequest {
                    grace_seconds: Some(-5),
                    revoke_old: None,
                },
                1_000,
            )
            .unwrap();
        assert_eq!(
            (short.grace_seconds, short.previous_key_valid_until_s),
            (60, Some(1_060))
        );
        assert!(short.api_key.starts_with("jh_ak_"));
        let long = directory
            .rotate(
                &agent,
                &RotateRequest {
                    grace_seconds: Some(i64::MAX),
                    revoke_old: None,
                },
                1_000,
            )
            .unwrap();
        assert_eq!(long.grace_seconds, 604_800);
        let default = directory
            .rotate(&agent, &RotateRequest::default(), 1_000)
            .unwrap();
        assert_eq!(default.grace_seconds, 3_600);
        assert_eq!(default.rotations_in_last_24h, 3);
        assert!(
            directory
                .rotate("jh_ag_unknown", &RotateRequest::default(), 0)
                .is_err()
        );
        let body = default.to_json();
        assert_eq!(body["agent_id"], agent.as_str());
        assert_eq!(body["api_key"], default.api_key.as_str());
        assert_eq!(body["grace_seconds"], 3_600);
        assert_eq!(body["previous_key_valid_until"], "1970-01-01T01:16:40Z");
        assert_eq!(body["revoke_old"], false);
        directory.put(AgentRecord {
            frozen: true,
            ..default.record.clone()
        });
        let error = directory
            .rotate(&agent, &RotateRequest::default(), 200_000)
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidAgent);
    }

    #[test]
    fn registration_body_has_the_sdk_fields() {
        let directory = directory();
        let registered = directory.register(&request("Body"), 1, "jh", 0).unwrap();
        let body = registered.to_json(100, json!({"invoke": "https://hub.example/v1/invoke"}));
        assert_eq!(body["agent_id"], registered.record.agent_id.as_str());
        assert_eq!(body["api_key"], registered.api_key.as_str());
        assert_eq!(body["name"], "Body");
        assert_eq!(body["free_calls_remaining"], 100);
        assert_eq!(body["endpoints"]["invoke"], "https://hub.example/v1/invoke");
    }
}
