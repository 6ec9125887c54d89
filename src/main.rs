//! The `jecp-hub` binary: command-line parsing, logging, and wiring the library together.
//! Logic lives in the library; this file only connects configuration, listener, service and
//! signals.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use jecp_hub::config::{Config, LogFormat, ServeFlags};
use jecp_hub::http::{self, App, DataDirProbe, DiscoveryInputs, ServerLimits};

/// A JECP Hub: agent wallets, mandates, trust tiers and pay-per-call billing in one binary.
///
/// Configuration precedence, lowest to highest: built-in defaults, the TOML file given with
/// --config, JECP_* environment variables, command-line flags. RUST_LOG sets the log filter
/// (default: info).
#[derive(Debug, Parser)]
#[command(name = "jecp-hub", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Hub's HTTP server until SIGINT or SIGTERM.
    Serve(ServeFlags),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(flags) => serve(&flags),
    }
}

fn serve(flags: &ServeFlags) -> ExitCode {
    let config = match Config::from_process(flags) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("jecp-hub: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut config: Config) -> Result<(), String> {
    std::fs::create_dir_all(&config.data_dir).map_err(|error| {
        format!(
            "cannot create data_dir {}: {error}",
            config.data_dir.display()
        )
    })?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", config.listen))?;
    let bound = listener
        .local_addr()
        .map_err(|error| format!("cannot read the bound address: {error}"))?;
    config.set_bound_address(bound);
    let config = Arc::new(config);
    tracing::info!(
        data_dir = %config.data_dir.display(),
        public_url = %config.public_url,
        durability = %config.durability_label(),
        operator_api = config.admin_token.is_some(),
        "listening on {bound}"
    );
    let health = Arc::new(DataDirProbe::new(&config));
    let discovery = DiscoveryInputs {
        supported_capabilities: serde_json::Value::Array(Vec::new()),
        llms_catalog: String::new(),
    };
    let app = Arc::new(App::new(config.clone(), discovery, health));
    http::serve(
        listener,
        app,
        ServerLimits::from_config(&config),
        shutdown_signal(),
    )
    .await
    .map_err(|error| format!("server failed: {error}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default `info` filter.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes help humans at a terminal and corrupt captured logs.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
