//! Identity keys in a hardware security module: a party whose key is on a
//! SoftHSM2 token (PKCS#11, `CKM_EDDSA`) sets up, signs its agreement,
//! exchanges notices and receipts with a party whose key is a file, and its
//! log verifies exactly as a file key's does; a token absent or a PIN wrong
//! stops `serve` with one line naming the module and the token.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Debian's SoftHSM2 module.
const MODULES: [&str; 2] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
];

/// A SoftHSM2 token store of the test's own, with one token holding an Ed25519 key pair.
struct Token {
    dir: tempfile::TempDir,
    module: PathBuf,
}

const PIN: &str = "4711";

impl Token {
    /// Token `label` with key pair `key`, or `None` (skipped; a failure under `CI=true`).
    fn new(label: &str, key: &str) -> Option<Token> {
        let util = common::outside_tool("softhsm2-util", "keep a key on a token (Debian: softhsm2)")?;
        let tool = common::outside_tool("pkcs11-tool", "make an Ed25519 key on the token (Debian: opensc)")?;
        let Some(module) = MODULES.iter().map(PathBuf::from).find(|m| m.is_file()) else {
            let message = "no SoftHSM2 PKCS#11 module (Debian: softhsm2)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("SKIPPED: {message}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!("directories.tokendir = {}\n", dir.path().join("tokens").display()),
        )
        .unwrap();
        let t = Token { dir, module };
        t.run(
            &util,
            &[
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                PIN,
                "--so-pin",
                "123456",
            ],
        );
        let module = t.module.to_str().unwrap().to_owned();
        t.run(
            &tool,
            &[
                "--module",
                &module,
                "--token-label",
                label,
                "--login",
                "--pin",
                PIN,
                "--keypairgen",
                "--key-type",
                "EC:edwards25519",
                "--label",
                key,
                "--id",
                "01",
            ],
        );
        Some(t)
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    fn run(&self, program: &Path, args: &[&str]) {
        let out = Command::new(program)
            .args(args)
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program:?} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `hotline` with the token store and the PIN in its environment.
    fn hotline(&self, cwd: &Path, args: &[&str]) -> Output {
        self.command(cwd, args).output().unwrap()
    }

    fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hotline"));
        c.args(args)
            .current_dir(cwd)
            .env("SOFTHSM2_CONF", self.conf())
            .env("HOTLINE_PKCS11_PIN", PIN)
            .env_remove("HOTLINE_CONFIG");
        c
    }
}

/// A `hotline serve` process, stopped with SIGTERM when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// PER with its key on the token, CHL with a key file, set up and signed as parties do.
fn two_parties(t: &Token, root: &Path) {
    let module = t.module.to_str().unwrap();
    let (per_port, chl_port) = (common::free_port().to_string(), common::free_port().to_string());
    ok(t.hotline(
        root,
        &[
            "init",
            "--party",
            "PER",
            "--dir",
            "per",
            "--listen",
            &format!("127.0.0.1:{per_port}"),
            "--pkcs11",
            module,
            "--token",
            "per-hsm",
            "--key",
            "identity",
        ],
    ));
    assert!(
        !root.join("per/identity.key").exists(),
        "the private key stays on the token"
    );
    ok(t.hotline(
        root,
        &[
            "init",
            "--party",
            "CHL",
            "--dir",
            "chl",
            "--listen",
            &format!("127.0.0.1:{chl_port}"),
        ],
    ));
    ok(t.hotline(
        root,
        &[
            "agreement",
            "new",
            "per/party.toml",
            "chl/party.toml",
            "--out",
            "agreement.toml",
        ],
    ));
    ok(t.hotline(
        root,
        &["agreement", "sign", "agreement.toml", "--config", "per/hotline.toml"],
    ));
    ok(t.hotline(
        root,
        &["agreement", "sign", "agreement.toml", "--key", "chl/identity.key"],
    ));
    ok(t.hotline(root, &["agreement", "verify", "agreement.toml"]));
    for dir in ["per", "chl"] {
        std::fs::copy(root.join("agreement.toml"), root.join(dir).join("agreement.toml")).unwrap();
    }
}

