//! The `jecp-hub` binary: command-line parsing, logging, and wiring the library together.
//! Logic lives in the library; this file only connects configuration, listener, service and
//! signals.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jecp_hub::config::{Config, LogFormat, ServeFlags};
use jecp_hub::runtime::Running;
use jecp_hub::store::admin::{self, ExportFormat};

mod agent_cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Check or export the ledger of a stopped Hub's data directory.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Operator commands on agents: in-process on a stopped Hub's data directory, or through
    /// the operator API of the Hub running on it.
    Agent(agent_cli::AgentArgs),
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Recompute every balance from the transfer log and check the invariants; exit 1 with a
    /// report on any violation.
    Verify {
        /// Data directory [default: ./jecp-data].
        #[arg(long, value_name = "DIR", default_value = "./jecp-data")]
        data_dir: std::path::PathBuf,
    },
    /// Write the transfer log, oldest first, to stdout.
    Export {
        #[arg(long, value_name = "DIR", default_value = "./jecp-data")]
        data_dir: std::path::PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormatArg,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ExportFormatArg {
    Jsonl,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(flags) => serve(&flags),
        Command::Ledger(LedgerCommand::Verify { data_dir }) => match admin::verify(&data_dir) {
            Ok(report) => {
                println!("{report}");
                if report.is_ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(error) => {
                eprintln!("jecp-hub ledger verify: {error}");
                ExitCode::from(2)
            }
        },
        Command::Ledger(LedgerCommand::Export { data_dir, format }) => {
            let format = match format {
                ExportFormatArg::Jsonl => ExportFormat::Jsonl,
                ExportFormatArg::Csv => ExportFormat::Csv,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match admin::export(&data_dir, format, &mut out) {
                Ok(_) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("jecp-hub ledger export: {error}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Agent(args) => agent_cli::run(args),
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
            eprintln!("jecp-hub: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut config: Config) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", config.listen))?;
    let bound = listener
        .local_addr()
        .map_err(|error| format!("cannot read the bound address: {error}"))?;
    config.set_bound_address(bound);
    let summary = (
        config.data_dir.display().to_string(),
        config.public_url.clone(),
        config.durability_label(),
        config.admin_token.is_some(),
    );
    let running =
        Running::serve(listener, config, shutdown_signal()).map_err(|error| error.to_string())?;
    tracing::info!(
        data_dir = %summary.0,
        public_url = %summary.1,
        durability = %summary.2,
        operator_api = summary.3,
        "listening on {bound}"
    );
    running
        .wait()
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
