//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/*`) through the
//! same check functions the libFuzzer targets call, so `cargo test` on stable
//! Rust exercises each target's properties and every regression input.

use std::path::{Path, PathBuf};

use jecp_hub::fuzzing;

/// A property check over arbitrary bytes; panics when the property breaks.
type Check = fn(&[u8]);

/// Every fuzz target and its check; `fuzz/Cargo.toml` lists the same names.
const TARGETS: &[(&str, Check)] = &[
    ("envelope", fuzzing::check_envelope),
    ("provenance", fuzzing::check_provenance),
    ("money", fuzzing::check_money),
    ("canonical", fuzzing::check_canonical),
    ("ledger", fuzzing::check_ledger),
];

/// A corpus smaller than this means the seeds went missing.
const SEEDS_MIN: usize = 5;

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("corpus {} is missing: {error}", dir.display()))
        .map(|entry| entry.expect("readable corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, check: Check) {
    let files = corpus_files(target);
    assert!(
        files.len() >= SEEDS_MIN,
        "{target}: only {} corpus files",
        files.len()
    );
    for file in &files {
        let data = std::fs::read(file).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} broke a property",
            file.display()
        );
    }
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_binary() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .expect("fuzz/Cargo.toml");
    for (target, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml lacks [[bin]] {target}"
        );
        assert!(!corpus_files(target).is_empty());
    }
}

#[test]
fn envelope_corpus() {
    replay("envelope", fuzzing::check_envelope);
}

#[test]
fn provenance_corpus() {
    replay("provenance", fuzzing::check_provenance);
}

#[test]
fn money_corpus() {
    replay("money", fuzzing::check_money);
}

#[test]
fn canonical_corpus() {
    replay("canonical", fuzzing::check_canonical);
}

#[test]
fn ledger_corpus() {
    replay("ledger", fuzzing::check_ledger);
}

/// Degenerate inputs (empty, `{}`, all 0xff) are invalid, never a failure.
#[test]
fn checks_accept_empty_and_trivial_inputs() {
    for (_, check) in TARGETS {
        check(b"");
        check(b"{}");
        check(&[0xff; 64]);
    }
}
