//! `hotline bench`: measured figures on this machine, never guessed. With no
//! part named it measures the whole system end to end (`bench_e2e`);
//! `hotline bench log` measures the audit log alone (`bench_log`).

use std::process::ExitCode;

use super::bench_e2e;
use super::bench_exchanges::E2eArgs;
use super::bench_flood::{self, FloodArgs};
use super::bench_log::{self, LogArgs};
use super::view::Out;

/// `hotline bench`: the whole system end to end, or one part.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    part: Option<Command>,
    #[command(flatten)]
    e2e: E2eArgs,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Audit log only: appends/s, verify entries/s, proof latency.
    Log(LogArgs),
    /// The flood drill: one peer floods with the costliest deliveries the limits allow; another peer's and an operator's latency, and the node's memory.
    Flood(FloodArgs),
}

pub fn run(args: Args, out: Out) -> anyhow::Result<ExitCode> {
    match args.part {
        Some(Command::Log(log)) => {
            let (figures, human) = bench_log::log_bench(log, out)?;
            out.print(&figures, || human);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Flood(flood)) => bench_flood::run(flood, out),
        None => bench_e2e::run(args.e2e, out),
    }
}
