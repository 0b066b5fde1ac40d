//! `hotline console` in a real terminal: tmux runs it in 80×24 against a
//! real node, types its keys (`send-keys`) and reads its screen
//! (`capture-pane`), as the officer on watch would see it.

mod common;

use std::process::Command;

use common::{Cluster, FAST_NORMS, awaited, notice};
use hotline::proto::{GetNoticeRequest, Response, ResponseStatus};
use prost::Message as _;

/// A tmux server of the test's own, killed when the test ends.
struct Tmux {
    tmux: std::path::PathBuf,
    socket: String,
}

impl Tmux {
    /// Starts `hotline console --config CONFIG` in an 80×24 window.
    fn console(config: &std::path::Path) -> Option<Tmux> {
        let tmux = common::outside_tool("tmux", "run the console in a terminal (Debian: tmux)")?;
        static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = Tmux {
            tmux,
            socket: format!("hotline-console-{}-{n}", std::process::id()),
        };
        // What the console printed, kept on screen if it exits.
        let shell = format!(
            "{} console --config {}; echo console exited $?; sleep 600",
            env!("CARGO_BIN_EXE_hotline"),
            config.display()
        );
        t.run(&["new-session", "-d", "-s", "duty", "-x", "80", "-y", "24", &shell]);
        Some(t)
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.tmux)
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen as text.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "duty"])
    }

    /// Waits until the screen shows `text`; returns the screen.
    async fn shows(&self, text: &str) -> String {
        awaited(&format!("the console to show {text:?}"), || async {
            let screen = self.screen();
            screen.contains(text).then_some(screen)
        })
        .await
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "duty", keys]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new(&self.tmux)
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// CHL's response of `status` to notice `id`, once PER holds it.
async fn answer_at_per(c: &Cluster, id: &str, status: ResponseStatus) -> Response {
    awaited(&format!("CHL's {status:?} at PER"), || {
        let mut op = c.operator(0);
        let id = id.to_owned();
        async move {
            let t = op.get_notice(GetNoticeRequest { id }).await.ok()?.into_inner();
            t.responses
                .iter()
                .filter_map(|e| Response::decode(&e.payload[..]).ok())
                .find(|r| r.from == "CHL" && r.status() == status)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_arriving_appears_and_an_acknowledgement_typed_in_the_console_reaches_the_sender() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let Some(tmux) = Tmux::console(&c.configs[1].path) else {
        return;
    };
    tmux.shows("hotline console · CHL").await;

    let id = c.send(0, notice(&["CHL"], "Wiper at the grid operator")).await;
    let screen = tmux
        .shows("NOTICE from PER high AMBER: Wiper at the grid operator")
        .await;
    // In the inbox with its acknowledgement clock (counting down on the
    // real clock to a deadline set on the nodes' still one), and in the running clocks.
    assert!(
        screen
            .lines()
            .any(|l| l.contains("›from PER") && l.contains("ack ") && l.contains("Wiper")),
        "{screen}"
    );
    assert!(
        screen.contains("CHL    owes ack      for Wiper at the grid operator"),
        "{screen}"
    );
    assert!(screen.contains("PER    up"), "PER's link is shown: {screen}");
    assert_eq!(screen.lines().count(), 24, "it fits 80×24: {screen}");

    tmux.keys("a");
    tmux.shows("acknowledged notice").await;
    let acknowledged = answer_at_per(&c, &id, ResponseStatus::Acknowledged).await;
    assert_eq!(acknowledged.notice_id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_typed_in_the_console_reaches_the_sender_with_its_status_and_text() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let Some(tmux) = Tmux::console(&c.configs[1].path) else {
        return;
    };
    tmux.shows("hotline console · CHL").await;
    let id = c.send(0, notice(&["CHL"], "Phishing wave")).await;
    tmux.shows("Phishing wave").await;

    // r opens the prompt; Tab steps investigating → assistance offered.
    tmux.keys("r");
    tmux.shows("respond investigating").await;
    tmux.keys("Tab");
    tmux.run(&["send-keys", "-t", "duty", "-l", "we can help"]);
    tmux.shows("respond assistance_offered: we can help_").await;
    tmux.keys("Enter");
    tmux.shows("answered assistance_offered").await;
    let answer = answer_at_per(&c, &id, ResponseStatus::AssistanceOffered).await;
    assert_eq!(answer.text, "we can help");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_from_a_peer_cannot_drive_the_operators_terminal() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let Some(tmux) = Tmux::console(&c.configs[1].path) else {
        return;
    };
    tmux.shows("hotline console · CHL").await;
    c.send(0, notice(&["CHL"], "Red \u{1b}[31malert\u{1b}]0;owned\u{7}"))
        .await;
    let screen = tmux.shows("alert").await;
    assert!(screen.contains(r"Red \u{1b}[31malert\u{1b}]0;owned\u{7}"), "{screen}");
}
