//! The scenarios and the request each one sends for a given sequence number.
//! Requests are built from the sequence number alone, so any worker can build
//! any request and ids never collide within a run.

use std::sync::Arc;

use bytes::Bytes;
use clap::ValueEnum;
use hyper::header::HeaderValue;
use serde::{Deserialize, Serialize};

/// One out of this many `invoke-mixed` requests is invalid (10%).
pub const MIXED_INVALID_EVERY: u64 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioName {
    /// `GET /health`: the server's baseline cost per request.
    Health,
    /// Billed `POST /v1/invoke` of `utility/echo`, each with a fresh id.
    InvokeEcho,
    /// `POST /v1/invoke` repeating an answered id: idempotent replays, no charge.
    InvokeReplay,
    /// Echo invokes with 10% invalid requests of several kinds.
    InvokeMixed,
    /// `POST /api/agents/register`: agent creation.
    Register,
}

impl ScenarioName {
    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioName::Health => "health",
            ScenarioName::InvokeEcho => "invoke-echo",
            ScenarioName::InvokeReplay => "invoke-replay",
            ScenarioName::InvokeMixed => "invoke-mixed",
            ScenarioName::Register => "register",
        }
    }

    /// Whether the scenario needs funded agents set up first.
    pub fn needs_agents(self) -> bool {
        matches!(
            self,
            ScenarioName::InvokeEcho | ScenarioName::InvokeReplay | ScenarioName::InvokeMixed
        )
    }
}

/// Credentials of one agent set up for the run.
#[derive(Clone, Debug)]
pub struct Agent {
    pub agent_id: String,
    pub api_key: String,
}

/// What a response must look like to count as the scenario intended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A 2xx answer.
    Success,
    /// A 4xx refusal (the invalid requests of `invoke-mixed`).
    Refusal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// One request, ready to send.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedRequest {
    pub method: Method,
    pub path: &'static str,
    pub content_type: Option<&'static str>,
    /// `(X-Agent-ID, X-API-Key)`, ready to send: built once per agent, a
    /// clone per request shares the bytes.
    pub credentials: Option<(HeaderValue, HeaderValue)>,
    pub body: Bytes,
    pub expect: Expect,
}

/// The kinds of invalid request `invoke-mixed` cycles through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidKind {
    MalformedJson,
    UnknownCapability,
    UnknownAction,
    BadRequestId,
    SchemaViolation,
    UnknownAgent,
    WrongContentType,
}

impl InvalidKind {
    pub const ALL: [InvalidKind; 7] = [
        InvalidKind::MalformedJson,
        InvalidKind::UnknownCapability,
        InvalidKind::UnknownAction,
        InvalidKind::BadRequestId,
        InvalidKind::SchemaViolation,
        InvalidKind::UnknownAgent,
        InvalidKind::WrongContentType,
    ];
}

/// The body `invoke-replay` sends for its per-agent id; the setup call and
/// every replay use exactly these bytes.
pub fn echo_body(request_id: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"jecp":"1.0","id":"{request_id}","capability":"utility","action":"echo","input":{{"text":"hi"}}}}"#
    ))
}

/// Builds the request for a sequence number.
#[derive(Clone, Debug)]
pub struct RequestFactory {
    scenario: ScenarioName,
    /// Each agent's credentials as header values, requests spread over them.
    credentials: Arc<Vec<(HeaderValue, HeaderValue)>>,
    /// Per-agent id already answered (for `invoke-replay`).
    replay_ids: Arc<Vec<String>>,
    /// Distinguishes this run's ids and names from earlier runs on the same Hub.
    run_tag: String,
}

impl RequestFactory {
    pub fn new(
        scenario: ScenarioName,
        agents: Arc<Vec<Agent>>,
        replay_ids: Arc<Vec<String>>,
        run_tag: String,
    ) -> RequestFactory {
        // Agent ids and keys are visible ASCII (the Hub issues them); one
        // that were not would fail every request the same way, visibly.
        let header = |text: &str| {
            HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
        };
        let credentials = agents
            .iter()
            .map(|agent| (header(&agent.agent_id), header(&agent.api_key)))
            .collect();
        RequestFactory {
            scenario,
            credentials: Arc::new(credentials),
            replay_ids,
            run_tag,
        }
    }

