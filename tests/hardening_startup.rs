//! Start-up refuses a data directory it cannot use (issue 9): the process exits
//! non-zero with a message that names the directory and the problem, instead of
//! serving with a store it cannot write.
//!
//! Tests run as root here, where `chmod 0500` does not stop writes; the cases
//! below fail for root too: the data dir is a regular file, lies under a
//! regular file, holds a directory where the database file belongs, or sits on
//! a kernel filesystem (`/sys`) that refuses new files. The `chmod` case runs
//! only when permissions actually bind (a non-root user).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_jecp-hub");
/// A refused start must end well within this.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

fn serve_once(data_dir: &Path) -> Output {
    let mut child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jecp-hub");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "jecp-hub kept running on unusable data dir {}",
                data_dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

fn assert_refused(data_dir: &Path, problem: &str) {
    let output = serve_once(data_dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "{}: exited 0:\n{stderr}",
        data_dir.display()
    );
    let message = stderr
        .lines()
        .find(|line| line.starts_with("jecp-hub: "))
        .unwrap_or_else(|| panic!("no `jecp-hub: ...` message:\n{stderr}"));
    assert!(
        message.contains(&data_dir.display().to_string()),
        "the message does not name the directory: {message}"
    );
    assert!(
        message.contains(problem),
        "expected {problem:?} in: {message}"
    );
}

#[test]
fn a_regular_file_as_data_dir_is_refused() {
    let workdir = tempfile::tempdir().unwrap();
    let file = workdir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    assert_refused(&file, "cannot create data directory");
    assert_refused(&file.join("data"), "Not a directory");
}

#[test]
fn a_directory_in_place_of_the_database_file_is_refused() {
    let workdir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(workdir.path().join(jecp_hub::store::DATABASE_FILE)).unwrap();
    assert_refused(workdir.path(), "cannot open the store");
}

#[test]
fn a_directory_that_refuses_new_files_is_refused() {
    // sysfs refuses file creation even for root (EACCES, or EROFS when mounted read-only).
    let sysfs = Path::new("/sys/kernel");
    assert!(sysfs.is_dir(), "/sys/kernel is missing on this machine");
    assert_refused(sysfs, "server secret");

    // A 0500 directory binds only without CAP_DAC_OVERRIDE; probe before relying on it.
    let workdir = tempfile::tempdir().unwrap();
    let locked_down = workdir.path().join("read-only");
    std::fs::create_dir(&locked_down).unwrap();
    std::fs::set_permissions(&locked_down, std::fs::Permissions::from_mode(0o500)).unwrap();
    let privileged = std::fs::write(locked_down.join("probe"), b"x").is_ok();
    if privileged {
        eprintln!("running with CAP_DAC_OVERRIDE: chmod 0500 does not bind; /sys covers the case");
    } else {
        assert_refused(&locked_down, "server secret");
    }
    std::fs::set_permissions(&locked_down, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// Reads the child's stderr until `listening on`, so the first Hub holds the lock.
fn wait_listening(child: &mut Child) {
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    loop {
        let line = lines_rx
            .recv_timeout(EXIT_TIMEOUT)
            .expect("the first Hub starts");
        if line.contains("listening on") {
            return;
        }
    }
}

#[test]
fn a_data_dir_locked_by_another_hub_is_refused() {
    let workdir = tempfile::tempdir().unwrap();
    let data_dir = workdir.path().join("data");
    let mut first = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the first hub");
    wait_listening(&mut first);
    let second = std::panic::catch_unwind(|| {
        assert_refused(&data_dir, "in use by another jecp-hub process")
    });
    let _ = first.kill();
    let _ = first.wait();
    if let Err(panic) = second {
        std::panic::resume_unwind(panic);
    }
    // Once the first is gone the directory is usable again.
    let mut again = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn again");
    wait_listening(&mut again);
    let _ = again.kill();
    let _ = again.wait();
}
