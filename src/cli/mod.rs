//! The command line: one file per command group, each printing a readable
//! table by default and JSON with `--json`.

mod agreement;
mod amend;
mod audit;
mod backup;
mod bench;
mod choice;
mod console;
mod demo;
mod disclose;
mod drill;
mod envelope;
mod export;
mod files;
mod keygen;
mod node;
mod ops;
mod reconcile;
mod report;
mod roster;
mod runtime;
mod view;
mod view_status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use view::Out;

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
    /// Copy a node's store, consistent and verified, while it serves.
    Backup(backup::BackupArgs),
    /// Put a backup in place as a stopped node's store, once it verifies completely.
    Restore(backup::RestoreArgs),
    /// Send or show notices.
    #[command(subcommand)]
    Notice(ops::NoticeCommand),
    /// List notices sent and received; --follow streams new events.
    Inbox(ops::InboxArgs),
    /// Respond to a received notice.
    Respond(ops::RespondArgs),
    /// Say that a point of contact read a received notice: stops its acknowledgement clock only.
    Acknowledge(ops::AcknowledgeArgs),
    /// Peers, running deadlines and recent norm events.
    Status(ops::Conn),
    /// The duty desk in a terminal: inbox, clocks counting down, links; keys to acknowledge, respond, check.
    Console(console::Args),
    /// Send a communication check to one peer, or all; --human asks a person to acknowledge it.
    CommCheck {
        /// The peer (default: every peer).
        party: Option<String>,
        /// A human check: a point of contact must acknowledge it (hotline acknowledge ID) within
        /// comm_check_answer_within; its round-trip time is recorded and shown by status.
        #[arg(long)]
        human: bool,
        #[command(flatten)]
        conn: ops::Conn,
    },
    /// Sign, publish or show a party's roster of points of contact.
    #[command(subcommand)]
    Roster(roster::Command),
    /// Generate an Ed25519 identity key in the C2SP signed-note formats.
    Keygen(keygen::Args),
    /// Assemble, sign, verify or show the signed agreement; propose, review, approve or reject amendments.
    #[command(subcommand)]
    Agreement(agreement::Command),
    /// Read, prove, verify and export a node's audit log.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Write the compliance report of a node's log as one self-contained HTML file.
    Report(report::Args),
    /// Export the notices this node may share, for CERT tools (STIX 2.1).
    #[command(subcommand)]
    Export(export::Command),
    /// A hotline of N parties on loopback: a full communication-check round and a notice to all, measured.
    Drill(drill::Args),
    /// Measure throughput, latency, memory and verification on this machine.
    Bench(bench::Args),
    /// Sign or verify a DSSE envelope in its JSON form.
    #[command(subcommand)]
    Envelope(envelope::Command),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let out = Out { json: cli.json };
    match cli.command {
        Command::Keygen(args) => keygen::run(args, out),
        Command::Demo(args) => demo::run(args, out),
        Command::Init(args) => node::init(args, out),
        Command::Serve(args) => node::serve(args),
        Command::Backup(args) => backup::backup(args, out),
        Command::Restore(args) => backup::restore(args, out),
        Command::Notice(cmd) => ops::notice(cmd, out),
        Command::Inbox(args) => ops::inbox(args, out),
        Command::Respond(args) => ops::respond(args, out),
        Command::Acknowledge(args) => ops::acknowledge(args, out),
        Command::Status(conn) => ops::status(conn, out),
        Command::Console(args) => console::run(args, out),
        Command::CommCheck { party, human, conn } => ops::comm_check(party, human, conn, out),
        Command::Agreement(cmd) => agreement::run(cmd, out),
        Command::Roster(cmd) => roster::run(cmd, out),
        Command::Envelope(cmd) => envelope::run(cmd, out),
        Command::Audit(cmd) => audit::run(cmd, out),
        Command::Export(cmd) => export::run(cmd, out),
        Command::Report(args) => report::run(args, out),
        Command::Bench(cmd) => bench::run(cmd, out),
        Command::Drill(args) => drill::run(args, out),
    }
}
