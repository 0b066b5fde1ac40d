//! The operator CLI against real `hotline serve` processes, set up the way a
//! party would: `init`, `agreement new|sign`, `serve`; then `notice send`,
//! `inbox`, `notice show`, `respond`, `status`, `comm-check`, `roster set|show`;
//! `hotline demo` and `hotline drill`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{hotline, hotline_json, until};

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

struct Serve(Child);

impl Serve {
    /// SIGTERM, then the exit status: a graceful stop exits 0.
    fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "hotline serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &Path) -> Serve {
    Serve(
        Command::new(env!("CARGO_BIN_EXE_hotline"))
            .args(["serve", "--config", &s(config)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn two_parties_set_up_and_operated_from_the_command_line() {
    let root = tempfile::tempdir().unwrap();
    let (per, chl, _) = two_parties(root.path());
    // init refuses to overwrite a party.
    let again = hotline(&["init", "--party", "PER", "--dir", &s(&per)]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    let (pc, cc) = (s(&per.join("hotline.toml")), s(&chl.join("hotline.toml")));
    let _nodes = (serve(Path::new(&pc)), serve(Path::new(&cc)));
    until(30, "both nodes answer status", || {
        hotline(&["status", "--config", &pc]).status.success() && hotline(&["status", "--config", &cc]).status.success()
    });

    // Follow CHL's inbox while PER sends.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["--json", "inbox", "--follow", "--config", &cc])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut follow_lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    follow_lines.next(); // the initial (empty) list

    let (ok, v) = hotline_json(&[
        "notice",
        "send",
        "--config",
        &pc,
        "--to",
        "CHL",
        "--severity",
        "high",
        "--category",
        "malicious-code",
        "--tlp",
        "amber",
        "--title",
        "Wiper at the grid",
        "--summary",
        "SCADA historians wiped",
        "--indicator",
        "ipv4-addr=192.0.2.7",
        "--sector",
        "energy",
    ]);
    assert!(ok, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();

    let event: serde_json::Value = serde_json::from_str(&follow_lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(event["type"], "notice");
    assert_eq!(event["event"]["id"], id.as_str());
    let _ = follow.kill();
    let _ = follow.wait();

    until(20, "PER holds CHL's receipt", || {
        let (_, v) = hotline_json(&["notice", "show", &id, "--config", &pc]);
        v["receipts"].as_array().is_some_and(|r| r.len() == 1)
    });
    let (ok, v) = hotline_json(&["inbox", "--config", &cc]);
    assert!(ok);
    assert_eq!(v[0]["id"], id.as_str());
    assert_eq!(v[0]["direction"], "received");
    assert_eq!(v[0]["indicators"][0]["value"], "192.0.2.7");

    // CHL's designated official names its duty officer in roster version 2, signed with CHL's key.
    let roster = chl.join("roster.toml");
    let text = std::fs::read_to_string(&roster).unwrap();
    std::fs::write(
        &roster,
        text.replace("version = 1", "version = 2")
            .replace("CHL duty officer", "María Rojas"),
    )
    .unwrap();
    let (ok, v) = hotline_json(&[
        "roster",
        "set",
        &s(&roster),
        "--key",
        &s(&chl.join("identity.key")),
        "--config",
        &cc,
    ]);
    assert!(ok, "{v}");
    until(20, "PER holds CHL's roster version 2", || {
        let (_, v) = hotline_json(&["roster", "show", "CHL", "--config", &pc]);
        v["version"] == 2 && v["contacts"][0]["name"] == "María Rojas"
    });

    let (ok, v) = hotline_json(&[
        "respond",
        &id,
        "--config",
        &cc,
        "--status",
        "investigating",
        "--text",
        "on it",
    ]);
    assert!(ok, "{v}");
    until(20, "PER sees the response", || {
        let (_, v) = hotline_json(&["notice", "show", &id, "--config", &pc]);
        v["responses"].as_array().is_some_and(|r| r.len() == 1)
    });
    let shown = String::from_utf8_lossy(&hotline(&["notice", "show", &id, "--config", &pc]).stdout).into_owned();
    assert!(
        shown.contains("answered") && shown.contains("by María Rojas (technical, policy, CHL)"),
        "{shown}"
    );
    let (ok, v) = hotline_json(&["comm-check", "--config", &pc]);
    assert!(ok, "{v}");
    until(20, "comm check answered", || {
        let (_, v) = hotline_json(&["status", "--config", &pc]);
        v["peers"][0]["last_comm_check_ok"].as_str().is_some_and(|t| t != "-")
    });

    // An exercise in two languages, the Spanish text authoritative: notice show says so.
    let (ok, v) = hotline_json(&[
        "notice",
        "send",
        "--config",
        &pc,
        "--to",
        "CHL",
        "--severity",
        "low",
        "--title",
        "Drill",
        "--language",
        "en",
        "--translation",
        "es=Simulacro|Resumen",
        "--authoritative",
        "es",
        "--exercise",
        "tabletop",
    ]);
    assert!(ok, "{v}");
    let drill = v["id"].as_str().unwrap().to_owned();
    let shown = hotline(&["notice", "show", &drill, "--config", &pc]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("EXERCISE (tabletop)") && text.contains("title    Simulacro") && text.contains("also in en"),
        "{text}"
    );

    // Errors name the field or peer at fault, on one line.
    let out = hotline(&[
        "notice",
        "send",
        "--config",
        &pc,
        "--to",
        "XXX",
        "--severity",
        "low",
        "--title",
        "t",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("XXX") && err.lines().count() == 1, "{err}");
    let out = hotline(&[
        "notice",
        "send",
        "--config",
        &pc,
        "--to",
        "CHL",
        "--severity",
        "huge",
        "--title",
        "t",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--severity"));

    // A graceful stop on SIGTERM, then the log verifies offline.
    let (a, b) = _nodes;
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    let (ok, v) = hotline_json(&["audit", "verify", "--data", &s(&per)]);
    assert!(ok, "{v}");
    // An offline command takes the node's configuration, as the operator commands do, or its
    // data directory; and a verifier key as its text or as the file that holds it.
    let (ok, v) = hotline_json(&["audit", "verify", "--config", &pc]);
    assert!(ok && v["valid"] == true, "{v}");
    let vkey = s(&per.join("identity.pub"));
    let (ok, v) = hotline_json(&["audit", "verify", "--data", &s(&per), "--vkey", &vkey]);
    assert!(ok && v["valid"] == true, "{v}");
    let out = hotline(&["audit", "checkpoint", "--config", &pc]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_demo_runs_to_completion_and_verifies_every_log() {
    let files = tempfile::tempdir().unwrap();
    let (ok, v) = hotline_json(&["demo", "--out", &s(files.path())]);
    assert!(ok, "{v}");
    // Three parties, and a fourth that joins by an amendment adopted while the nodes run.
    assert_eq!(v["logs"].as_array().unwrap().len(), 4);
    assert!(v["witnessed_checkpoints"].as_u64().unwrap() >= 5);
    let timeline = v["timeline"].as_array().unwrap();
    // The timeline's lines read as English.
    let lines: Vec<&str> = timeline.iter().filter_map(|e| e["entry"].as_str()).collect();
    for slip in ["notice notice", "response response", "owed a acknowledge"] {
        assert!(lines.iter().all(|l| !l.contains(slip)), "{slip:?} in {lines:?}");
    }
    assert!(lines.iter().any(|l| l.contains("owed an acknowledgement")), "{lines:?}");
    for party in ["PER", "CHL", "ARG", "EST"] {
        assert!(
            timeline
                .iter()
                .any(|e| e["party"] == party && e["entry"] == "adopted agreement version 2"),
            "{party} did not adopt version 2"
        );
    }
    assert!(
        timeline
            .iter()
            .any(|e| e["entry"].as_str().unwrap().starts_with("DEADLINE_MISSED ARG"))
    );
    assert!(
        timeline
            .iter()
            .any(|e| e["entry"].as_str().unwrap().starts_with("COMM_CHECK_OK"))
    );
    // The four public exports reconcile with no contradiction; CHL's log rewritten without the
    // notice is found, by the receipt CHL signed, and no one else is named.
    let dispute = &v["dispute"];
    assert_eq!(dispute["clean"]["findings"].as_array().unwrap().len(), 0, "{dispute:#}");
    let found = dispute["rewritten"]["findings"].as_array().unwrap();
    assert!(
        found
            .iter()
            .any(|f| f["kind"] == "denied" && f["message_id"] == v["notice"]),
        "{dispute:#}"
    );
    assert!(found.iter().all(|f| f["party"] == "CHL"), "{dispute:#}");
    // The joint report of it opens in a real browser with no console errors, the finding linked from its cell.
    let joint = std::path::PathBuf::from(dispute["report"].as_str().unwrap());
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-joint-report.png");
    if let Some(rendered) = common::chromium(&joint, &shot) {
        assert!(rendered.console.is_empty(), "console: {:?}", rendered.console);
        assert!(
            rendered.dom.contains(r#"data-pair="PER-CHL""#) && rendered.dom.contains(r##"<a href="#f0">denied</a>"##),
            "the PER to CHL cell links the finding"
        );
    }
    // PER's report opens in a real browser with no console errors; its STIX export passes OASIS's validator.
    let report = std::path::PathBuf::from(v["report"].as_str().unwrap());
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-report.png");
    if let Some(rendered) = common::chromium(&report, &screenshot) {
        assert!(rendered.console.is_empty(), "console: {:?}", rendered.console);
        assert!(
            rendered.dom.contains("by María Rojas"),
            "the named acknowledgement is in the timeline"
        );
    }
    if let Some(validator) = common::outside_tool("stix2_validator", "check the demo's STIX export") {
        let checked = Command::new(validator)
            .arg("--strict")
            .arg(v["stix"].as_str().unwrap())
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&checked.stdout);
        assert!(
            checked.status.success() && report.contains("STIX JSON: Valid"),
            "{report}"
        );
    }
}

/// PER and CHL set up as parties do: `init`, `agreement new`, each signs, each
/// copies the agreement into its folder. Returns their folders and the agreement.
fn two_parties(root: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let (per, chl) = (init_party(root, "PER"), init_party(root, "CHL"));
    // Each has an encryption key of its own (0600), published in its agreement entry.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(per.join("encryption.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let entry = std::fs::read_to_string(per.join("party.toml")).unwrap();
    let key = hotline::seal::SealKey::load(&per.join("encryption.key")).unwrap();
    assert!(
        entry.contains(&format!("key = \"{}\"", key.public().encode())),
        "{entry}"
    );
    let agreement = root.join("agreement.toml");
    let (ok, v) = hotline_json(&[
        "agreement",
        "new",
        &s(&per.join("party.toml")),
        &s(&chl.join("party.toml")),
        "--out",
        &s(&agreement),
    ]);
    assert!(ok, "{v}");
    for dir in [&per, &chl] {
        let (ok, v) = hotline_json(&[
            "agreement",
            "sign",
            &s(&agreement),
            "--key",
            &s(&dir.join("identity.key")),
        ]);
        assert!(ok, "{v}");
    }
    for dir in [&per, &chl] {
        std::fs::copy(&agreement, dir.join("agreement.toml")).unwrap();
    }
    (per, chl, agreement)
}

/// Creates party `id` in `root/<id>` with `hotline init` on a free port.
fn init_party(root: &Path, id: &str) -> std::path::PathBuf {
    let dir = root.join(id);
    let (ok, v) = hotline_json(&[
        "init",
        "--party",
        id,
        "--dir",
        &s(&dir),
        "--listen",
        &format!("127.0.0.1:{}", common::free_port()),
    ]);
    assert!(ok, "{v}");
    dir
}

#[test]
fn a_party_joins_from_the_command_line_while_the_nodes_run() {
    let root = tempfile::tempdir().unwrap();
    let (per, chl, v1) = two_parties(root.path());
    let (pc, cc) = (s(&per.join("hotline.toml")), s(&chl.join("hotline.toml")));
    let _nodes = (serve(Path::new(&pc)), serve(Path::new(&cc)));
    until(30, "both nodes answer status", || {
        hotline(&["status", "--config", &pc]).status.success() && hotline(&["status", "--config", &cc]).status.success()
    });

    // EST hands its party.toml to PER, signs the version PER writes, and PER proposes it.
    let est = init_party(root.path(), "EST");
    let v2 = root.path().join("v2.toml");
    let (ok, v) = hotline_json(&[
        "agreement",
        "propose",
        "--config",
        &pc,
        "--add",
        &s(&est.join("party.toml")),
        "--out",
        &s(&v2),
    ]);
    assert!(ok, "{v}");
    assert!(
        hotline(&["agreement", "sign", &s(&v2), "--key", &s(&est.join("identity.key"))])
            .status
            .success()
    );
    let (ok, v) = hotline_json(&[
        "agreement",
        "propose",
        &s(&v2),
        "--config",
        &pc,
        "--reason",
        "EST joins",
    ]);
    assert!(ok, "{v}");

    // CHL reviews what changes and approves; both nodes adopt version 2 as they run.
    until(20, "CHL sees the proposal", || {
        let (_, v) = hotline_json(&["agreement", "pending", "--config", &cc]);
        v["pending"].as_array().is_some_and(|p| p.len() == 1)
    });
    let (_, v) = hotline_json(&["agreement", "pending", "--config", &cc]);
    let changes = v["pending"][0]["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c.as_str().unwrap().starts_with("+ party EST")),
        "{v}"
    );
    assert_eq!(v["pending"][0]["approved_by"], serde_json::json!(["PER", "EST"]));
    let (ok, v) = hotline_json(&["agreement", "approve", "2", "--config", &cc]);
    assert!(ok, "{v}");
    assert_eq!(v["adopted"], true, "{v}");
    until(20, "PER adopted version 2", || {
        let (_, v) = hotline_json(&["agreement", "pending", "--config", &pc]);
        v["version"] == 2
    });

    // EST fetches the version in force from PER and starts; PER reaches it.
    let per_endpoint = std::fs::read_to_string(per.join("party.toml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("endpoint = ").map(|e| e.trim_matches('"').to_owned()))
        .unwrap();
    let (ok, v) = hotline_json(&[
        "agreement",
        "fetch",
        "--config",
        &s(&est.join("hotline.toml")),
        "--from",
        &per_endpoint,
        "--ca",
        &s(&per.join("tls/ca.pem")),
        "--out",
        &s(&est.join("agreement.toml")),
    ]);
    assert!(ok, "{v}");
    let ec = s(&est.join("hotline.toml"));
    let _est = serve(Path::new(&ec));
    until(30, "EST answers status", || {
        hotline(&["status", "--config", &ec]).status.success()
    });
    let (ok, v) = hotline_json(&[
        "notice",
        "send",
        "--config",
        &pc,
        "--to",
        "EST",
        "--severity",
        "low",
        "--title",
        "Welcome",
    ]);
    assert!(ok, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    until(20, "EST holds PER's notice", || {
        let (_, v) = hotline_json(&["inbox", "--config", &ec]);
        v.as_array().is_some_and(|l| l.iter().any(|n| n["id"] == id.as_str()))
    });
    let (ok, v) = hotline_json(&[
        "agreement",
        "verify",
        "--chain",
        &s(&v1),
        &s(&est.join("agreement.toml")),
    ]);
    assert!(ok, "{v}");
}

#[test]
fn a_drill_of_four_parties_completes_both_phases_and_verifies_and_reconciles_every_log() {
    let (ok, v) = hotline_json(&["drill", "--parties", "4", "--timeout", "120"]);
    assert!(ok, "{v}");
    assert_eq!(
        (v["parties"].as_u64(), v["logs_verified"].as_u64()),
        (Some(4), Some(4)),
        "{v}"
    );
    for phase in ["start", "comm_check_round", "notice_to_all", "verify_every_log"] {
        assert!(v["seconds"][phase].as_f64().is_some(), "{phase}: {v}");
    }
    assert!(v["peak_rss_mib"]["max"].as_f64().unwrap() > 0.0, "{v}");
    // Every log's public export reconciles with every other's, with no finding.
    assert_eq!(v["reconciled"]["findings"], 0, "{v}");
    assert!(v["reconciled"]["receipts"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["sockets_per_node"]["max"].as_f64().unwrap() >= 3.0,
        "each node talks to its 3 peers: {v}"
    );
    // A check and its answer each way between 4 parties, plus rosters and the notice: entries on every log.
    assert!(v["log_entries_per_node"]["mean"].as_f64().unwrap() > 20.0, "{v}");
}

#[test]
fn a_drill_over_satellite_links_delivers_every_message_once_through_the_proxies() {
    let (ok, v) = hotline_json(&["drill", "--parties", "3", "--timeout", "120", "--link", "satellite"]);
    assert!(ok, "{v}");
    let d = &v["delivery"];
    assert!(d["owed"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(
        (d["receipted"].as_u64(), d["duplicates"].as_u64()),
        (d["owed"].as_u64(), Some(0)),
        "{v}"
    );
    // 300 ms each way: no receipt comes back sooner than a round trip through the proxy.
    assert!(d["median_ms"].as_i64().unwrap() >= 600, "{v}");
    assert!(
        v["wire_bytes"].as_u64().unwrap() > 0,
        "the traffic went through the proxies: {v}"
    );
    assert_eq!(v["reconciled"]["findings"], 0, "{v}");
}

#[test]
fn a_peer_that_cannot_be_reached_is_named_by_send_status_and_show() {
    let root = tempfile::tempdir().unwrap();
    let (per, _chl, _) = two_parties(root.path());
    let pc = s(&per.join("hotline.toml"));
    // CHL's node is never started: PER's first roster delivery to it fails.
    let node = serve(&per.join("hotline.toml"));
    until(30, "PER finds CHL unreachable", || {
        let out = hotline(&["--json", "status", "--config", &pc]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|v| v["peers"][0]["link"]["reachable"] == false)
    });
    let sent = hotline(&[
        "notice",
        "send",
        "--config",
        &pc,
        "--to",
        "CHL",
        "--severity",
        "high",
        "--category",
        "malicious-code",
        "--tlp",
        "green",
        "--title",
        "Into the dark",
        "--summary",
        "Nobody answers",
        "--wait",
        "1s",
    ]);
    assert!(sent.status.success());
    let said = String::from_utf8_lossy(&sent.stdout).into_owned();
    assert!(
        said.contains("no receipt from CHL within 1s")
            && said.contains("CHL unreachable since")
            && said.contains("waits in the outbox"),
        "{said}"
    );
    let id = said.split_whitespace().nth(2).unwrap().to_owned();
    let status = String::from_utf8_lossy(&hotline(&["status", "--config", &pc]).stdout).into_owned();
    assert!(
        status.contains("DOWN") && status.contains("CHL unreachable since"),
        "{status}"
    );
    let shown = String::from_utf8_lossy(&hotline(&["notice", "show", &id, "--config", &pc]).stdout).into_owned();
    assert!(shown.contains("not delivered yet: CHL unreachable since"), "{shown}");
    // A recipient list typed with spaces is taken; a party that is no peer is named with the peers.
    let send_to = |to: &str| {
        hotline(&[
            "notice",
            "send",
            "--config",
            &pc,
            "--to",
            to,
            "--severity",
            "low",
            "--category",
            "other",
            "--tlp",
            "clear",
            "--title",
            "Listed",
            "--summary",
            "Typed by hand",
        ])
    };
    assert!(send_to(" CHL ").status.success());
    // A party id typed in another case is the peer it can only mean, as --severity HIGH is high.
    let sent = send_to("chl");
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    // An indicator STIX cannot express is refused when it is sent, with the types it can.
    let refused = hotline(&[
        "notice",
        "send",
        "--config",
        &pc,
        "--to",
        "CHL",
        "--severity",
        "low",
        "--category",
        "other",
        "--tlp",
        "clear",
        "--title",
        "Odd",
        "--summary",
        "An ip",
        "--indicator",
        "ip=192.0.2.7",
    ]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("cannot express type \"ip\"") && err.contains("ipv4-addr"),
        "{err}"
    );
    let refused = send_to("CHL, CHI");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("CHI is not a peer party of the agreement; the peers are CHL"),
        "{err}"
    );
    drop(node);
}

#[test]
fn a_node_that_is_not_running_is_named_with_what_to_check() {
    let root = tempfile::tempdir().unwrap();
    let (per, _chl, _) = two_parties(root.path());
    let config = hotline::config::Config::load(&per.join("hotline.toml")).unwrap();
    let out = hotline(&["status", "--config", &s(&per.join("hotline.toml"))]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let address = config.client_node.trim_start_matches("https://");
    assert!(
        err.contains("asking the node for its status: the node cannot be reached")
            && err.contains(address)
            && err.contains("is `hotline serve` running"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn the_next_steps_init_prints_run_as_typed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("PER");
    let listen = format!("127.0.0.1:{}", common::free_port());
    let out = hotline(&["init", "--party", "PER", "--dir", &s(&dir), "--listen", &listen]);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let steps: Vec<&str> = printed
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("hotline "))
        .collect();
    assert_eq!(steps.len(), 3, "{printed}");
    // The binary under test stands for `hotline` on the PATH.
    let bin = Path::new(env!("CARGO_BIN_EXE_hotline")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let shell = |line: &str| {
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(line).env("PATH", &path);
        sh
    };
    for step in &steps[..2] {
        let done = shell(step).output().unwrap();
        assert!(
            done.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    // `exec`: the node replaces the shell, so dropping it stops the node, not only the shell.
    let _node = Serve(
        shell(&format!("exec {}", steps[2]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let config = s(&dir.join("hotline.toml"));
    until(30, "the node started as printed answers status", || {
        hotline(&["status", "--config", &config]).status.success()
    });
}

#[test]
fn a_second_serve_on_one_data_directory_is_refused_naming_the_holder() {
    let root = tempfile::tempdir().unwrap();
    let (per, _chl, _) = two_parties(root.path());
    let config = per.join("hotline.toml");
    let first = serve(&config);
    until(30, "the first node answers status", || {
        hotline(&["status", "--config", &s(&config)]).status.success()
    });
    // The same data directory, another port.
    let text = std::fs::read_to_string(&config).unwrap();
    let other = per.join("other.toml");
    let port = common::free_port();
    let rewritten: String = text
        .lines()
        .map(|l| match l.starts_with("listen") {
            true => format!("listen = \"127.0.0.1:{port}\"\n"),
            false => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&other, rewritten).unwrap();
    let second = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["serve", "--config", &s(&other)])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    let holder = format!("process {}", first.0.id());
    assert!(
        err.contains("is in use by another hotline") && err.contains(&holder),
        "{err}"
    );
    // The first node keeps serving.
    assert!(hotline(&["status", "--config", &s(&config)]).status.success());
    assert!(first.terminate().success());
}

#[test]
fn the_readmes_first_exchange_by_hand_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("## A first exchange by hand")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("the README has a first exchange by hand");
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_hotline")).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    // One shell, as a person would keep: its variables and background jobs last from line to line.
    let mut shell = Command::new("bash")
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("HOTLINE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = shell.stdin.take().unwrap();
    let mut stdout = BufReader::new(shell.stdout.take().unwrap());
    let mut run = |line: &str| -> (i32, String) {
        use std::io::Write as _;
        writeln!(stdin, "{line} 2>&1\necho \"__done $?\"").unwrap();
        let mut said = String::new();
        loop {
            let mut l = String::new();
            assert!(
                stdout.read_line(&mut l).unwrap() > 0,
                "the shell ended at: {line}\n{said}"
            );
            if let Some(code) = l.strip_prefix("__done ") {
                return (code.trim().parse().unwrap(), said);
            }
            said += &l;
        }
    };
    let mut outputs = Vec::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        // As a person would, a command that finds the node not up yet, or the notice not yet
        // delivered, is run again.
        let mut last = (0, String::new());
        until(20, &format!("`{line}` to succeed"), || {
            last = run(line);
            if last.0 != 0 {
                // Shown if the line never succeeds.
                eprintln!("`{line}` failed ({}):\n{}", last.0, last.1);
            }
            last.0 == 0
        });
        outputs.push((line.to_owned(), last.1));
    }
    let said = |prefix: &str| {
        outputs
            .iter()
            .find(|(l, _)| l.starts_with(prefix))
            .map(|(_, s)| s.clone())
            .unwrap()
    };
    assert!(
        said("hotline inbox").contains("Wiper at a grid operator"),
        "{outputs:#?}"
    );
    let shown = said("hotline notice show");
    assert!(
        shown.contains("ACKNOWLEDGED") || shown.contains("acknowledged"),
        "{shown}"
    );
    assert!(shown.contains("investigating"), "{shown}");
    let (code, _) = run("kill %1 %2; wait");
    assert_eq!(code, 0);
    let (code, verified) = run("hotline audit verify --config per/hotline.toml");
    assert_eq!(code, 0, "{verified}");
    drop(stdin);
    let _ = shell.wait();
}
