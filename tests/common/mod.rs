//! Shared harness for integration tests: a real Hub on `127.0.0.1:0` with a
//! temporary data directory, and a small HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use jecp_hub::config::Config;
use jecp_hub::hub::Hub;
use jecp_hub::ledger::AccountId;
use jecp_hub::money::Micros;
use jecp_hub::runtime::Running;
use jecp_hub::store::{Command, Reply};

pub struct TestHub {
    pub running: Running,
    pub client: Client<HttpConnector, Full<Bytes>>,
    pub dir: tempfile::TempDir,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "body is not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    }

    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    }
}

/// JSON content type plus an agent's credentials, as the SDK sends them.
/// Opens `wallet` for `agent` and credits it `amount` under `reference`,
/// through the store's writer: the starting point of the store-level tests.
pub async fn open_funded_wallet(
    store: &jecp_hub::store::Store,
    wallet: AccountId,
    agent: jecp_hub::records::AgentRecord,
    amount: Micros,
    reference: &str,
) {
    store
        .execute(Command::OpenWallet {
            account: wallet,
            agent,
        })
        .await
        .unwrap();
    store
        .execute(Command::Credit {
            wallet,
            amount,
            reference: reference.into(),
        })
        .await
        .unwrap();
}

pub fn agent_headers(agent: &(String, String)) -> Vec<(&str, &str)> {
    vec![
        ("content-type", "application/json"),
        ("x-agent-id", agent.0.as_str()),
        ("x-api-key", agent.1.as_str()),
    ]
}

/// A test configuration: loopback, port 0, a temp data dir.
pub fn test_config(dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        public_url: "http://127.0.0.1".into(),
        ..Config::default()
    }
}

impl TestHub {
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestHub {
        TestHub::start_with(tweak, jecp_hub::hub::HubSeams::default()).await
    }

    /// [`TestHub::start`] with test seams under the Hub.
    pub async fn start_with(
        tweak: impl FnOnce(&mut Config),
        seams: jecp_hub::hub::HubSeams,
    ) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let running = Running::start_with(config, seams)
            .await
            .expect("hub starts");
        let client = Client::builder(TokioExecutor::new()).build_http();
        TestHub {
            running,
            client,
            dir,
        }
    }

    /// Stops the Hub (final durable commit) and starts a new one on the same
    /// data directory, as a restart of the process would.
    pub async fn restart(self, tweak: impl FnOnce(&mut Config)) -> TestHub {
        self.restart_with(tweak, jecp_hub::hub::HubSeams::default())
            .await
    }

    /// [`TestHub::restart`] with test seams under the new Hub.
    pub async fn restart_with(
        self,
        tweak: impl FnOnce(&mut Config),
        seams: jecp_hub::hub::HubSeams,
    ) -> TestHub {
        let TestHub {
            running,
            client,
            dir,
        } = self;
        running.stop().await.expect("clean stop");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let running = Running::start_with(config, seams)
            .await
            .expect("hub restarts");
        TestHub {
            running,
            client,
            dir,
        }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.running.hub
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        let mut builder =
            Request::builder()
                .method(method)
                .uri(format!("http://{}{}", self.addr(), path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = self
            .client
            .request(request)
            .await
            .expect("request completes");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Response {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        self.request(Method::POST, path, headers, body).await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request(Method::GET, path, headers, "").await
    }

    /// Registers an agent over HTTP; returns (agent_id, api_key).
    pub async fn register(&self, name: &str) -> (String, String) {
        let body = serde_json::json!({"name": name, "agent_type": "test"}).to_string();
        let response = self
            .post(
                "/api/agents/register",
                &[("content-type", "application/json")],
                &body,
            )
            .await;
        assert_eq!(
            response.status,
            201,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        let json = response.json();
        (
            json["agent_id"].as_str().unwrap().to_owned(),
            json["api_key"].as_str().unwrap().to_owned(),
        )
    }

    /// Credits a wallet directly through the store (the operator path).
    pub async fn credit(&self, agent_id: &str, amount: Micros) {
        let agent = self.hub().directory.get(agent_id).expect("agent exists");
        let reference = format!("test:{agent_id}:{}", uuid::Uuid::now_v7());
        let reply = self
            .hub()
            .store
            .execute(Command::Credit {
                wallet: AccountId(agent.wallet_account),
                amount,
                reference,
            })
            .await
            .expect("credit commits");
        assert!(matches!(reply, Reply::Credited(_)));
    }

    pub fn available(&self, agent_id: &str) -> Micros {
        let agent = self.hub().directory.get(agent_id).unwrap();
        self.hub()
            .store
            .read_ledger(|ledger| ledger.available(AccountId(agent.wallet_account)).unwrap())
    }

    pub fn ledger_violations(&self) -> usize {
        self.hub().store.read_ledger(|ledger| ledger.verify().len())
    }

    pub async fn invoke(
        &self,
        agent: &(String, String),
        id: &str,
        capability: &str,
        action: &str,
        input: Value,
    ) -> Response {
        let body = serde_json::json!({"jecp": "1.0", "id": id, "capability": capability, "action": action, "input": input});
        self.post("/v1/invoke", &agent_headers(agent), &body.to_string())
            .await
    }
}
