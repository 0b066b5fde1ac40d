//! `hotline bench`: measured figures on this machine, never guessed. With no
//! part named it measures the whole system end to end (`e2e.rs`: the crypto
//! bound, the runs side by side, the table; `exchanges.rs`: one run of
//! exchanges between two `serve` processes); `hotline bench log` measures
//! the audit log alone (`log.rs`), `hotline bench flood` a hostile peer's
//! flood (`flood.rs`), `hotline bench sign` the identity key's signing path
//! (`sign.rs`: a token's beside a file's).

mod e2e;
pub(super) mod exchanges;
mod flood;
mod log;
mod sign;

use std::process::ExitCode;

use exchanges::E2eArgs;
use flood::FloodArgs;
use log::LogArgs;

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
    /// The identity key's signing path: the node's key (a file, or a PKCS#11 token) beside a key file.
    Sign(sign::SignArgs),
}

pub fn run(args: Args, out: Out) -> anyhow::Result<ExitCode> {
    match args.part {
        Some(Command::Log(log)) => {
            let (figures, human) = log::log_bench(log, out)?;
            out.print(&figures, || human);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Flood(flood)) => flood::run(flood, out),
        Some(Command::Sign(sign)) => sign::run(sign, out),
        None => e2e::run(args.e2e, out),
    }
}
