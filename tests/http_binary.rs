//! The built `jecp-hub` binary: zero-config `serve` on port 0 answers `/health`, exits 0 on
//! SIGTERM, rejects bad configuration naming the key, and documents every flag in `--help`.

mod http_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_jecp-hub");
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Kills the child if a test fails before it exits on its own.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads stderr until the "listening on ADDR" line; keeps collecting the rest in the background.
fn wait_for_listen_line(child: &mut Child) -> (SocketAddr, mpsc::Receiver<String>) {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = lines_rx
            .recv_timeout(START_TIMEOUT)
            .expect("the binary logs its listen address");
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .expect("a socket address");
            return (addr, lines_rx);
        }
    }
}

fn send_sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the binary did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn serve_answers_health_and_exits_0_on_sigterm() {
    let workdir = tempfile::tempdir().unwrap();
    let data_dir = workdir.path().join("data");
    let child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env_remove("RUST_LOG")
        .current_dir(workdir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jecp-hub");
    let mut guard = ChildGuard(Some(child));
    let child = guard.0.as_mut().unwrap();
    let (addr, logs) = wait_for_listen_line(child);
    assert!(data_dir.is_dir(), "serve creates the data directory");

    let response = http_support::get(addr, "/health", &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["status"], "ok");
    let guide = http_support::get(addr, "/.well-known/agent-guide.json", &[])
        .await
        .json();
    assert_eq!(
        guide["hub_url"],
        format!("http://{addr}"),
        "the default public URL follows the bound port"
    );

    send_sigterm(child);
    let status = wait_with_timeout(child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "SIGTERM must exit 0");
    guard.0 = None;
    let rest: Vec<String> = logs.try_iter().collect();
    assert!(
        rest.iter().any(|line| line.contains("SIGTERM received")),
        "{rest:#?}"
    );
}

#[test]
fn invalid_configuration_fails_at_start_naming_the_key() {
    let workdir = tempfile::tempdir().unwrap();
    let output = Command::new(BINARY)
        .args([
            "serve",
            "--vendor-prefix",
            "Hub1",
            "--listen",
            "127.0.0.1:0",
        ])
        .current_dir(workdir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run jecp-hub");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(r#"invalid config: vendor_prefix "Hub1" must be 2-8 lowercase letters"#),
        "{stderr}"
    );
    assert!(
        !workdir.path().join("jecp-data").exists(),
        "nothing is created when the config is invalid"
    );

    let config_file = workdir.path().join("hub.toml");
    std::fs::write(
        &config_file,
        "listen = \"127.0.0.1:0\"\nlisten_adress = \"typo\"\n",
    )
    .unwrap();
    let output = Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(&config_file)
        .current_dir(workdir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run jecp-hub");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listen_adress"), "{stderr}");

    let output = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("JECP_MAX_CONNECTIONS", "lots")
        .current_dir(workdir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run jecp-hub");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("max_connections (JECP_MAX_CONNECTIONS)"),
        "{stderr}"
    );
}

#[test]
fn help_documents_every_option() {
    let output = Command::new(BINARY)
        .args(["serve", "--help"])
        .output()
        .expect("run jecp-hub");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    let flags = [
        "--config",
        "--listen",
        "--data-dir",
        "--public-url",
        "--vendor-prefix",
        "--hub-namespace",
        "--hub-name",
        "--operator-name",
        "--support-contact",
        "--durability",
        "--fsync-interval-ms",
        "--log-format",
        "--max-connections",
        "--header-read-timeout-ms",
        "--body-read-timeout-ms",
        "--shutdown-grace-ms",
        "--max-body-bytes",
        "--free-calls-per-agent",
        "--registration-per-minute-per-ip",
        "--tier-rpm-bronze",
        "--tier-rpm-silver",
        "--tier-rpm-gold",
        "--tier-rpm-platinum",
        "--allowed-topup-usd",
        "--admin-token",
        "--idempotency-ttl-s",
        "--writer-queue-capacity",
    ];
    for flag in flags {
        assert!(
            help.contains(flag),
            "{flag} is missing from --help:\n{help}"
        );
        let env_name = format!(
            "JECP_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_ascii_uppercase()
        );
        if flag != "--config" {
            assert!(
                help.contains(&env_name),
                "{env_name} is not documented in --help"
            );
        }
    }
}

#[tokio::test]
async fn sigterm_during_a_request_lets_it_complete() {
    use tokio::io::AsyncWriteExt;
    let workdir = tempfile::tempdir().unwrap();
    let child = Command::new(BINARY)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--body-read-timeout-ms",
            "10000",
            "--data-dir",
        ])
        .arg(workdir.path().join("data"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jecp-hub");
    let mut guard = ChildGuard(Some(child));
    let child = guard.0.as_mut().unwrap();
    let (addr, _logs) = wait_for_listen_line(child);

    // The request is in flight: its head is in and half of its body has arrived.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /health HTTP/1.1\r\nHost: hub.test\r\nContent-Length: 10\r\n\r\n{\"a\":")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_sigterm(child);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the Hub must wait for the in-flight request"
    );

    stream.write_all(b"\"bc\"}").await.unwrap();
    let received = http_support::read_to_close(&mut stream).await;
    let (response, _) =
        http_support::parse_response(&received).expect("the in-flight request is answered");
    assert_eq!(
        response.status, 405,
        "POST /health completes with its normal answer"
    );
    let status = wait_with_timeout(child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    guard.0 = None;
}
