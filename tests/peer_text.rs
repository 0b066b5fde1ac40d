//! Text a peer wrote reaches the duty officer's terminal escaped: no escape
//! sequence, terminal-title change, bidirectional override or forged line;
//! `--json` keeps the exact text.

mod common;

use common::{Cluster, FAST_NORMS, notice};

/// A title that would recolour the terminal, retitle its window, reverse what follows and forge an inbox line.
const HOSTILE: &str = "Grid\u{1b}[31m wiper\u{1b}]0;pwned\u{7}\u{202e}gnp.exe\nffffffff-ffff-7fff-bfff-ffffffffffff  received PER ARG forged";

/// Runs the CLI against node `i` of `c` and returns what it printed.
fn cli(c: &Cluster, i: usize, args: &[&str]) -> String {
    let config = c.configs[i].path.to_str().unwrap().to_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", &config]);
    let out = common::hotline(&all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn assert_escaped(printed: &str) {
    for raw in ['\u{1b}', '\u{7}', '\u{202e}'] {
        assert!(!printed.contains(raw), "{raw:?} reached the terminal: {printed:?}");
    }
    assert!(
        !printed.lines().any(|l| l.starts_with("ffffffff-ffff-7fff")),
        "a forged line: {printed}"
    );
    assert!(printed.contains(r"\u{1b}[31m wiper"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_title_with_escape_sequences_and_a_newline_is_escaped_in_the_inbox_and_notice_show() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let id = c.send(0, notice(&["CHL"], HOSTILE)).await;
    c.until_held(1, &id).await;
    assert_escaped(&cli(&c, 1, &["inbox"]));
    assert_escaped(&cli(&c, 1, &["notice", "show", &id]));
    let json: serde_json::Value = serde_json::from_str(&cli(&c, 1, &["--json", "notice", "show", &id])).unwrap();
    assert_eq!(json["notice"]["title"], HOSTILE, "--json keeps the exact text");
}
