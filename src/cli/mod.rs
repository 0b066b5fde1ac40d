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
mod examples;
mod export;
mod files;
mod keygen;
mod manual;
mod node;
mod notice;
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
    Notice(notice::NoticeCommand),
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
    /// Write a manual page for hotline and each of its commands.
    Man(manual::ManArgs),
    /// Print the completion script for a shell.
    Completions(manual::CompletionArgs),
}

/// The command tree, each command's examples in its help.
fn command() -> clap::Command {
    examples::with_examples(<Cli as clap::CommandFactory>::command())
}

/// The command line as typed, parsed against the command tree.
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
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
        Command::Notice(cmd) => notice::notice(cmd, out),
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
        Command::Man(args) => manual::man(args, command(), out),
        Command::Completions(args) => manual::completions(args, command()),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use crate::cli::Cli;
    use crate::cli::examples::{EXAMPLES, with_examples};

    /// Every command path, with its command.
    fn commands() -> Vec<(String, clap::Command)> {
        fn walk(cmd: &clap::Command, path: &str, all: &mut Vec<(String, clap::Command)>) {
            for s in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let sub = format!("{path} {}", s.get_name()).trim().to_owned();
                all.push((sub.clone(), s.clone()));
                walk(s, &sub, all);
            }
        }
        let mut all = Vec::new();
        walk(&Cli::command(), "", &mut all);
        all
    }

    /// A command line split as a shell would, for the simple quoting the examples use.
    fn words(line: &str) -> Vec<String> {
        let line = line.split("  #").next().unwrap_or(line);
        let line = line.split(" > ").next().unwrap_or(line);
        let mut words = vec![String::new()];
        let mut quoted = false;
        for c in line.trim().chars() {
            match c {
                '"' => quoted = !quoted,
                ' ' if !quoted => words.push(String::new()),
                c => words.last_mut().unwrap().push(c),
            }
        }
        words.retain(|w| !w.is_empty());
        words
    }

    #[test]
    fn every_command_that_runs_has_examples_and_only_commands_do() {
        let commands = commands();
        for (path, cmd) in &commands {
            // A group whose subcommand is required runs nothing itself (`notice`); `bench` does.
            if !cmd.has_subcommands() || !cmd.is_subcommand_required_set() {
                assert!(
                    EXAMPLES.iter().any(|(p, _)| p == path),
                    "`hotline {path}` has no examples"
                );
            }
        }
        for (path, _) in EXAMPLES {
            assert!(
                commands.iter().any(|(p, _)| p == path),
                "examples for no command: {path}"
            );
        }
    }

    #[test]
    fn every_example_parses_as_written() {
        for (path, lines) in EXAMPLES {
            for line in lines.lines() {
                let args = words(line.trim_start_matches("ssh duty@per-node "));
                assert_eq!(args.first().map(String::as_str), Some("hotline"), "{line}");
                let parsed = with_examples(Cli::command())
                    .try_get_matches_from(&args)
                    .and_then(|m| Cli::from_arg_matches(&m));
                assert!(
                    parsed.is_ok(),
                    "`hotline {path}` example does not parse: {line}\n{:?}",
                    parsed.err()
                );
            }
        }
    }

    #[test]
    fn every_command_and_flag_the_docs_name_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("README.md")];
        for e in std::fs::read_dir(root.join("docs")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
        let cli = Cli::command();
        let mut checked = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (at, _) in text.match_indices("hotline ") {
                // The word itself, not the end of a path or a name (`/etc/hotline --dir`).
                if text[..at].ends_with(|c: char| c.is_alphanumeric() || "/-_.".contains(c)) {
                    continue;
                }
                // One command line: up to the end of the line, a backtick, a pipe or a comment.
                let rest = &text[at + "hotline ".len()..];
                let end = rest.find(['\n', '`', '|', '#', ';', ')', ',']).unwrap_or(rest.len());
                let tokens: Vec<&str> = rest[..end].split_whitespace().collect();
                let mut cmd = &cli;
                let mut path = Vec::new();
                let mut flags = Vec::new();
                for t in &tokens {
                    let t = t.trim_start_matches(['[', '(']);
                    if let Some(flag) = t.strip_prefix("--") {
                        let flag = flag.split(['=', '[', ']']).next().unwrap_or(flag);
                        if !flag.is_empty() {
                            flags.push(flag.to_owned());
                        }
                    } else if let Some(sub) = cmd.find_subcommand(t) {
                        cmd = sub;
                        path.push(t);
                    }
                }
                // Prose such as "a hotline node" names no command.
                if path.is_empty() && !tokens.first().is_some_and(|t| t.starts_with("--")) {
                    continue;
                }
                for flag in &flags {
                    let known = cmd.get_arguments().any(|a| a.get_long() == Some(flag.as_str()))
                        || cli.get_arguments().any(|a| a.get_long() == Some(flag.as_str()))
                        || flag == "help"
                        || (flag == "version" && path.is_empty());
                    assert!(
                        known,
                        "{}: `hotline {}` has no --{flag} (in: hotline {})",
                        file.display(),
                        path.join(" "),
                        &rest[..end]
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "the docs name many flags: {checked}");
    }
}
