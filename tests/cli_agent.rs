//! `jecp-hub agent ...` and `jecp-hub ledger ...` (issue 7, issue 3): the same
//! operator operations work on a stopped Hub's data directory in-process, and
//! through the operator API when a Hub holds the directory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const HUB: &str = env!("CARGO_BIN_EXE_jecp-hub");
const ADMIN_TOKEN: &str = "cli-test-admin-token-42";

fn cli(data_dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(HUB)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("JECP_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("jecp-hub runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data_dir: &std::path::Path) -> Server {
    let mut child = Command::new(HUB)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("JECP_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "info")
        .env("JECP_LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jecp-hub serve starts");
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on ").nth(1) {
                let _ = sender.send(addr.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let addr = receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("the Hub logs its address");
    Server { child, addr }
}

/// Registers an agent with a plain HTTP/1.1 request over std's TcpStream.
fn register(addr: &str, name: &str) -> String {
    use std::io::{Read, Write};
    let body = format!("{{\"name\":\"{name}\"}}");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the Hub");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /api/agents/register HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let json = response.split("\r\n\r\n").nth(1).expect("a body");
    let body: Value = serde_json::from_str(json).unwrap_or_else(|_| panic!("not JSON: {response}"));
    body["agent_id"].as_str().expect("an agent id").to_owned()
}

#[test]
fn agent_commands_work_offline_and_through_a_running_hub() {
    let dir = tempfile::tempdir().unwrap();

    // Online: a running Hub holds the directory; the CLI goes through its operator API.
    let server = serve(dir.path());
    let agent_id = register(&server.addr, "cli-agent");
    let url = format!("http://{}", server.addr);
    let (code, out, err) = cli(
        dir.path(),
        &[
            "agent",
            "credit",
            &agent_id,
            "2.5",
            "--reference",
            "wire-1",
            "--url",
            &url,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let credited: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(credited["credited"], true);
    assert_eq!(credited["balance_usdc"], serde_json::json!(2.5));
    let (code, out, _) = cli(dir.path(), &["agent", "freeze", &agent_id, "--url", &url]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["frozen"], true);
    drop(server);

    // Offline: the directory is free; the CLI opens it in-process.
    let (code, out, err) = cli(dir.path(), &["agent", "show", &agent_id]);
    assert_eq!(code, 0, "{out}{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        shown["frozen"], true,
        "the freeze made through the server was durable"
    );
    assert_eq!(shown["balance_usdc"], serde_json::json!(2.5));
    let (code, out, _) = cli(
        dir.path(),
        &["agent", "credit", &agent_id, "2.5", "--reference", "wire-1"],
    );
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["credited"],
        false,
        "same reference, no second credit"
    );
    let (code, out, _) = cli(
        dir.path(),
        &[
            "agent",
            "set",
            &agent_id,
            "--tier-floor",
            "silver",
            "--rate-limit-rpm",
            "77",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let set: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(set["tier"], "silver");
    assert_eq!(set["rate_limit_rpm"], 77);
    let (code, out, _) = cli(dir.path(), &["agent", "list"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["total"], 1);
    let (code, _, _) = cli(dir.path(), &["agent", "show", "hub_ag_missing"]);
    assert_eq!(code, 1, "an unknown agent is a failed command");

    // The ledger tools on the same directory.
    let output = Command::new(HUB)
        .args(["ledger", "verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("OK"), "{report}");
    let output = Command::new(HUB)
        .args(["ledger", "export", "--format", "csv", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let csv = String::from_utf8_lossy(&output.stdout);
    assert_eq!(csv.lines().count(), 2, "a header and the one credit: {csv}");
}
