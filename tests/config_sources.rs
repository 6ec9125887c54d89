//! `Config::from_sources`: defaults, precedence (file < env < flags), and start-up errors that
//! name the bad key. The environment is a closure, so the process environment is untouched.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use jecp_hub::config::{Config, DurabilityMode, LogFormat, SecretString, ServeFlags, TierRpm};

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn error_of(
    file: Option<&std::path::Path>,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &ServeFlags,
) -> String {
    Config::from_sources(file, env, flags)
        .expect_err("configuration must be rejected")
        .to_string()
}

#[test]
fn zero_configuration_gives_the_documented_defaults() {
    let config = Config::from_sources(None, &no_env, &ServeFlags::default()).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.data_dir, PathBuf::from("./jecp-data"));
    assert_eq!(config.public_url, "http://127.0.0.1:8080");
    assert_eq!(config.vendor_prefix, "hub");
    assert_eq!(config.hub_namespace, "hub");
    assert_eq!(config.durability, DurabilityMode::Immediate);
    assert_eq!(config.fsync_interval_ms, 5);
    assert_eq!(config.log_format, LogFormat::Text);
    assert_eq!(config.max_connections, 10_000);
    assert_eq!(config.header_read_timeout_ms, 10_000);
    assert_eq!(config.body_read_timeout_ms, 30_000);
    assert_eq!(config.shutdown_grace_ms, 10_000);
    assert_eq!(config.max_body_bytes, 10 * 1024 * 1024);
    assert_eq!(config.free_calls_per_agent, 100);
    assert_eq!(config.registration_per_minute_per_ip, 10);
    assert_eq!(
        config.tier_rpm,
        TierRpm {
            bronze: 10,
            silver: 30,
            gold: 100,
            platinum: 500
        }
    );
    assert_eq!(config.allowed_topup_usd, vec![5, 20, 100]);
    assert_eq!(config.admin_token, None);
    assert_eq!(config.idempotency_ttl_s, 86_400);
    assert_eq!(config.writer_queue_capacity, 65_536);
    assert!(config.catalog.is_empty());
    assert_eq!(config, Config::default());
}

#[test]
fn flags_beat_env_which_beats_the_file() {
    let file = toml_file(
        r#"
        listen = "127.0.0.1:7001"
        hub_name = "From File"
        operator_name = "File Operator"
        durability = "batched"
        fsync_interval_ms = 9
        max_connections = 11

        [tier_rpm]
        bronze = 1
        silver = 2

        [catalog]
        "hub/echo" = { price = "$0.002" }
        "#,
    );
    let env = env_of(&[
        ("JECP_LISTEN", "127.0.0.1:7002"),
        ("JECP_HUB_NAME", "From Env"),
        ("JECP_TIER_RPM_SILVER", "3"),
        ("JECP_LOG_FORMAT", "json"),
        ("JECP_ALLOWED_TOPUP_USD", "10, 50"),
    ]);
    let flags = ServeFlags {
        listen: Some("127.0.0.1:7003".parse().unwrap()),
        tier_rpm_gold: Some(200),
        ..ServeFlags::default()
    };
    let config = Config::from_sources(Some(file.path()), &env, &flags).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:7003", "flag wins");
    assert_eq!(config.hub_name, "From Env", "env beats file");
    assert_eq!(config.operator_name, "File Operator", "file beats default");
    assert_eq!(config.durability, DurabilityMode::Batched);
    assert_eq!(config.durability_label(), "batched(9ms)");
    assert_eq!(config.max_connections, 11);
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(
        config.tier_rpm,
        TierRpm {
            bronze: 1,
            silver: 3,
            gold: 200,
            platinum: 500
        }
    );
    assert_eq!(config.allowed_topup_usd, vec![10, 50]);
    assert_eq!(
        config.public_url, "http://127.0.0.1:7003",
        "the default public URL follows the final listen"
    );
    assert_eq!(config.catalog["hub/echo"]["price"].as_str(), Some("$0.002"));
}

