//! Disclosure to an arbiter: one message with its proofs, checked with
//! public keys only; an altered text or another message's proofs refused.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Cluster, FAST_NORMS, hotline_json, notice};
use prost::Message as _;

const TITLE: &str = "Wiper malware at a regional grid operator";

/// PER sends CHL two notices, each receipted; returns the cluster and the ids.
async fn two_receipted() -> (Cluster, String, String) {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let first = c.send(0, notice(&["CHL"], TITLE)).await;
    let second = c.send(0, notice(&["CHL"], "Another matter entirely")).await;
    for id in [&first, &second] {
        c.until_receipts(0, id, 1).await;
    }
    (c, first, second)
}

/// `hotline audit disclose ID` from node `i`'s data directory; returns the file.
fn disclose(c: &Cluster, i: usize, id: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join(format!("{id}-{i}.json"));
    let data = c.configs[i].data.to_str().unwrap();
    let (ok, v) = hotline_json(&["audit", "disclose", id, "--data", data, "--out", file.to_str().unwrap()]);
    assert!(ok, "{v}");
    file
}

fn verify(c: &Cluster, file: &std::path::Path) -> (bool, serde_json::Value) {
    let agreement = c.configs[0].agreement.to_str().unwrap();
    hotline_json(&[
        "audit",
        "verify-disclosure",
        file.to_str().unwrap(),
        "--agreement",
        agreement,
    ])
}

fn edit(file: &std::path::Path, change: impl FnOnce(&mut serde_json::Value)) {
    let mut d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    change(&mut d);
    std::fs::write(file, d.to_string()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disclosure_by_the_sender_verifies_with_public_keys_and_shows_sent_received_and_receipted() {
    let (c, first, _) = two_receipted().await;
    let dir = tempfile::tempdir().unwrap();
    let file = disclose(&c, 0, &first, dir.path());
    let held = std::fs::read_to_string(&file).unwrap();
    assert!(
        !held.contains("Another matter"),
        "the disclosure holds no other message"
    );
    let (ok, v) = verify(&c, &file);
    assert!(ok, "{v}");
    let d = &v["disclosed"];
    assert_eq!(
        (d["from"].as_str(), d["logged_by"][0].as_str()),
        (Some("PER"), Some("PER"))
    );
    assert_eq!(d["receipted_by"][0][0], "CHL", "{v}");
    assert_eq!(d["text"]["title"], TITLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disclosure_by_a_recipient_verifies_too() {
    let (c, first, _) = two_receipted().await;
    let dir = tempfile::tempdir().unwrap();
    let file = disclose(&c, 1, &first, dir.path());
    let (ok, v) = verify(&c, &file);
    assert!(ok, "{v}");
    assert_eq!(v["disclosed"]["logged_by"][0], "CHL", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disclosure_with_altered_text_is_refused() {
    let (c, first, _) = two_receipted().await;
    let dir = tempfile::tempdir().unwrap();
    let file = disclose(&c, 0, &first, dir.path());
    // The notice is AMBER, so sealed: the disclosure carries its body and salt.
    edit(&file, |d| {
        let body = B64.decode(d["opened"]["body"].as_str().unwrap()).unwrap();
        let mut n = hotline::message::decode_notice(&body).unwrap();
        n.title = "Nothing happened".into();
        d["opened"]["body"] = B64.encode(n.encode_to_vec()).into();
    });
    let (ok, v) = verify(&c, &file);
    assert!(!ok, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not the one its sender committed to and signed"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disclosure_of_a_clear_notice_with_altered_text_is_refused_at_the_signature() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut n = notice(&["CHL"], "A public advisory");
    n.tlp = hotline::proto::Tlp::Clear as i32;
    let id = c.send(0, n).await;
    let dir = tempfile::tempdir().unwrap();
    let file = disclose(&c, 0, &id, dir.path());
    edit(&file, |d| {
        let mut env =
            hotline::proto::Envelope::decode(&B64.decode(d["envelope"].as_str().unwrap()).unwrap()[..]).unwrap();
        let mut n = hotline::message::decode_notice(&env.payload).unwrap();
        n.title = "Nothing happened".into();
        env.payload = n.encode_to_vec();
        d["envelope"] = B64.encode(env.encode_to_vec()).into();
    });
    let (ok, v) = verify(&c, &file);
    assert!(!ok, "{v}");
    assert!(v["error"].as_str().unwrap().contains("the envelope's signature"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disclosure_whose_proofs_are_of_another_message_is_refused() {
    let (c, first, second) = two_receipted().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        disclose(&c, 0, &first, dir.path()),
        disclose(&c, 0, &second, dir.path()),
    );
    let other: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&b).unwrap()).unwrap();
    edit(&a, |d| d["logged"] = other["logged"].clone());
    let (ok, v) = verify(&c, &a);
    assert!(!ok, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("records another envelope than the one disclosed"),
        "{v}"
    );
}