    fn credentials(&self, sequence: u64) -> Option<(HeaderValue, HeaderValue)> {
        if self.credentials.is_empty() {
            return None;
        }
        Some(self.credentials[(sequence % self.credentials.len() as u64) as usize].clone())
    }

    fn invoke(&self, sequence: u64, body: Bytes, expect: Expect) -> PlannedRequest {
        PlannedRequest {
            method: Method::Post,
            path: "/v1/invoke",
            content_type: Some("application/json"),
            credentials: self.credentials(sequence),
            body,
            expect,
        }
    }

    pub fn request(&self, sequence: u64) -> PlannedRequest {
        match self.scenario {
            ScenarioName::Health => PlannedRequest {
                method: Method::Get,
                path: "/health",
                content_type: None,
                credentials: None,
                body: Bytes::new(),
                expect: Expect::Success,
            },
            ScenarioName::InvokeEcho => {
                let id = format!("e{}-{sequence}", self.run_tag);
                self.invoke(sequence, echo_body(&id), Expect::Success)
            }
            ScenarioName::InvokeReplay => {
                let index = (sequence % self.replay_ids.len().max(1) as u64) as usize;
                let id = self
                    .replay_ids
                    .get(index)
                    .map(String::as_str)
                    .unwrap_or("missing-replay-id");
                self.invoke(sequence, echo_body(id), Expect::Success)
            }
            ScenarioName::InvokeMixed => {
                if sequence % MIXED_INVALID_EVERY == MIXED_INVALID_EVERY - 1 {
                    let kind_index = (sequence / MIXED_INVALID_EVERY) as usize;
                    let kind = InvalidKind::ALL[kind_index % InvalidKind::ALL.len()];
                    self.invalid(sequence, kind)
                } else {
                    let id = format!("m{}-{sequence}", self.run_tag);
                    self.invoke(sequence, echo_body(&id), Expect::Success)
                }
            }
            ScenarioName::Register => PlannedRequest {
                method: Method::Post,
                path: "/api/agents/register",
                content_type: Some("application/json"),
                credentials: None,
                body: Bytes::from(format!(
                    r#"{{"name":"bench {}-{sequence}","agent_type":"benchmark"}}"#,
                    self.run_tag
                )),
                expect: Expect::Success,
            },
        }
    }

