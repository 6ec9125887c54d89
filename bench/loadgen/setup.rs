//! Preparing a Hub for a run: reading its durability mode from `/health`,
//! registering agents, funding them and lifting their rate limits through the
//! operator API, and answering one id per agent for `invoke-replay`.

use std::sync::Arc;

use bytes::Bytes;
use hyper::Method;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::client::{Answer, HttpClient};
use crate::scenario::{Agent, echo_body};

/// Setup requests in flight at once (setup is not measured; this only keeps
/// it quick without flooding the writer queue).
const SETUP_PARALLELISM: usize = 16;
/// Each agent's funding: 1,000,000 echo calls at $0.001. With the default 64
/// agents that is 64M billed calls; `BENCH_ROUNDS=20 bench/run.sh` makes ~7M
/// per durability mode (echo and mixed), which drained the 100,000 per agent
/// this used to be and turned the last rounds' calls into 402s.
pub const FUNDING_USDC: &str = "1000";
/// Per-agent limit set through the operator API (the Hub's maximum), so the
/// tier limits (10-500 rpm) do not cap a benchmark.
pub const RATE_LIMIT_RPM: u32 = 1_000_000;

fn describe(answer: &Answer) -> String {
    let body = String::from_utf8_lossy(&answer.body);
    let body: String = body.chars().take(300).collect();
    format!("HTTP {}: {body}", answer.status)
}

fn json_of(answer: &Answer) -> Result<Value, String> {
    serde_json::from_slice(&answer.body)
        .map_err(|error| format!("response is not JSON ({error}): {}", describe(answer)))
}

/// The `durability` field of `/health` (`immediate` or `batched(5ms)`).
pub async fn hub_durability(client: &HttpClient) -> Result<String, String> {
    let answer = client
        .send_raw(Method::GET, "/health", &[], Bytes::new())
        .await
        .map_err(|error| format!("GET /health: {error}"))?;
    if answer.status != 200 {
        return Err(format!("GET /health: {}", describe(&answer)));
    }
    Ok(json_of(&answer)?
        .get("durability")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned())
}

async fn register(client: &HttpClient, name: &str) -> Result<Agent, String> {
    let body = serde_json::json!({"name": name, "agent_type": "benchmark"}).to_string();
    let answer = client
        .send_raw(
            Method::POST,
            "/api/agents/register",
            &[("content-type", "application/json")],
            Bytes::from(body),
        )
        .await
        .map_err(|error| format!("register: {error}"))?;
    if answer.status != 201 {
        return Err(format!("register: {}", describe(&answer)));
    }
    let value = json_of(&answer)?;
    let field = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("register: no {key} in the response"))
    };
    Ok(Agent {
        agent_id: field("agent_id")?,
        api_key: field("api_key")?,
    })
}

async fn operator_call(
    client: &HttpClient,
    method: Method,
    path: &str,
    admin_token: &str,
    body: Value,
) -> Result<(), String> {
    let authorization = format!("Bearer {admin_token}");
    let answer = client
        .send_raw(
            method.clone(),
            path,
            &[
                ("authorization", &authorization),
                ("content-type", "application/json"),
            ],
            Bytes::from(body.to_string()),
        )
        .await
        .map_err(|error| format!("{method} {path}: {error}"))?;
    if !(200..300).contains(&answer.status) {
        return Err(format!("{method} {path}: {}", describe(&answer)));
    }
    Ok(())
}

/// Registers, funds and un-limits one agent.
async fn prepare_agent(
    client: &HttpClient,
    admin_token: &str,
    run_tag: &str,
    index: u32,
) -> Result<Agent, String> {
    let agent = register(client, &format!("bench {run_tag} {index}")).await?;
    let agent_path = format!("/v1/operator/agents/{}", agent.agent_id);
    operator_call(
        client,
        Method::POST,
        &format!("{agent_path}/credit"),
        admin_token,
        serde_json::json!({
            "amount_usdc": FUNDING_USDC,
            "reference": format!("bench-{run_tag}-{index}"),
        }),
    )
    .await?;
    operator_call(
        client,
        Method::PATCH,
        &agent_path,
        admin_token,
        serde_json::json!({ "rate_limit_rpm": RATE_LIMIT_RPM }),
    )
    .await?;
    Ok(agent)
}

/// Sets up `count` funded agents, [`SETUP_PARALLELISM`] at a time.
pub async fn prepare_agents(
    client: &HttpClient,
    admin_token: &str,
    run_tag: &str,
    count: u32,
) -> Result<Vec<Agent>, String> {
    let gate = Arc::new(Semaphore::new(SETUP_PARALLELISM));
    let tasks: Vec<_> = (0..count)
        .map(|index| {
            let client = client.clone();
            let admin_token = admin_token.to_owned();
            let run_tag = run_tag.to_owned();
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                prepare_agent(&client, &admin_token, &run_tag, index).await
            })
        })
        .collect();
    let mut agents = Vec::with_capacity(count as usize);
    for task in tasks {
        agents.push(task.await.map_err(|error| error.to_string())??);
    }
    Ok(agents)
}

/// Answers one id per agent so `invoke-replay` finds them stored; returns
/// the ids in agent order.
pub async fn prime_replays(
    client: &HttpClient,
    agents: &[Agent],
    run_tag: &str,
) -> Result<Vec<String>, String> {
    let mut ids = Vec::with_capacity(agents.len());
    for (index, agent) in agents.iter().enumerate() {
        let id = format!("r{run_tag}-{index}");
        let answer = client
            .send_raw(
                Method::POST,
                "/v1/invoke",
                &[
                    ("content-type", "application/json"),
                    ("x-agent-id", &agent.agent_id),
                    ("x-api-key", &agent.api_key),
                ],
                echo_body(&id),
            )
            .await
            .map_err(|error| format!("priming replay id {id}: {error}"))?;
        if answer.status != 200 {
            return Err(format!("priming replay id {id}: {}", describe(&answer)));
        }
        ids.push(id);
    }
    Ok(ids)
}
