//! The server secret and credential generation.
//!
//! API keys are high-entropy random strings (48 alphanumerics, about 285
//! bits), so they need no slow KDF: the Hub stores only
//! `HMAC-SHA256(server secret, api_key)` and recomputes it per request in
//! well under a microsecond (DESIGN §3.7). The keyed hash means a stolen
//! database alone cannot be used to test guessed keys offline; the secret
//! lives in its own file (`server.secret`, mode 0600) in the data directory.
//!
//! Identifiers and keys come from the OS CSPRNG (`ring::rand::SystemRandom`)
//! with rejection sampling, so every alphanumeric is equally likely.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The file holding the server secret inside the data directory.
pub const SECRET_FILE_NAME: &str = "server.secret";

/// Random alphanumerics after `{prefix}_ag_`.
pub const AGENT_ID_RANDOM_CHARS: usize = 24;
/// Random alphanumerics after `{prefix}_ak_` (48 × log2(62) ≈ 285 bits ≥ 192).
pub const API_KEY_RANDOM_CHARS: usize = 48;

const ALPHANUMERICS: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Bytes at or above this value are rejected so `byte % 62` is uniform (248 = 4 × 62).
const REJECTION_THRESHOLD: u8 = 248;
const SECRET_LEN_BYTES: usize = 32;
/// The file stores the secret as lowercase hex, optionally followed by a newline.
const SECRET_FILE_MAX_BYTES: u64 = 128;

/// The 32-byte key under which API keys are hashed. Never printed.
#[derive(Clone)]
pub struct ServerSecret {
    hmac_key: hmac::Key,
}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(<redacted>)")
    }
}

impl ServerSecret {
    /// Reads `data_dir/server.secret`, or creates it with 32 fresh random
    /// bytes (mode 0600) when it does not exist yet.
    ///
    /// Creation is atomic: the secret is written and synced to a private
    /// temporary file which is then hard-linked into place, so a concurrent
    /// start or a crash never leaves a partial secret, and an existing secret
    /// is never overwritten (that would invalidate every issued key). A file
    /// that exists but does not hold exactly 32 hex-encoded bytes is an error,
    /// not something to silently replace.
    pub fn load_or_create(data_dir: &Path) -> io::Result<ServerSecret> {
        let path = data_dir.join(SECRET_FILE_NAME);
        match read_secret_file(&path) {
            Ok(secret) => return Ok(secret),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        let mut bytes = [0u8; SECRET_LEN_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| io::Error::other("the OS random number generator failed"))?;
        let temporary = data_dir.join(format!(".{SECRET_FILE_NAME}.{}.tmp", std::process::id()));
        write_private_file(&temporary, format!("{}\n", hex::encode(bytes)).as_bytes())?;
        let linked = fs::hard_link(&temporary, &path);
        // The temporary name is only a staging area; whatever happened, drop it.
        let _ = fs::remove_file(&temporary);
        match linked {
            Ok(()) => {
                sync_directory(data_dir)?;
                tracing::info!(path = %path.display(), "created a new server secret");
                Ok(ServerSecret::from_bytes(bytes))
            }
            // Another process created it first: use theirs so both agree.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => read_secret_file(&path),
            Err(error) => Err(error),
        }
    }

    pub fn from_bytes(bytes: [u8; 32]) -> ServerSecret {
        ServerSecret {
            hmac_key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        }
    }

    /// `HMAC-SHA256(secret, api_key)`: what the Hub stores instead of the key.
    pub fn key_hash(&self, api_key: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.hmac_key, api_key.as_bytes());
        let mut hash = [0u8; 32];
        hash.copy_from_slice(tag.as_ref());
        hash
    }
}

fn read_secret_file(path: &Path) -> io::Result<ServerSecret> {
    let file = File::open(path)?;
    tighten_permissions(path, &file)?;
    let mut text = String::new();
    file.take(SECRET_FILE_MAX_BYTES).read_to_string(&mut text)?;
    let invalid = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} must hold exactly 64 hex characters (32 bytes)",
                path.display()
            ),
        )
    };
    let decoded = hex::decode(text.trim()).map_err(|_| invalid())?;
    let bytes: [u8; SECRET_LEN_BYTES] = decoded.try_into().map_err(|_| invalid())?;
    Ok(ServerSecret::from_bytes(bytes))
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// A secret readable by group or others is narrowed to 0600 (with a
/// warning) rather than refused: refusing would keep the Hub down over a
/// permission slip, while the secret is still usable and now protected.
#[cfg(unix)]
fn tighten_permissions(path: &Path, file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "server secret was readable by others; setting mode 0600");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten_permissions(_path: &Path, _file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn sync_directory(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// The path of the secret file for a data directory (for operator tooling).
pub fn secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SECRET_FILE_NAME)
}