    fn invalid(&self, sequence: u64, kind: InvalidKind) -> PlannedRequest {
        let id = format!("x{}-{sequence}", self.run_tag);
        let body = |capability: &str, action: &str, input: &str| {
            Bytes::from(format!(
                r#"{{"jecp":"1.0","id":"{id}","capability":"{capability}","action":"{action}","input":{input}}}"#
            ))
        };
        let mut request = match kind {
            InvalidKind::MalformedJson => self.invoke(
                sequence,
                Bytes::from(format!(r#"{{"jecp":"1.0","id":"{id}","capability":"#)),
                Expect::Refusal,
            ),
            InvalidKind::UnknownCapability => self.invoke(
                sequence,
                body("no-such-capability", "echo", "{}"),
                Expect::Refusal,
            ),
            InvalidKind::UnknownAction => self.invoke(
                sequence,
                body("utility", "no_such_action", "{}"),
                Expect::Refusal,
            ),
            InvalidKind::BadRequestId => self.invoke(
                sequence,
                Bytes::from_static(
                    br#"{"jecp":"1.0","id":"x!","capability":"utility","action":"echo","input":{}}"#,
                ),
                Expect::Refusal,
            ),
            InvalidKind::SchemaViolation => self.invoke(
                sequence,
                body("utility", "hash", r#"{"unexpected":true}"#),
                Expect::Refusal,
            ),
            InvalidKind::UnknownAgent => self.invoke(
                sequence,
                body("utility", "echo", "{}"),
                Expect::Refusal,
            ),
            InvalidKind::WrongContentType => self.invoke(
                sequence,
                body("utility", "echo", "{}"),
                Expect::Refusal,
            ),
        };
        match kind {
            InvalidKind::UnknownAgent => {
                if let Some((_, key)) = request.credentials.take() {
                    request.credentials =
                        Some((HeaderValue::from_static("no_such_agent_0000000000"), key));
                }
            }
            InvalidKind::WrongContentType => request.content_type = Some("text/plain"),
            _ => {}
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factory(scenario: ScenarioName) -> RequestFactory {
        let agents = (0..3)
            .map(|i| Agent {
                agent_id: format!("agent{i}"),
                api_key: format!("key{i}"),
            })
            .collect();
        let replay_ids = (0..3).map(|i| format!("replay-{i}")).collect();
        RequestFactory::new(
            scenario,
            Arc::new(agents),
            Arc::new(replay_ids),
            "t1".into(),
        )
    }

    fn json_of(request: &PlannedRequest) -> serde_json::Value {
        serde_json::from_slice(&request.body).expect("valid JSON body")
    }

    #[test]
    fn echo_ids_are_unique_valid_and_spread_over_agents() {
        let factory = factory(ScenarioName::InvokeEcho);
        let first = factory.request(0);
        let second = factory.request(1);
        assert_eq!(json_of(&first)["id"], "et1-0");
        assert_eq!(json_of(&second)["id"], "et1-1");
        assert_eq!(first.credentials.unwrap().0, "agent0");
        assert_eq!(second.credentials.unwrap().0, "agent1");
        assert_eq!(factory.request(3).credentials.unwrap().0, "agent0");
        let long = json_of(&factory.request(u64::MAX))["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(long.len() <= 64, "{long}");
    }

    #[test]
    fn replay_repeats_the_same_body_per_agent() {
        let factory = factory(ScenarioName::InvokeReplay);
        assert_eq!(factory.request(1).body, factory.request(4).body);
        assert_eq!(factory.request(1).body, echo_body("replay-1"));
        assert_ne!(factory.request(1).body, factory.request(2).body);
    }

    #[test]
    fn mixed_sends_one_invalid_request_in_ten_cycling_kinds() {
        let factory = factory(ScenarioName::InvokeMixed);
        let requests: Vec<_> = (0..700).map(|n| factory.request(n)).collect();
        let refusals = requests
            .iter()
            .filter(|r| r.expect == Expect::Refusal)
            .count();
        assert_eq!(refusals, 70);
        let malformed = requests
            .iter()
            .filter(|r| serde_json::from_slice::<serde_json::Value>(&r.body).is_err())
            .count();
        assert_eq!(malformed, 10);
        let text_plain = requests
            .iter()
            .filter(|r| r.content_type == Some("text/plain"))
            .count();
        assert_eq!(text_plain, 10);
        let unknown_agent = requests
            .iter()
            .filter(|r| {
                r.credentials
                    .as_ref()
                    .is_some_and(|(id, _)| id.as_bytes().starts_with(b"no_such"))
            })
            .count();
        assert_eq!(unknown_agent, 10);
        assert_eq!(requests[9].expect, Expect::Refusal);
        assert_eq!(requests[8].expect, Expect::Success);
    }

    #[test]
    fn health_and_register_need_no_credentials() {
        let health = factory(ScenarioName::Health).request(5);
        assert_eq!(health.method, Method::Get);
        assert!(health.credentials.is_none() && health.body.is_empty());
        let register = factory(ScenarioName::Register).request(5);
        assert_eq!(json_of(&register)["name"], "bench t1-5");
        assert!(register.credentials.is_none());
        assert!(!ScenarioName::Register.needs_agents());
        assert!(ScenarioName::InvokeMixed.needs_agents());
    }
}
