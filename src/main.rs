//! The `hotline` binary: parses the command line and reports errors as one
//! line naming the file, field or peer at fault.

mod cli;

/// Nodes allocate small buffers per request on every core; mimalloc keeps that off the hot path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the
/// line already holds (many errors name their source in their own message).
fn one_line(err: &anyhow::Error) -> String {
    err.chain().skip(1).fold(err.to_string(), |line, cause| {
        let cause = cause.to_string();
        match line.contains(&cause) {
            true => line,
            false => format!("{line}: {cause}"),
        }
    })
}