/// `{prefix}_ag_` followed by 24 random alphanumerics.
pub fn generate_agent_id(prefix: &str) -> String {
    random_credential(prefix, "ag", AGENT_ID_RANDOM_CHARS)
}

/// `{prefix}_ak_` followed by 48 random alphanumerics.
pub fn generate_api_key(prefix: &str) -> String {
    random_credential(prefix, "ak", API_KEY_RANDOM_CHARS)
}

/// Whether `prefix` is a valid vendor prefix (spec 02 §3.1: 2–8 lowercase letters).
pub fn is_valid_prefix(prefix: &str) -> bool {
    (2..=8).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_lowercase())
}

/// Whether `text` looks like an agent id of any Hub (spec 02 §4.2 mandate regex).
pub fn is_agent_id_shaped(text: &str) -> bool {
    credential_shaped(text, "ag")
}

fn credential_shaped(text: &str, kind: &str) -> bool {
    let Some((prefix, rest)) = text.split_once('_') else {
        return false;
    };
    let Some(random) = rest
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix('_'))
    else {
        return false;
    };
    is_valid_prefix(prefix)
        && random.len() >= 16
        && random.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn random_credential(prefix: &str, kind: &str, random_chars: usize) -> String {
    debug_assert!(
        is_valid_prefix(prefix),
        "vendor prefix is validated by the config"
    );
    let mut text = String::with_capacity(prefix.len() + kind.len() + 2 + random_chars);
    text.push_str(prefix);
    text.push('_');
    text.push_str(kind);
    text.push('_');
    let rng = SystemRandom::new();
    let mut buffer = [0u8; 64];
    let mut produced = 0;
    while produced < random_chars {
        // A failing OS RNG leaves no safe way to mint credentials; this is
        // not reachable from client input.
        rng.fill(&mut buffer)
            .expect("the OS random number generator failed");
        for &byte in &buffer {
            if produced == random_chars {
                break;
            }
            if byte < REJECTION_THRESHOLD {
                text.push(char::from(ALPHANUMERICS[usize::from(byte % 62)]));
                produced += 1;
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn identifiers_have_the_documented_shape() {
        let id = generate_agent_id("jh");
        let key = generate_api_key("jh");
        assert!(
            id.starts_with("jh_ag_") && id.len() == 6 + AGENT_ID_RANDOM_CHARS,
            "{id}"
        );
        assert!(key.starts_with("jh_ak_") && key.len() == 6 + API_KEY_RANDOM_CHARS);
        assert!(id[6..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(key[6..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(is_agent_id_shaped(&id));
        assert!(!is_agent_id_shaped(&key));
        assert!(!is_agent_id_shaped("JH_ag_0123456789abcdef"));
        assert!(!is_agent_id_shaped("jh_ag_short"));
    }

    #[test]
    fn keys_are_unique_and_use_the_whole_alphabet() {
        let mut seen = HashSet::new();
        let mut alphabet_hits = HashSet::new();
        for _ in 0..2_000 {
            let key = generate_api_key("jh");
            alphabet_hits.extend(key[6..].bytes());
            assert!(seen.insert(key));
        }
        // 96,000 uniformly drawn characters miss one of 62 with negligible probability.
        assert_eq!(alphabet_hits.len(), 62);
    }

    #[test]
    fn key_hash_is_hmac_sha256_under_the_secret() {
        let secret = ServerSecret::from_bytes([7u8; 32]);
        let expected = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]), b"jh_ak_x");
        assert_eq!(secret.key_hash("jh_ak_x").as_slice(), expected.as_ref());
        assert_ne!(
            secret.key_hash("jh_ak_x"),
            ServerSecret::from_bytes([8u8; 32]).key_hash("jh_ak_x")
        );
        assert_eq!(format!("{secret:?}"), "ServerSecret(<redacted>)");
    }

    #[test]
    fn secret_is_created_once_with_mode_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerSecret::load_or_create(dir.path()).unwrap();
        let second = ServerSecret::load_or_create(dir.path()).unwrap();
        assert_eq!(first.key_hash("k"), second.key_hash("k"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(secret_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No staging files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(SECRET_FILE_NAME)]);
    }

    #[test]
    fn a_corrupt_secret_is_an_error_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(secret_path(dir.path()), "not hex").unwrap();
        let error = ServerSecret::load_or_create(dir.path()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            fs::read_to_string(secret_path(dir.path())).unwrap(),
            "not hex"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_world_readable_secret_is_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = secret_path(dir.path());
        fs::write(&path, hex::encode([1u8; 32])).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let secret = ServerSecret::load_or_create(dir.path()).unwrap();
        assert_eq!(
            secret.key_hash("k"),
            ServerSecret::from_bytes([1u8; 32]).key_hash("k")
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
