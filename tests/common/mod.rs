//! Shared test helpers: parties with real keys and agreements built from them.
#![allow(dead_code)]

use hotline::agreement::SignedAgreement;
use hotline::keys::IdentityKey;

/// Norms as the brief writes them.
pub const NORMS: &str = include_str!("norms.toml");

/// A party id with a freshly generated identity key.
pub struct TestParty {
    pub id: String,
    pub key: IdentityKey,
}

/// Parties named by `ids`, each with a fresh key named `hotline.example/<id>`.
pub fn parties(ids: &[&str]) -> Vec<TestParty> {
    ids.iter()
        .map(|id| TestParty {
            id: id.to_string(),
            key: IdentityKey::generate(&format!("hotline.example/{id}")).unwrap(),
        })
        .collect()
}

/// The TOML table of one party, with `extra_keys` appended verbatim after its key.
pub fn party_toml(p: &TestParty, port: u16, key_extra: &str) -> String {
    format!(
        "[[party]]\nid = \"{id}\"\nname = \"{id} CSIRT\"\nendpoint = \"https://127.0.0.1:{port}\"\ntls_cert_sha256 = \"{fp}\"\n[[party.key]]\nvkey = \"{vkey}\"\n{key_extra}\n",
        id = p.id,
        fp = "ab".repeat(32),
        vkey = p.key.verifier()
    )
}

/// Agreement text listing `parties`, with `header` lines (such as a quorum) on top.
pub fn agreement_text(parties: &[TestParty], header: &str) -> String {
    let mut text = format!("version = 1\ntitle = \"Test hotline\"\n{header}\n{NORMS}\n");
    for (i, p) in parties.iter().enumerate() {
        text += &party_toml(p, 7000 + i as u16, "");
    }
    text
}

/// The agreement for `parties`, signed by each of `signers`.
pub fn signed_agreement(parties: &[TestParty], header: &str, signers: &[&TestParty]) -> SignedAgreement {
    let mut a = SignedAgreement::parse(agreement_text(parties, header).as_bytes()).unwrap();
    for s in signers {
        a.sign(&s.key).unwrap();
    }
    a
}

/// A log entry as the node writes one: an operator action with `detail`.
pub fn entry(detail: &str) -> Vec<u8> {
    use prost::Message;
    hotline::proto::LogEntry {
        logged_at: Some(hotline::clock::to_proto(hotline::clock::now())),
        body: Some(hotline::proto::log_entry::Body::OperatorAction(
            hotline::proto::OperatorAction {
                operator: "test".into(),
                action: "note".into(),
                detail: detail.into(),
            },
        )),
    }
    .encode_to_vec()
}

/// A fresh log in a temporary directory, with its signing key.
pub fn temp_log() -> (tempfile::TempDir, hotline::log::Log, IdentityKey) {
    let dir = tempfile::tempdir().unwrap();
    let key = IdentityKey::generate("hotline.example/TST").unwrap();
    let log = hotline::log::Log::open(dir.path(), key.clone()).unwrap();
    (dir, log, key)
}

/// Runs the `hotline` binary with `args`.
pub fn hotline(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `hotline --json ARGS` and parses its output, whatever the exit code.
pub fn hotline_json(args: &[&str]) -> (bool, serde_json::Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = hotline(&all);
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{args:?}: not JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), value)
}

/// A closed log of `n` entries in a temporary data directory, appended in
/// batches of `batch`, with the node's `identity.pub` beside it.
pub fn filled_log(n: usize, batch: usize) -> (tempfile::TempDir, IdentityKey) {
    let (dir, log, key) = temp_log();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for start in (0..n).step_by(batch) {
            let entries = (start..(start + batch).min(n))
                .map(|i| entry(&format!("entry {i}")))
                .collect();
            log.append(entries).await.unwrap();
        }
    });
    log.close();
    std::fs::write(dir.path().join("identity.pub"), format!("{}\n", key.verifier())).unwrap();
    (dir, key)
}

/// A party with a TLS CA and a node certificate issued by it, as `hotline init` makes.
pub struct TlsParty {
    pub id: String,
    pub key: IdentityKey,
    pub ca: hotline::tls::CertKey,
    pub node: hotline::tls::CertKey,
}

/// TLS parties for `ids`, each node certificate valid for 127.0.0.1 and localhost.
pub fn tls_parties(ids: &[&str]) -> Vec<TlsParty> {
    use hotline::tls::{Usage, issue, new_ca};
    parties(ids)
        .into_iter()
        .map(|p| {
            let ca = new_ca(&p.id).unwrap();
            let node = issue(
                &p.id,
                &ca,
                &p.id,
                &["127.0.0.1".into(), "localhost".into()],
                Usage::Node,
            )
            .unwrap();
            TlsParty {
                id: p.id,
                key: p.key,
                ca,
                node,
            }
        })
        .collect()
}

/// An agreement naming each party's CA as its TLS identity.
pub fn tls_agreement(parties: &[TlsParty]) -> hotline::agreement::Agreement {
    let mut text = format!("version = 1\n{NORMS}\n");
    for p in parties {
        text += &format!(
            "[[party]]\nid = \"{id}\"\nname = \"{id}\"\nendpoint = \"https://127.0.0.1:1\"\ntls_ca = \"\"\"\n{ca}\"\"\"\n[[party.key]]\nvkey = \"{vkey}\"\n\n",
            id = p.id,
            ca = p.ca.cert,
            vkey = p.key.verifier()
        );
    }
    hotline::agreement::Agreement::parse(&text).unwrap()
}
