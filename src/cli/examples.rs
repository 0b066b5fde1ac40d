//! The examples each command's `--help` (and its manual page) ends with,
//! kept in one table. The tests in `cli/mod.rs` hold it to the command
//! tree: every command has examples, every example parses as written, and
//! every `hotline …` command and flag the README and `docs/` name exists.

use clap::Command;

/// Examples by command path, one command line each, a `#` comment after it.
pub(super) const EXAMPLES: &[(&str, &str)] = &[
    (
        "demo",
        "hotline demo
hotline demo --keep /tmp/hotline    # leave the three nodes running for the CLI
hotline demo --timeline --out demo   # every log entry, and the report and STIX export in demo/",
    ),
    (
        "init",
        "hotline init --party PER --dir per --listen 0.0.0.0:7443 --endpoint https://per.example:7443
hotline init --party PER --dir per --listen 127.0.0.1:7001   # a test on one machine",
    ),
    (
        "serve",
        "hotline serve --config per/hotline.toml
hotline serve --config per/hotline.toml --log-format json   # one JSON object per line",
    ),
    ("backup", "hotline backup --config per/hotline.toml --out per-2026-12-06.backup"),
    (
        "restore",
        "hotline restore per-2026-12-06.backup --config per/hotline.toml   # the node stopped, its store gone",
    ),
    (
        "notice send",
        "hotline notice send --to CHL,ARG --severity high --tlp amber --title \"Wiper at a grid operator\"
hotline notice send --to CHL --severity low --tlp clear --title \"Scan\" --indicator ipv4-addr=192.0.2.7
hotline notice send --to CHL --severity medium --title \"Phishing\" --translation \"es=Suplantación\"
hotline notice send -q --wait 10s --to CHL --severity high --title \"Wiper\"",
    ),
    (
        "notice show",
        "hotline notice show 01a2495c-bd4d-76de-b469-9e3ded9b7a40
hotline notice show 01a2495c-bd4d   # the start of one notice's id will do",
    ),
    (
        "inbox",
        "hotline inbox
hotline inbox --follow          # stream notices, responses, receipts, norm events and links
hotline --json inbox --follow   # one JSON line per event",
    ),
    (
        "respond",
        "hotline respond 01a2495c-bd4d --status investigating --text \"On it\" --promised-by 4h
hotline respond 01a2495c-bd4d --status declined --reason outside-jurisdiction --text \"Not ours\"",
    ),
    (
        "acknowledge",
        "hotline acknowledge 01a2495c-bd4d
hotline acknowledge 01a2495c-bd4d --text \"Read; the duty officer is on it\"",
    ),
    ("status", "hotline status\nhotline --json status"),
    (
        "console",
        "hotline console --config per/hotline.toml
ssh duty@per-node hotline console   # 80x24 is enough",
    ),
    (
        "comm-check",
        "hotline comm-check               # every peer, answered by its node
hotline comm-check CHL --human   # a person at CHL must acknowledge it",
    ),
    (
        "roster set",
        "hotline roster set per/roster.toml --key per/identity.key   # sign and publish",
    ),
    ("roster publish", "hotline roster publish per/roster.signed"),
    ("roster show", "hotline roster show\nhotline roster show CHL"),
    (
        "keygen",
        "hotline keygen --name hotline.example/PER --out per",
    ),
    (
        "agreement new",
        "hotline agreement new per/party.toml chl/party.toml --out agreement.toml",
    ),
    ("agreement sign", "hotline agreement sign agreement.toml --key per/identity.key"),
    ("agreement verify", "hotline agreement verify agreement.toml"),
    ("agreement show", "hotline agreement show agreement.toml"),
    (
        "agreement propose",
        "hotline agreement propose --add est/party.toml --reason \"Estonia joins\"
hotline agreement propose --remove BRA --reason \"Brazil leaves\"",
    ),
    ("agreement pending", "hotline agreement pending"),
    ("agreement approve", "hotline agreement approve 2"),
    ("agreement reject", "hotline agreement reject 2 --reason \"Not the agreed text\""),
    (
        "agreement fetch",
        "hotline agreement fetch --from https://per.example:7443 --ca per-ca.pem --config est/hotline.toml",
    ),
    (
        "audit checkpoint",
        "hotline audit checkpoint --config per/hotline.toml\nhotline audit checkpoint --data per-copy",
    ),
    ("audit entries", "hotline audit entries --data per --start 0 --end 20"),
    ("audit prove", "hotline audit prove --data per --index 17"),
    (
        "audit verify",
        "hotline audit verify --config per/hotline.toml
hotline audit verify --data per-copy --vkey per/identity.pub
hotline audit verify --export per-export --agreement agreement.toml",
    ),
    (
        "audit export",
        "hotline audit export --data per --out per-export                       # the public tier
hotline audit export --data per --out per-green --envelopes-up-to green",
    ),
    (
        "audit disclose",
        "hotline audit disclose 01a2495c-bd4d --data per --out disclosure.json",
    ),
    (
        "audit verify-disclosure",
        "hotline audit verify-disclosure disclosure.json --agreement agreement.toml",
    ),
    (
        "audit reconcile",
        "hotline audit reconcile --agreement agreement.toml per-export chl-export arg-export --report joint.html",
    ),
    (
        "report",
        "hotline report --config per/hotline.toml --out report.html
hotline report --node https://per.example:7443 --ca ca.pem --cert auditor.pem --cert-key auditor.key --agreement agreement.toml",
    ),
    (
        "export stix",
        "hotline export stix --config per/hotline.toml --max-tlp green --out bundle.json",
    ),
    (
        "drill",
        "hotline drill --parties 10
hotline drill --parties 50 --link satellite",
    ),
    (
        "bench",
        "hotline bench
hotline bench --exchanges 10000 --log-entries 0   # the exchanges only",
    ),
    ("bench log", "hotline bench log --entries 1000000"),
    ("bench flood", "hotline bench flood --seconds 10"),
    (
        "bench sign",
        "hotline bench sign --config per/hotline.toml   # the node's key (a token's) beside a key file",
    ),
    (
        "envelope sign",
        "hotline envelope sign notice.pb --key per/identity.key --type notice > notice.json",
    ),
    (
        "envelope verify",
        "hotline envelope verify notice.json --agreement agreement.toml",
    ),
    ("man", "hotline man --out /usr/local/share/man/man1"),
    (
        "completions",
        "hotline completions bash > /etc/bash_completion.d/hotline
hotline completions zsh > ~/.zfunc/_hotline",
    ),
];

/// The command tree with each command's examples after its help.
pub fn with_examples(cmd: Command) -> Command {
    fn add(cmd: Command, path: &str) -> Command {
        let cmd = match EXAMPLES.iter().find(|(p, _)| *p == path) {
            Some((_, lines)) => {
                let indented: Vec<String> = lines.lines().map(|l| format!("  {l}")).collect();
                cmd.after_help(format!("Examples:\n{}", indented.join("\n")))
            }
            None => cmd,
        };
        let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
        names.into_iter().fold(cmd, |cmd, name| {
            let sub = format!("{path} {name}").trim().to_owned();
            cmd.mut_subcommand(&name, |s| add(s, &sub))
        })
    }
    add(cmd, "")
}