#[test]
fn public_url_is_trimmed_and_an_explicit_one_survives_rebinding() {
    let flags = ServeFlags {
        public_url: Some("https://hub.example.com/".into()),
        ..ServeFlags::default()
    };
    let mut config = Config::from_sources(None, &no_env, &flags).unwrap();
    assert_eq!(config.public_url, "https://hub.example.com");
    config.set_bound_address("127.0.0.1:45678".parse().unwrap());
    assert_eq!(config.public_url, "https://hub.example.com");
    assert_eq!(
        config.hub_links().url("/v1/invoke"),
        "https://hub.example.com/v1/invoke"
    );

    let mut config = Config::from_sources(None, &no_env, &ServeFlags::default()).unwrap();
    config.set_bound_address("127.0.0.1:45678".parse().unwrap());
    assert_eq!(config.public_url, "http://127.0.0.1:45678");
}

#[test]
fn bad_vendor_prefix_is_named_in_the_message() {
    let flags = ServeFlags {
        vendor_prefix: Some("Hub1".into()),
        ..ServeFlags::default()
    };
    assert_eq!(
        error_of(None, &no_env, &flags),
        r#"invalid config: vendor_prefix "Hub1" must be 2-8 lowercase letters"#
    );
    for bad in ["h", "abcdefghi", "hu b", ""] {
        let env = env_of(&[("JECP_VENDOR_PREFIX", bad)]);
        assert!(
            error_of(None, &env, &ServeFlags::default()).contains("vendor_prefix"),
            "{bad:?}"
        );
    }
}

#[test]
fn unknown_and_mistyped_file_keys_are_named() {
    let file = toml_file("listen_adress = \"127.0.0.1:1\"\n");
    let message = error_of(Some(file.path()), &no_env, &ServeFlags::default());
    assert!(message.starts_with("invalid config:"), "{message}");
    assert!(message.contains("listen_adress"), "{message}");

    let file = toml_file("max_connections = \"many\"\n");
    let message = error_of(Some(file.path()), &no_env, &ServeFlags::default());
    assert!(message.contains("max_connections"), "{message}");

    let file = toml_file("[tier_rpm]\ndiamond = 5\n");
    let message = error_of(Some(file.path()), &no_env, &ServeFlags::default());
    assert!(message.contains("diamond"), "{message}");

    let message = error_of(
        Some(std::path::Path::new("/nonexistent/hub.toml")),
        &no_env,
        &ServeFlags::default(),
    );
    assert!(message.contains("/nonexistent/hub.toml"), "{message}");
}

#[test]
fn bad_environment_values_name_the_variable_and_key() {
    let cases = [
        ("JECP_LISTEN", "not-an-address", "listen (JECP_LISTEN)"),
        (
            "JECP_MAX_CONNECTIONS",
            "lots",
            "max_connections (JECP_MAX_CONNECTIONS)",
        ),
        (
            "JECP_DURABILITY",
            "sometimes",
            "durability (JECP_DURABILITY)",
        ),
        ("JECP_LOG_FORMAT", "xml", "log_format (JECP_LOG_FORMAT)"),
        (
            "JECP_TIER_RPM_GOLD",
            "-1",
            "tier_rpm.gold (JECP_TIER_RPM_GOLD)",
        ),
        (
            "JECP_ALLOWED_TOPUP_USD",
            "5,x",
            "allowed_topup_usd (JECP_ALLOWED_TOPUP_USD)",
        ),
    ];
    for (var, value, expected) in cases {
        let message = error_of(None, &env_of(&[(var, value)]), &ServeFlags::default());
        assert!(message.contains(expected), "{var}={value}: {message}");
    }
}

