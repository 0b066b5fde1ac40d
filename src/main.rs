//! The `hotline` binary: parses the command line and reports errors as one
//! line naming the file, field or peer at fault.

mod cli;

use clap::Parser;

/// Nodes allocate small buffers per request on every core; mimalloc keeps that off the hot path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