#[test]
fn a_node_whose_key_is_on_a_token_exchanges_notices_whose_signatures_and_log_verify_as_a_key_files() {
    let Some(t) = Token::new("per-hsm", "identity") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    two_parties(&t, root);
    let serve = |dir: &str| {
        Serve(
            t.command(root, &["serve", "--config", &format!("{dir}/hotline.toml")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let nodes = (serve("per"), serve("chl"));
    common::until(20, "both nodes answer", || {
        ["per", "chl"].iter().all(|d| {
            t.hotline(root, &["status", "--config", &format!("{d}/hotline.toml")])
                .status
                .success()
        })
    });
    let id = ok(t.hotline(
        root,
        &[
            "notice",
            "send",
            "--config",
            "per/hotline.toml",
            "-q",
            "--to",
            "CHL",
            "--severity",
            "high",
            "--title",
            "Signed on the token",
        ],
    ))
    .trim()
    .to_owned();
    // CHL checked PER's token signature before it logged the notice and signed its receipt.
    common::until(20, "CHL's receipt at PER", || {
        let out = t.hotline(root, &["--json", "notice", "show", &id, "--config", "per/hotline.toml"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["receipts"].as_array().is_some_and(|r| !r.is_empty())
    });
    common::until(20, "CHL's acknowledgement", || {
        t.hotline(root, &["acknowledge", &id, "--config", "chl/hotline.toml"])
            .status
            .success()
    });
    drop(nodes);
    // The token-signed log verifies, with the configuration's key or identity.pub alone.
    let v: serde_json::Value = serde_json::from_str(&ok(
        t.hotline(root, &["--json", "audit", "verify", "--config", "per/hotline.toml"])
    ))
    .unwrap();
    assert_eq!(v["valid"], true, "{v}");
    assert!(v["checkpoints"].as_u64() > Some(1), "{v}");
    ok(t.hotline(
        root,
        &["audit", "verify", "--data", "per", "--vkey", "per/identity.pub"],
    ));
    ok(t.hotline(root, &["audit", "verify", "--config", "chl/hotline.toml"]));
}

#[test]
fn a_node_whose_token_is_absent_or_whose_pin_is_wrong_refuses_to_start_naming_module_and_token() {
    let Some(t) = Token::new("per-hsm", "identity") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    two_parties(&t, root);
    let module = t.module.display().to_string();
    let wrong_pin = t
        .command(root, &["serve", "--config", "per/hotline.toml"])
        .env("HOTLINE_PKCS11_PIN", "0000")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&wrong_pin.stderr);
    assert!(!wrong_pin.status.success());
    assert!(
        err.contains(&format!(
            "PKCS#11 module {module}, token \"per-hsm\": login refused: the PIN is wrong"
        )),
        "{err}"
    );
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{err}");
    let config = root.join("per/hotline.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("token = \"per-hsm\"", "token = \"elsewhere\"")).unwrap();
    let absent = t.hotline(root, &["serve", "--config", "per/hotline.toml"]);
    let err = String::from_utf8_lossy(&absent.stderr);
    assert!(!absent.status.success());
    assert!(
        err.contains(&format!(
            "PKCS#11 module {module}, token \"elsewhere\": no such token is present"
        )),
        "{err}"
    );
}

#[test]
fn a_token_key_rotates_to_another_token_key_by_amendment_and_the_log_verifies_across_it() {
    let Some(t) = Token::new("per-hsm", "identity") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    two_parties(&t, root);
    // The next key, made on the token by its administrator; its public half read with the token's tools.
    let module = t.module.to_str().unwrap().to_owned();
    let tool = common::outside_tool("pkcs11-tool", "make an Ed25519 key on the token (Debian: opensc)").unwrap();
    t.run(
        &tool,
        &[
            "--module",
            &module,
            "--token-label",
            "per-hsm",
            "--login",
            "--pin",
            PIN,
            "--keypairgen",
            "--key-type",
            "EC:edwards25519",
            "--label",
            "identity-2",
            "--id",
            "02",
        ],
    );
    let pem = root.join("identity-2.pem");
    t.run(
        &tool,
        &[
            "--module",
            &module,
            "--token-label",
            "per-hsm",
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            "identity-2",
            "-o",
            pem.to_str().unwrap(),
        ],
    );
    let spki: String = std::fs::read_to_string(&pem)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    use base64::Engine as _;
    let spki = base64::engine::general_purpose::STANDARD.decode(spki).unwrap();
    let public: [u8; 32] = spki[spki.len() - 32..].try_into().unwrap();
    let next = hotline::keys::VerifierKey::new(
        "hotline.example/PER",
        ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap(),
    )
    .unwrap();
    let config = root.join("per/hotline.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "key = \"identity\"\n",
            "key = \"identity\"\nnext_key = \"identity-2\"\n",
        ),
    )
    .unwrap();

    let serve = |dir: &str| {
        Serve(
            t.command(root, &["serve", "--config", &format!("{dir}/hotline.toml")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let nodes = (serve("per"), serve("chl"));
    let version = |dir: &str| {
        let out = t.hotline(root, &["--json", "status", "--config", &format!("{dir}/hotline.toml")]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()["agreement_version"].as_u64()
    };
    common::until(20, "both nodes answer", || {
        version("per").is_some() && version("chl").is_some()
    });
    // PER proposes the rotation (signed on the token); CHL approves.
    let rotate = format!("PER={next}");
    ok(t.hotline(
        root,
        &[
            "agreement",
            "propose",
            "--rotate",
            &rotate,
            "--overlap",
            "1h",
            "--config",
            "per/hotline.toml",
        ],
    ));
    common::until(20, "CHL approves version 2", || {
        t.hotline(root, &["agreement", "approve", "2", "--config", "chl/hotline.toml"])
            .status
            .success()
    });
    common::until(20, "both adopted version 2", || {
        version("per") == Some(2) && version("chl") == Some(2)
    });
    // PER now signs with the new token key; CHL checks it and receipts.
    let id = ok(t.hotline(
        root,
        &[
            "notice",
            "send",
            "--config",
            "per/hotline.toml",
            "-q",
            "--to",
            "CHL",
            "--severity",
            "low",
            "--tlp",
            "clear",
            "--title",
            "Signed by the next key",
        ],
    ))
    .trim()
    .to_owned();
    common::until(20, "CHL's receipt", || {
        let out = t.hotline(root, &["--json", "notice", "show", &id, "--config", "per/hotline.toml"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["receipts"].as_array().is_some_and(|r| !r.is_empty())
    });
    let shown: serde_json::Value = serde_json::from_str(&ok(
        t.hotline(root, &["--json", "notice", "show", &id, "--config", "chl/hotline.toml"])
    ))
    .unwrap();
    assert!(
        shown.to_string().contains(&next.key_id()),
        "signed by the next key: {shown}"
    );
    drop(nodes);
    // A verifier holding only the new key follows PER's log across the rotation.
    let next = next.to_string();
    ok(t.hotline(root, &["audit", "verify", "--data", "per", "--vkey", &next]));
}