#[test]
fn out_of_range_values_are_rejected_with_their_key() {
    let cases: Vec<(ServeFlags, &str)> = vec![
        (
            ServeFlags {
                max_connections: Some(0),
                ..Default::default()
            },
            "max_connections",
        ),
        (
            ServeFlags {
                header_read_timeout_ms: Some(0),
                ..Default::default()
            },
            "header_read_timeout_ms",
        ),
        (
            ServeFlags {
                body_read_timeout_ms: Some(0),
                ..Default::default()
            },
            "body_read_timeout_ms",
        ),
        (
            ServeFlags {
                max_body_bytes: Some(0),
                ..Default::default()
            },
            "max_body_bytes",
        ),
        (
            ServeFlags {
                fsync_interval_ms: Some(0),
                ..Default::default()
            },
            "fsync_interval_ms",
        ),
        (
            ServeFlags {
                idempotency_ttl_s: Some(3_600),
                ..Default::default()
            },
            "idempotency_ttl_s",
        ),
        (
            ServeFlags {
                writer_queue_capacity: Some(0),
                ..Default::default()
            },
            "writer_queue_capacity",
        ),
        (
            ServeFlags {
                registration_per_minute_per_ip: Some(0),
                ..Default::default()
            },
            "registration_per_minute_per_ip",
        ),
        (
            ServeFlags {
                tier_rpm_silver: Some(5),
                ..Default::default()
            },
            "tier_rpm.silver",
        ),
        (
            ServeFlags {
                allowed_topup_usd: Some("5,5".into()),
                ..Default::default()
            },
            "allowed_topup_usd",
        ),
        (
            ServeFlags {
                allowed_topup_usd: Some("".into()),
                ..Default::default()
            },
            "allowed_topup_usd",
        ),
        (
            ServeFlags {
                hub_namespace: Some("Hub".into()),
                ..Default::default()
            },
            "hub_namespace",
        ),
        (
            ServeFlags {
                hub_name: Some("x".into()),
                ..Default::default()
            },
            "hub_name",
        ),
        (
            ServeFlags {
                support_contact: Some("".into()),
                ..Default::default()
            },
            "support_contact",
        ),
        (
            ServeFlags {
                public_url: Some("ftp://hub".into()),
                ..Default::default()
            },
            "public_url",
        ),
        (
            ServeFlags {
                public_url: Some("https://hub?x=1".into()),
                ..Default::default()
            },
            "public_url",
        ),
        (
            ServeFlags {
                public_url: Some("https://user:pw@hub".into()),
                ..Default::default()
            },
            "public_url",
        ),
        (
            ServeFlags {
                data_dir: Some(PathBuf::new()),
                ..Default::default()
            },
            "data_dir",
        ),
    ];
    for (flags, key) in cases {
        let message = error_of(None, &no_env, &flags);
        assert!(
            message.starts_with(&format!("invalid config: {key} ")),
            "{key}: {message}"
        );
    }
}

#[test]
fn the_admin_token_is_never_printed() {
    let token = "s3cret-operator-token-0123456789";
    let flags = ServeFlags {
        admin_token: Some(SecretString(token.into())),
        ..ServeFlags::default()
    };
    assert!(!format!("{flags:?}").contains(token));
    let config = Config::from_sources(None, &no_env, &flags).unwrap();
    assert_eq!(config.admin_token.as_deref(), Some(token));
    let debug = format!("{config:?}");
    assert!(!debug.contains(token), "{debug}");
    assert!(debug.contains("[redacted]"));

    let env = env_of(&[("JECP_ADMIN_TOKEN", "short-secret")]);
    let message = error_of(None, &env, &ServeFlags::default());
    assert!(message.contains("admin_token"), "{message}");
    assert!(!message.contains("short-secret"), "{message}");

    let file = toml_file("admin_token = 1234567890123456789\n");
    let message = error_of(Some(file.path()), &no_env, &ServeFlags::default());
    assert!(message.contains("admin_token"), "{message}");
    assert!(!message.contains("1234567890123456789"), "{message}");

    let flags = ServeFlags {
        public_url: Some("https://user:hunter2@hub".into()),
        ..ServeFlags::default()
    };
    let message = error_of(None, &no_env, &flags);
    assert!(
        message.starts_with("invalid config: public_url"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");

    let file = toml_file(&format!("admin_token = \"{token}\"\n"));
    let config = Config::from_sources(Some(file.path()), &no_env, &ServeFlags::default()).unwrap();
    assert_eq!(config.admin_token.as_deref(), Some(token));
}
