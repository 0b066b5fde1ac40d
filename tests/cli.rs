//! The `hotline` binary end to end: keys, agreement signing and envelopes,
//! with human and JSON output and one-line errors.

use std::path::Path;
use std::process::{Command, Output};

fn hotline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hotline")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = hotline(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn keygen(dir: &Path, id: &str) -> String {
    let out = ok(&[
        "--json",
        "keygen",
        "--name",
        &format!("hotline.example/{id}"),
        "--out",
        dir.join(id).to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["vkey"].as_str().unwrap().to_owned()
}

#[test]
fn parties_sign_an_agreement_until_it_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!("version = 1\n{}\n", hotline::setup::DEFAULT_NORMS);
    for (i, id) in ["PER", "CHL"].iter().enumerate() {
        let vkey = keygen(dir.path(), id);
        text += &format!(
            "[[party]]\nid = \"{id}\"\nname = \"{id}\"\nendpoint = \"https://127.0.0.1:{}\"\ntls_cert_sha256 = \"{}\"\n[[party.key]]\nvkey = \"{vkey}\"\n\n",
            7000 + i,
            "cd".repeat(32)
        );
    }
    let file = dir.path().join("agreement.toml");
    std::fs::write(&file, text).unwrap();
    let f = file.to_str().unwrap();
    let key = |id: &str| dir.path().join(id).join("identity.key").to_str().unwrap().to_owned();

    let out = hotline(&["agreement", "verify", f]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing: PER, CHL"));

    ok(&["agreement", "sign", f, "--key", &key("PER")]);
    ok(&["agreement", "sign", f, "--key", &key("CHL")]);
    let v: serde_json::Value = serde_json::from_str(&ok(&["--json", "agreement", "verify", f])).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["signed_by"], serde_json::json!(["PER", "CHL"]));
    assert!(ok(&["agreement", "show", f]).contains("hotline.example/CHL+"));

    let payload = dir.path().join("payload");
    std::fs::write(&payload, b"hello").unwrap();
    let env = ok(&[
        "envelope",
        "sign",
        payload.to_str().unwrap(),
        "--key",
        &key("PER"),
        "--type",
        "text/plain",
    ]);
    let env_file = dir.path().join("env.json");
    std::fs::write(&env_file, &env).unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "--json",
        "envelope",
        "verify",
        env_file.to_str().unwrap(),
        "--agreement",
        f,
        "--type",
        "text/plain",
    ]))
    .unwrap();
    assert_eq!(v["party"], "PER");

    std::fs::write(&env_file, env.replace("aGVsbG8=", "aGVsbHA=")).unwrap();
    let out = hotline(&[
        "envelope",
        "verify",
        env_file.to_str().unwrap(),
        "--agreement",
        f,
        "--type",
        "text/plain",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("env.json") && err.contains("does not verify"),
        "{err}"
    );
}

