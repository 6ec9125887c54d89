//! `jecp-hub agent ...`: the operator API from the command line.
//!
//! Every subcommand is one operator API request. When no Hub holds the data
//! directory, the request is served in-process by a Hub opened on it (so the
//! rules are exactly the server's); when a running Hub holds it (the store
//! file is locked), the request goes to that Hub over HTTP with the admin
//! token from `--admin-token` or `JECP_ADMIN_TOKEN`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method};
use serde_json::{Value, json};

use jecp_hub::config::{Config, ServeFlags};
use jecp_hub::http::{App, Request};
use jecp_hub::hub::Hub;

/// How long the CLI waits for a running Hub's answer.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: AgentCommand,
    /// TOML configuration file of the Hub (for its data directory and URL).
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    /// Data directory [default: ./jecp-data].
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Base URL of the running Hub [default: the configured public_url].
    #[arg(long, value_name = "URL", global = true)]
    url: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum AgentCommand {
    /// List agents, sorted by id.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Continue after this agent id (the previous page's next_cursor).
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one agent: tier, total calls, free calls left, balance.
    Show { agent_id: String },
    /// Credit an agent's wallet; the same reference credits at most once.
    Credit {
        agent_id: String,
        /// Amount in USDC, e.g. 20 or 0.50.
        amount_usdc: String,
        /// External reference (invoice number, bank transfer id, ...).
        #[arg(long)]
        reference: String,
    },
    /// Freeze an agent: its keys stop working until unfrozen.
    Freeze { agent_id: String },
    /// Unfreeze an agent.
    Unfreeze { agent_id: String },
    /// Set an agent's tier floor and per-agent rate limit.
    Set {
        agent_id: String,
        /// bronze, silver, gold, platinum, or none to clear.
        #[arg(long)]
        tier_floor: Option<String>,
        /// Requests per minute, or none to clear.
        #[arg(long)]
        rate_limit_rpm: Option<String>,
    },
}

/// One operator API request.
struct Call {
    method: Method,
    path: String,
    query: Option<String>,
    body: Value,
}

fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl AgentCommand {
    fn to_call(&self) -> Result<Call, String> {
        let agent_path = |id: &str| format!("/v1/operator/agents/{}", encode_segment(id));
        Ok(match self {
            AgentCommand::List { limit, after } => Call {
                method: Method::GET,
                path: "/v1/operator/agents".into(),
                query: Some(match after {
                    Some(after) => format!("limit={limit}&after={}", encode_segment(after)),
                    None => format!("limit={limit}"),
                }),
                body: Value::Null,
            },
            AgentCommand::Show { agent_id } => Call {
                method: Method::GET,
                path: agent_path(agent_id),
                query: None,
                body: Value::Null,
            },
            AgentCommand::Credit {
                agent_id,
                amount_usdc,
                reference,
            } => Call {
                method: Method::POST,
                path: format!("{}/credit", agent_path(agent_id)),
                query: None,
                body: json!({"amount_usdc": amount_usdc, "reference": reference}),
            },
            AgentCommand::Freeze { agent_id } | AgentCommand::Unfreeze { agent_id } => Call {
                method: Method::PATCH,
                path: agent_path(agent_id),
                query: None,
                body: json!({"frozen": matches!(self, AgentCommand::Freeze { .. })}),
            },
            AgentCommand::Set {
                agent_id,
                tier_floor,
                rate_limit_rpm,
            } => {
                let mut patch = serde_json::Map::new();
                if let Some(floor) = tier_floor {
                    patch.insert(
                        "tier_floor".into(),
                        if floor == "none" {
                            Value::Null
                        } else {
                            json!(floor)
                        },
                    );
                }
                if let Some(rpm) = rate_limit_rpm {
                    let value = if rpm == "none" {
                        Value::Null
                    } else {
                        json!(rpm.parse::<u32>().map_err(|_| format!(
                            "--rate-limit-rpm {rpm:?} is not a number or none"
                        ))?)
                    };
                    patch.insert("rate_limit_rpm".into(), value);
                }
                if patch.is_empty() {
                    return Err("nothing to set: give --tier-floor and/or --rate-limit-rpm".into());
                }
                Call {
                    method: Method::PATCH,
                    path: agent_path(agent_id),
                    query: None,
                    body: Value::Object(patch),
                }
            }
        })
    }
}

pub fn run(args: AgentArgs) -> ExitCode {
    let call = match args.command.to_call() {
        Ok(call) => call,
        Err(message) => {
            eprintln!("jecp-hub agent: {message}");
            return ExitCode::from(2);
        }
    };
    let flags = ServeFlags {
        config: args.config.clone(),
        data_dir: args.data_dir.clone(),
        ..ServeFlags::default()
    };
    let config = match Config::from_process(&flags) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("jecp-hub agent: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("jecp-hub agent: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(config, args.url, call)) {
        Ok((status, body)) => {
            println!("{}", String::from_utf8_lossy(&body));
            if (200..300).contains(&status) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(message) => {
            eprintln!("jecp-hub agent: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(
    mut config: Config,
    url: Option<String>,
    call: Call,
) -> Result<(u16, Bytes), String> {
    let remote_token = config.admin_token.clone();
    let remote_base = url.unwrap_or_else(|| config.public_url.clone());
    // In-process: a one-off token only this invocation knows.
    let local_token = jecp_hub::auth::generate_api_key("cli");
    config.admin_token = Some(local_token.clone());
    match Hub::open(config) {
        Ok(hub) => {
            let result = local(hub.clone(), &local_token, call).await;
            hub.shutdown().await;
            Ok(result)
        }
        Err(error) if error.locked => {
            let token = remote_token.ok_or_else(|| {
                "a running Hub holds the data directory; set JECP_ADMIN_TOKEN (or admin_token in the config) \
                 to use its operator API"
                    .to_owned()
            })?;
            remote(&remote_base, &token, call).await
        }
        Err(error) => Err(error.to_string()),
    }
}

async fn local(hub: Arc<Hub>, token: &str, call: Call) -> (u16, Bytes) {
    let app = App::for_hub(hub);
    let mut headers = HeaderMap::new();
    if let Ok(value) = format!("Bearer {token}").parse() {
        headers.insert(hyper::header::AUTHORIZATION, value);
    }
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    let body = if call.body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(call.body.to_string())
    };
    let request = Request {
        method: call.method,
        path: call.path,
        query: call.query,
        headers,
        body,
        remote: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let response = app.handle(request).await;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    (status, body)
}

async fn remote(base: &str, token: &str, call: Call) -> Result<(u16, Bytes), String> {
    let client = jecp_hub::funding::https::build_client(5_000)?;
    let mut uri = format!("{}{}", base.trim_end_matches('/'), call.path);
    if let Some(query) = &call.query {
        uri = format!("{uri}?{query}");
    }
    let body = if call.body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(call.body.to_string())
    };
    let request = hyper::Request::builder()
        .method(call.method)
        .uri(&uri)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|error| format!("cannot build the request to {uri}: {error}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|error| format!("cannot reach {base}: {error}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("reading the answer from {base}: {error}"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(REMOTE_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{base} did not answer in time"))?
}
