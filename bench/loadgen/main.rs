//! `jecp-bench`: the load generator for jecp-hub (issue 8) and the renderer of
//! `BENCHMARKS.md`'s generated tables.
//!
//! - `jecp-bench run`: sets up agents through the public and operator APIs,
//!   drives one or more scenarios against a Hub it spawns on a temporary data
//!   directory (or a given `--url`), closed loop (fixed concurrency) or open
//!   loop (fixed arrival rate, latency measured from the intended send time so
//!   coordinated omission does not hide queueing), and prints a report (`--json`
//!   for machines).
//! - `jecp-bench report`: turns `run --json` documents and criterion's saved
//!   estimates into the Markdown tables `bench/run.sh` writes into
//!   `BENCHMARKS.md`.
//!
//! It lives outside `src/` because it is a client of the Hub, not part of it:
//! it talks HTTP only (hyper-util's client, the stack the Hub itself uses).

mod args;
mod client;
mod cpu_time;
mod criterion_data;
mod driver;
mod hub_process;
mod machine;
mod markdown;
mod progress;
mod report;
mod scenario;
mod setup;
mod stats;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(run_args) => match run_args.validate() {
            Ok(plan) => match report::run_plan(plan) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("jecp-bench: {message}");
                    ExitCode::FAILURE
                }
            },
            Err(message) => {
                eprintln!("jecp-bench: invalid arguments: {message}");
                ExitCode::from(2)
            }
        },
        Command::Report(report_args) => match markdown::run_report(&report_args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("jecp-bench report: {message}");
                ExitCode::FAILURE
            }
        },
    }
}