#[test]
fn errors_are_one_line_naming_the_file_and_the_cause_once() {
    let out = hotline(&["agreement", "verify", "/nonexistent/agreement.toml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/agreement.toml"), "{err}");
    // An error whose message names its cause, inside one that adds context.
    let out = hotline(&["serve", "--config", "/nonexistent/hotline.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/hotline.toml"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    // A data directory mistyped, or a file given for one, is named as such, once.
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("pre");
    let out = hotline(&["audit", "verify", "--data", typo.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such directory; give a node's data directory"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let file = dir.path().join("hotline.toml");
    std::fs::write(&file, "").unwrap();
    let out = hotline(&["audit", "verify", "--data", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a file, not a directory"), "{err}");
    // A command pointed at no configuration says how to point it at one.
    let out = hotline(&["status", "--config", "/nonexistent/hotline.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--config FILE or HOTLINE_CONFIG"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn logs_written_to_a_file_or_pipe_carry_no_colour_codes() {
    let files = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .arg("demo")
        .arg("--out")
        .arg(files.path())
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("node serving"), "{log}");
    // The narrative ends with a count of the logs' entries; the entries wait for --timeline.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        !said.contains("Timeline (all four logs") && said.contains("demo --timeline"),
        "{said}"
    );
    assert!(!log.contains('\u{1b}'), "colour codes in a piped log: {log:?}");
}

#[test]
fn init_takes_a_partys_own_pki_and_refuses_a_node_certificate_not_valid_for_its_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    // The party's PKI, made elsewhere (here by an earlier init) for 127.0.0.1.
    ok(&[
        "init",
        "--party",
        "PER",
        "--dir",
        &s(&dir.path().join("pki")),
        "--listen",
        "127.0.0.1:7443",
    ]);
    let own = dir.path().join("pki/tls");
    ok(&[
        "init",
        "--party",
        "PER",
        "--dir",
        &s(&dir.path().join("per")),
        "--listen",
        "127.0.0.1:7443",
        "--tls-from",
        &s(&own),
    ]);
    let party = std::fs::read_to_string(dir.path().join("per/party.toml")).unwrap();
    let ca = std::fs::read_to_string(own.join("ca.pem")).unwrap();
    assert!(
        party.contains(ca.trim()),
        "the agreement entry publishes the party's own CA"
    );
    assert!(!dir.path().join("per/tls/ca.key").exists(), "no CA was minted");
    let refused = hotline(&[
        "init",
        "--party",
        "PER",
        "--dir",
        &s(&dir.path().join("elsewhere")),
        "--endpoint",
        "https://per.example:7443",
        "--tls-from",
        &s(&own),
    ]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("not a node certificate of this CA") && err.contains("per.example"),
        "{err}"
    );
    assert!(
        !dir.path().join("elsewhere/identity.key").exists(),
        "a refused init leaves no key behind"
    );
}

#[test]
fn a_value_outside_a_flags_list_is_refused_with_the_allowed_values_and_case_is_forgiven() {
    let out = hotline(&["notice", "send", "--to", "CHL", "--severity", "urgent", "--title", "x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("invalid value 'urgent' for '--severity <SEVERITY>'")
            && err.contains("[possible values: low, medium, high, critical]"),
        "{err}"
    );
    // HIGH is high: refused only for the missing configuration, after the flags parsed.
    let out = hotline(&[
        "notice",
        "send",
        "--to",
        "CHL",
        "--severity",
        "HIGH",
        "--title",
        "x",
        "--config",
        "/nonexistent/hotline.toml",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--config FILE or HOTLINE_CONFIG"), "{err}");
}

#[test]
fn init_refuses_an_endpoint_peers_cannot_dial() {
    let dir = tempfile::tempdir().unwrap();
    let party = dir.path().join("per");
    let out = hotline(&[
        "init",
        "--party",
        "PER",
        "--dir",
        party.to_str().unwrap(),
        "--listen",
        "0.0.0.0:7443",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--listen 0.0.0.0:7443 takes calls on every address, but peers cannot dial 0.0.0.0; give --endpoint https://HOST:7443"),
        "{err}"
    );
    assert!(!party.exists(), "nothing is written");
    let out = hotline(&[
        "init",
        "--party",
        "PER",
        "--dir",
        party.to_str().unwrap(),
        "--listen",
        "0.0.0.0:7443",
        "--endpoint",
        "https://per.example:7443",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_agreement_with_two_parties_at_one_endpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Two inits on their defaults share 127.0.0.1:7001.
    for id in ["PER", "CHL"] {
        ok(&["init", "--party", id, "--dir", dir.path().join(id).to_str().unwrap()]);
    }
    let entry = |id: &str| dir.path().join(id).join("party.toml").to_str().unwrap().to_owned();
    let agreement = dir.path().join("agreement.toml");
    let out = hotline(&[
        "agreement",
        "new",
        &entry("PER"),
        &entry("CHL"),
        "--out",
        agreement.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("party CHL (endpoint): https://127.0.0.1:7001 is also PER's endpoint; each party's node needs an address of its own"),
        "{err}"
    );
    assert!(!agreement.exists());
}

#[test]
fn manual_pages_and_shell_completions_are_generated_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    ok(&["man", "--out", out.to_str().unwrap()]);
    let page = std::fs::read_to_string(out.join("hotline-notice-send.1")).unwrap();
    assert!(page.contains("\\-\\-severity") && page.contains("Examples:"), "{page}");
    assert!(out.join("hotline.1").is_file() && out.join("hotline-audit-verify.1").is_file());
    let script = ok(&["completions", "bash"]);
    assert!(
        script.contains("hotline__notice__send") || script.contains("notice"),
        "{script}"
    );
    // The script is valid bash.
    let checked = std::process::Command::new("bash")
        .args(["-n", "-c", &script])
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
}

#[test]
fn every_commands_help_ends_with_examples() {
    for command in [&["notice", "send"][..], &["audit", "verify"], &["console"], &["init"]] {
        let help = ok(&[command, &["--help"]].concat());
        assert!(help.contains("Examples:\n  hotline "), "{command:?}: {help}");
    }
}
