//! The command line: one file per command group, each printing a readable
//! table by default and JSON with `--json`.

mod agreement;
mod audit;
mod bench;
mod bench_e2e;
mod demo;
mod envelope;
mod keygen;
mod node;
mod ops;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// hotline: a signed hotline between nations' cyber points of contact.
#[derive(Parser)]
#[command(name = "hotline", version, about)]
pub struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: three nodes on loopback, a scripted exchange, verified logs and a timeline.
    Demo(demo::Args),
    /// Create a party's keys, certificates and node configuration.
    Init(node::InitArgs),
    /// Run the node: Federation, Operator and Audit services over mutual TLS.
    Serve(node::ServeArgs),
    /// Send or show notices.
    #[command(subcommand)]
    Notice(ops::NoticeCommand),
    /// List notices sent and received; --follow streams new events.
    Inbox(ops::InboxArgs),
    /// Respond to a received notice.
    Respond(ops::RespondArgs),
    /// Peers, running deadlines and recent norm events.
    Status(ops::Conn),
    /// Send a communication check to one peer, or all.
    CommCheck {
        /// The peer (default: every peer).
        party: Option<String>,
        #[command(flatten)]
        conn: ops::Conn,
    },
    /// Generate an Ed25519 identity key in the C2SP signed-note formats.
    Keygen(keygen::Args),
    /// Assemble, sign, verify or show the signed agreement.
    #[command(subcommand)]
    Agreement(agreement::Command),
    /// Read, prove, verify and export a node's audit log.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Measure throughput, latency, memory and verification on this machine.
    Bench(bench::Args),
    /// Sign or verify a DSSE envelope in its JSON form.
    #[command(subcommand)]
    Envelope(envelope::Command),
}

/// Prints a line to stdout, ignoring a closed pipe (`hotline ... | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use outln;

/// How a command prints what it found.
#[derive(Clone, Copy)]
pub struct Out {
    json: bool,
}

impl Out {
    /// Prints `value` as JSON, or `human` as text.
    fn print(self, value: &serde_json::Value, human: impl FnOnce() -> String) {
        use std::io::Write as _;
        let text = if self.json {
            serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
        } else {
            human()
        };
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let out = Out { json: cli.json };
    match cli.command {
        Command::Keygen(args) => keygen::run(args, out),
        Command::Demo(args) => demo::run(args, out),
        Command::Init(args) => node::init(args, out),
        Command::Serve(args) => node::serve(args),
        Command::Notice(cmd) => ops::notice(cmd, out),
        Command::Inbox(args) => ops::inbox(args, out),
        Command::Respond(args) => ops::respond(args, out),
        Command::Status(conn) => ops::status(conn, out),
        Command::CommCheck { party, conn } => ops::comm_check(party, conn, out),
        Command::Agreement(cmd) => agreement::run(cmd, out),
        Command::Envelope(cmd) => envelope::run(cmd, out),
        Command::Audit(cmd) => audit::run(cmd, out),
        Command::Bench(cmd) => bench::run(cmd, out),
    }
}

/// Sends `tracing` output to stderr, filtered by RUST_LOG (default `level`).
pub fn init_tracing(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Reads a file, or standard input for `-`, naming the file on failure.
fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading standard input")?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Replaces a file atomically: a synced temporary file renamed over it.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}
