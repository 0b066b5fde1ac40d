//! Every refusal of `Federation.Deliver` and `DeliverBatch`, in the agreed order of checks, each
//! with its own status code and message, and nothing logged for it.

mod common;

use common::{Cluster, FAST_NORMS};
use hotline::envelope::{self, NOTICE_TYPE};
use hotline::keys::IdentityKey;
use hotline::proto::federation_client::FederationClient;
use hotline::proto::{DeliverBatchRequest, DeliverRequest, Envelope, Notice, SignedCheckpoint, deliver_outcome};
use hotline::{clock, message};
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

/// Party `from` (index) calling node `to` directly with its own node certificate.
fn key(c: &Cluster, i: usize) -> IdentityKey {
    IdentityKey::load(&c.configs[i].identity_key).unwrap()
}

fn valid_notice(from: &str, to: &[&str]) -> Notice {
    let mut n = common::notice(to, "direct delivery");
    n.id = message::new_id();
    n.from = from.into();
    n.created_at = Some(clock::to_proto(clock::now()));
    n.author = "duty".into();
    n
}

fn signed(n: &Notice, k: &IdentityKey) -> Envelope {
    envelope::sign(NOTICE_TYPE, n.encode_to_vec(), k).unwrap()
}

async fn deliver(client: &mut FederationClient<Channel>, env: Envelope) -> Result<Envelope, tonic::Status> {
    client
        .deliver(DeliverRequest {
            agreement: None,
            envelope: Some(env),
            sender_checkpoint: None,
        })
        .await
        .map(|r| r.into_inner().receipt.unwrap())
}

/// What node 0 logged, leaving out the peers' checkpoints it witnessed
/// meanwhile (in the background, at any moment).
fn logged_besides_witnessing(c: &Cluster) -> Vec<String> {
    let lines = c.log_lines(0);
    lines
        .into_iter()
        .filter(|l| !l.starts_with("witnessed checkpoint"))
        .collect()
}

async fn refused(c: &Cluster, env: Envelope, code: Code, says: &str) {
    let before = logged_besides_witnessing(c);
    let err = deliver(&mut c.peer_client(1, 0), env).await.unwrap_err();
    assert_eq!(err.code(), code, "{}", err.message());
    assert!(err.message().contains(says), "expected {says:?} in {:?}", err.message());
    assert_eq!(
        logged_besides_witnessing(c),
        before,
        "a refused delivery logged something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_delivery_gets_its_own_status_and_logs_nothing() {
    let c = Cluster::start(&["PER", "CHL", "ARG"], FAST_NORMS).await;
    let chl = key(&c, 1);
    let good = valid_notice("CHL", &["PER"]);

    // A tampered payload: bad signature.
    let mut env = signed(&good, &chl);
    env.payload[5] ^= 1;
    refused(&c, env, Code::Unauthenticated, "does not verify").await;

    // Signed by a key outside the agreement.
    let stranger = IdentityKey::generate("hotline.example/CHL").unwrap();
    refused(
        &c,
        signed(&good, &stranger),
        Code::Unauthenticated,
        "no signature by a key of the agreement",
    )
    .await;

    // Signed by ARG, delivered by CHL.
    refused(
        &c,
        signed(&valid_notice("ARG", &["PER"]), &key(&c, 2)),
        Code::PermissionDenied,
        "signed by party ARG but was delivered by CHL",
    )
    .await;

    // Signed by CHL but claiming to be from ARG.
    refused(
        &c,
        signed(&valid_notice("ARG", &["PER"]), &chl),
        Code::PermissionDenied,
        "field from is \"ARG\"",
    )
    .await;

    // Not addressed to us.
    refused(
        &c,
        signed(&valid_notice("CHL", &["ARG"]), &chl),
        Code::InvalidArgument,
        "not to PER",
    )
    .await;

    // From the future, beyond the agreed clock skew.
    let mut future = valid_notice("CHL", &["PER"]);
    future.created_at = Some(clock::to_proto(clock::now() + time::Duration::hours(1)));
    refused(&c, signed(&future, &chl), Code::InvalidArgument, "clock_skew").await;

    // Oversize (the norms allow 1 MiB).
    let mut big = valid_notice("CHL", &["PER"]);
    big.summary = "x".repeat(1_100_000);
    refused(&c, signed(&big, &chl), Code::ResourceExhausted, "max_notice_bytes").await;

    // Garbage bytes under a valid signature.
    refused(
        &c,
        envelope::sign(NOTICE_TYPE, vec![0xff; 40], &chl).unwrap(),
        Code::InvalidArgument,
        "not a hotline.v1.Notice",
    )
    .await;

    // A payload type that is not deliverable.
    refused(
        &c,
        envelope::sign("text/plain", b"hi".to_vec(), &chl).unwrap(),
        Code::InvalidArgument,
        "cannot be delivered",
    )
    .await;

    // A message that breaks a field rule.
    let mut untitled = valid_notice("CHL", &["PER"]);
    untitled.title.clear();
    refused(&c, signed(&untitled, &chl), Code::InvalidArgument, "field title").await;

    // No envelope at all.
    let err = c
        .peer_client(1, 0)
        .deliver(DeliverRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A forged sender checkpoint.
    let mut client = c.peer_client(1, 0);
    let err = client
        .deliver(DeliverRequest {
            agreement: None,
            envelope: Some(signed(&valid_notice("CHL", &["PER"]), &chl)),
            sender_checkpoint: Some(SignedCheckpoint {
                note: b"hotline.example/CHL\n1\nAAAA\n\n- x y\n".to_vec(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("sender_checkpoint"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_returns_the_original_receipt_and_a_reused_id_is_refused() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let chl = key(&c, 1);
    let n = valid_notice("CHL", &["PER"]);
    let env = signed(&n, &chl);
    let mut client = c.peer_client(1, 0);
    let first = deliver(&mut client, env.clone()).await.unwrap();
    let size = logged_besides_witnessing(&c).len();
    let again = deliver(&mut client, env).await.unwrap();
    let decode = |e: &Envelope| hotline::proto::Receipt::decode(&e.payload[..]).unwrap();
    assert_eq!(decode(&first).log_index, decode(&again).log_index);
    assert_eq!(decode(&first).log_entry, decode(&again).log_entry);
    assert_eq!(
        logged_besides_witnessing(&c).len(),
        size,
        "a replay is not logged again"
    );

    let mut other = n.clone();
    other.title = "same id, other text".into();
    refused(&c, signed(&other, &chl), Code::AlreadyExists, "already used").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_are_not_peers_are_refused() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    // PER's own operator certificate on the Federation service.
    let endpoint = format!("https://{}", c.nodes[0].as_ref().unwrap().addr);
    let channel = hotline::transport::channel(
        &endpoint,
        &c.configs[0].ca_pem().unwrap(),
        &c.configs[0].client_cert().unwrap(),
    )
    .unwrap();
    let err = FederationClient::new(channel)
        .deliver(DeliverRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // A certificate from a CA outside the agreement cannot even connect.
    let ca = hotline::tls::new_ca("XXX").unwrap();
    let cert = hotline::tls::issue("XXX", &ca, "XXX", &["127.0.0.1".into()], hotline::tls::Usage::Node).unwrap();
    let channel = hotline::transport::channel(&endpoint, &c.configs[0].ca_pem().unwrap(), &cert).unwrap();
    let err = FederationClient::new(channel)
        .deliver(DeliverRequest::default())
        .await
        .unwrap_err();
    // TLS 1.3 reports the refused client certificate after the handshake: an
    // "UnknownCA" alert or a closed connection, never an answer from a handler.
    assert!(
        matches!(
            err.code(),
            tonic::Code::Unknown | tonic::Code::Unavailable | tonic::Code::Cancelled
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_checkpoint_is_detected_and_logged_as_a_norm_event() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let chl = key(&c, 1);
    let mut client = c.peer_client(1, 0);
    // An honest first delivery: PER witnesses CHL's real checkpoint.
    let note = c.node(1).log().head().note.to_vec();
    client
        .deliver(DeliverRequest {
            agreement: None,
            envelope: Some(signed(&valid_notice("CHL", &["PER"]), &chl)),
            sender_checkpoint: Some(SignedCheckpoint { note }),
        })
        .await
        .unwrap();
    c.eventually(10, "PER witnessed CHL", |c| {
        c.node(0)
            .read(|db| hotline::state::last_witnessed(db, "CHL"))
            .unwrap()
            .is_some()
    })
    .await;
    // Then a checkpoint CHL signed over a rewritten history: a larger tree
    // whose root its real log cannot prove consistent.
    let size = c.node(1).log().head().size + 1;
    let forged = hotline::log::checkpoint::sign(std::slice::from_ref(&chl), size, tlog_tiles::Hash([7; 32])).unwrap();
    client
        .deliver(DeliverRequest {
            agreement: None,
            envelope: Some(signed(&valid_notice("CHL", &["PER"]), &chl)),
            sender_checkpoint: Some(SignedCheckpoint { note: forged }),
        })
        .await
        .unwrap();
    c.eventually(10, "PER logged the fork", |c| {
        c.log_lines(0).iter().any(|l| l.starts_with("CHECKPOINT_FORK CHL:"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_request_rate_gets_resource_exhausted_after_a_delay_and_others_are_unaffected() {
    let c = Cluster::start_with(&["PER", "CHL", "ARG"], FAST_NORMS, |config| {
        config.limits = common::TIGHT_LIMITS;
    })
    .await;
    let chl = key(&c, 1);
    let mut client = c.peer_client(1, 0);
    let mut exhausted = 0;
    for _ in 0..10 {
        let asked = std::time::Instant::now();
        match deliver(&mut client, signed(&valid_notice("CHL", &["PER"]), &chl)).await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
                assert!(e.message().contains("CHL is over the limit"), "{}", e.message());
                // Held back, so that a caller retrying at once cannot turn refusals into a flood.
                assert!(
                    asked.elapsed() >= hotline::limits::OVER_LIMIT_DELAY,
                    "{:?}",
                    asked.elapsed()
                );
                exhausted += 1;
            }
        }
    }
    assert!(exhausted >= 6, "only {exhausted} of 10 refused");
    // ARG has its own budget.
    let arg = key(&c, 2);
    deliver(&mut c.peer_client(2, 0), signed(&valid_notice("ARG", &["PER"]), &arg))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_address_cap_are_closed() {
    use tokio::io::AsyncReadExt;
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| config.connections_per_address = 3).await;
    let addr = c.nodes[0].as_ref().unwrap().addr;
    // CHL's node may hold one connection already; open raw ones up to and past the cap.
    let mut held = Vec::new();
    let mut closed = 0;
    for _ in 0..5 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        match tokio::time::timeout(std::time::Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1, // closed by the node
            _ => held.push(s),                     // still open, waiting for a TLS hello
        }
    }
    assert!(closed >= 2, "only {closed} of 5 connections were refused");
    assert!(held.len() <= 3);
    drop(held);
    // Once they close, a peer can connect again.
    let chl = key(&c, 1);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Err(e) = deliver(&mut c.peer_client(1, 0), signed(&valid_notice("CHL", &["PER"]), &chl)).await {
        assert!(std::time::Instant::now() < end, "a peer still cannot connect: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_without_signatures_is_unauthenticated() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut env = signed(&valid_notice("CHL", &["PER"]), &key(&c, 1));
    env.signatures.clear();
    refused(&c, env, Code::Unauthenticated, "no signatures").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_signed_with_a_retired_key_is_unauthenticated() {
    // CHL rotated its key: the agreement lists the old one with a validity that has ended.
    let root = tempfile::tempdir().unwrap();
    let made = hotline::setup::local_cluster(root.path(), &["PER", "CHL"], FAST_NORMS)
        .await
        .unwrap();
    let old = IdentityKey::generate("hotline.example/CHL").unwrap();
    let current = hotline::agreement::SignedAgreement::load(&made[0].0.agreement).unwrap();
    let chl_vkey = key_of(&made[1].0).verifier().to_string();
    let text = current.text().replace(
        &format!("vkey = \"{chl_vkey}\"\n"),
        &format!(
            "vkey = \"{chl_vkey}\"\n[[party.key]]\nvkey = \"{}\"\nvalid_until = 2020-01-01T00:00:00Z\n",
            old.verifier()
        ),
    );
    assert_ne!(text, current.text());
    let mut rotated = hotline::agreement::SignedAgreement::parse(text.as_bytes()).unwrap();
    for (config, _) in &made {
        rotated.sign(&key_of(config)).unwrap();
    }
    for (config, _) in &made {
        std::fs::write(&config.agreement, rotated.to_bytes()).unwrap();
    }
    let c = Cluster::start_made(root, made, |_| {}).await;
    refused(
        &c,
        signed(&valid_notice("CHL", &["PER"]), &old),
        Code::Unauthenticated,
        "is not valid at",
    )
    .await;
    // The current key still works.
    deliver(
        &mut c.peer_client(1, 0),
        signed(&valid_notice("CHL", &["PER"]), &key(&c, 1)),
    )
    .await
    .unwrap();
}

fn key_of(config: &hotline::config::Config) -> IdentityKey {
    IdentityKey::load(&config.identity_key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_to_start_on_an_agreement_one_party_did_not_sign() {
    let root = tempfile::tempdir().unwrap();
    let mut made = hotline::setup::local_cluster(root.path(), &["PER", "CHL", "ARG"], FAST_NORMS)
        .await
        .unwrap();
    let signed = hotline::agreement::SignedAgreement::load(&made[0].0.agreement).unwrap();
    let mut partial = hotline::agreement::SignedAgreement::parse(signed.text().as_bytes()).unwrap();
    partial.sign(&key_of(&made[0].0)).unwrap();
    partial.sign(&key_of(&made[1].0)).unwrap();
    std::fs::write(&made[0].0.agreement, partial.to_bytes()).unwrap();
    let (config, listener) = made.remove(0);
    let err = hotline::server::start(&config, Some(listener), hotline::clock::Clock::system())
        .await
        .err()
        .expect("started on an under-signed agreement");
    let msg = err.to_string();
    assert!(msg.contains("agreement.toml") && msg.contains("missing: ARG"), "{msg}");
}

async fn deliver_batch(
    client: &mut FederationClient<Channel>,
    envelopes: Vec<Envelope>,
) -> Result<Vec<Result<Envelope, (Code, String)>>, tonic::Status> {
    let reply = client
        .deliver_batch(DeliverBatchRequest {
            envelopes,
            ..Default::default()
        })
        .await?;
    Ok(reply
        .into_inner()
        .outcomes
        .into_iter()
        .map(|o| match o.result.unwrap() {
            deliver_outcome::Result::Receipt(r) => Ok(r),
            deliver_outcome::Result::Error(e) => Err((Code::from(e.code), e.message)),
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_answered_envelope_by_envelope_in_order_and_a_bad_one_is_refused_alone() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let chl = key(&c, 1);
    let notices: Vec<Notice> = (0..5).map(|_| valid_notice("CHL", &["PER"])).collect();
    let mut envelopes: Vec<Envelope> = notices.iter().map(|n| signed(n, &chl)).collect();
    envelopes[2].payload[3] ^= 1;
    let before = logged_besides_witnessing(&c).len();
    let outcomes = deliver_batch(&mut c.peer_client(1, 0), envelopes).await.unwrap();
    assert_eq!(outcomes.len(), 5);
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match (i, outcome) {
            (2, Err((code, message))) => {
                assert_eq!(code, Code::Unauthenticated, "{message}");
                assert!(message.contains("does not verify"), "{message}");
            }
            (2, Ok(_)) => panic!("the altered envelope was receipted"),
            (_, Ok(receipt)) => {
                let r = hotline::proto::Receipt::decode(&receipt.payload[..]).unwrap();
                assert_eq!(r.message_id, notices[i].id, "receipts come back in the order sent");
            }
            (_, Err(e)) => panic!("envelope {i} refused: {e:?}"),
        }
    }
    assert_eq!(
        logged_besides_witnessing(&c).len(),
        before + 4,
        "only the four good notices are logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_oversized_batch_is_invalid_argument() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let chl = key(&c, 1);
    let mut client = c.peer_client(1, 0);
    let err = deliver_batch(&mut client, vec![]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("field envelopes has 0"), "{}", err.message());
    let env = signed(&valid_notice("CHL", &["PER"]), &chl);
    let too_many = vec![env; hotline::federation::MAX_BATCH + 1];
    let err = deliver_batch(&mut client, too_many).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("1 to 256"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_envelope_of_a_batch_counts_against_the_peers_request_rate() {
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        config.limits = common::TIGHT_LIMITS;
    })
    .await;
    let chl = key(&c, 1);
    let four = (0..4).map(|_| signed(&valid_notice("CHL", &["PER"]), &chl)).collect();
    let err = deliver_batch(&mut c.peer_client(1, 0), four).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(err.message().contains("CHL is over the limit"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_checkpoint_superseded_while_a_check_runs_is_still_detected() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let chl = key(&c, 1);
    // CHL's log grows by three entries PER never hears of: three real checkpoints.
    let mut real = Vec::new();
    for i in 0..3 {
        let appended = c
            .node(1)
            .log()
            .append(vec![common::entry(&format!("e{i}"))])
            .await
            .unwrap();
        real.push(hotline::log::checkpoint::verify(&appended.checkpoint, chl.verifier()).unwrap());
    }
    // CHL also signed another root for the middle size: a fork.
    let forged_note =
        hotline::log::checkpoint::sign(std::slice::from_ref(&chl), real[1].size, tlog_tiles::Hash([7; 32])).unwrap();
    let forged = hotline::log::checkpoint::verify(&forged_note, chl.verifier()).unwrap();
    // The first is being checked when the other two arrive; the largest supersedes the fork.
    let per = c.node(0);
    tokio::join!(
        per.witness().witness("CHL", real[0].clone()),
        per.witness().witness("CHL", forged),
        per.witness().witness("CHL", real[2].clone()),
    );
    c.eventually(10, "PER logged the superseded fork", |c| {
        c.log_lines(0)
            .iter()
            .any(|l| l.starts_with("CHECKPOINT_FORK CHL:") && l.contains(&format!("size {}", real[1].size)))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_may_read_the_operator_service_but_not_act_on_it() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let config = &c.configs[0];
    let tls = config.path.parent().unwrap().join("tls");
    let auditor = hotline::tls::CertKey {
        cert: std::fs::read_to_string(tls.join("auditor.pem")).unwrap(),
        key: std::fs::read_to_string(tls.join("auditor.key")).unwrap(),
    };
    let channel = hotline::transport::channel(&config.client_node, &config.ca_pem().unwrap(), &auditor).unwrap();
    let mut client = hotline::proto::operator_client::OperatorClient::new(channel);
    let status = client
        .status(hotline::proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.party, "PER");
    let refused = client
        .send_notice(hotline::proto::SendNoticeRequest {
            notice: Some(common::notice(&["CHL"], "from an auditor")),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused
            .message()
            .ends_with("holds an auditor certificate, which cannot do this; it takes an operator certificate of this node ([[local]] in hotline.toml names each with its role)"),
        "{}",
        refused.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_notice_naming_a_recipient_outside_the_agreement_is_refused() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    refused(
        &c,
        signed(&valid_notice("CHL", &["PER", "XYZ"]), &key(&c, 1)),
        Code::InvalidArgument,
        "field to: XYZ is not a party of the agreement",
    )
    .await;
}

/// A response by party `from` (index) to notice `notice_id`, addressed to PER, signed by its key.
fn response_by(c: &Cluster, from: usize, notice_id: &str) -> Envelope {
    let party = c.configs[from].party.clone();
    let r = hotline::proto::Response {
        id: message::new_id(),
        notice_id: notice_id.into(),
        from: party,
        to: vec!["PER".into()],
        created_at: Some(clock::to_proto(clock::now())),
        status: hotline::proto::ResponseStatus::Acknowledged as i32,
        text: "seen".into(),
        author: "duty".into(),
        ..Default::default()
    };
    envelope::sign(hotline::envelope::RESPONSE_TYPE, r.encode_to_vec(), &key(c, from)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_from_a_party_the_notice_was_not_sent_to_is_refused() {
    let c = Cluster::start(&["PER", "CHL", "ARG"], FAST_NORMS).await;
    let id = c.send(0, common::notice(&["CHL"], "for CHL only")).await;
    let before = c.log_lines(0).len();
    let err = deliver(&mut c.peer_client(2, 0), response_by(&c, 2, &id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(
        err.message().contains("ARG was not a recipient of notice"),
        "{}",
        err.message()
    );
    assert!(
        !c.log_lines(0)[before..]
            .iter()
            .any(|l| l.starts_with("received from ARG")),
        "nothing from ARG logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_party_checked_can_answer_a_communication_check() {
    let c = Cluster::start(&["PER", "CHL", "ARG"], FAST_NORMS).await;
    let check = c
        .node(0)
        .comm_check(Some("CHL"), false, hotline::node::Actor::Operator("duty"))
        .await
        .unwrap()
        .remove(0);
    let err = deliver(&mut c.peer_client(2, 0), response_by(&c, 2, &check))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    c.eventually(10, "CHL's own answer logged", |c| {
        c.log_lines(0).iter().any(|l| l.starts_with("COMM_CHECK_OK CHL"))
    })
    .await;
    assert!(
        !c.log_lines(0).iter().any(|l| l.starts_with("COMM_CHECK_OK ARG")),
        "ARG answered a check it was not sent"
    );
}

/// PER sends a TLP:RED notice to CHL and returns its id once CHL holds it.
async fn red_notice_to_chl(c: &Cluster) -> String {
    let mut red = common::notice(&["CHL"], "for CHL's eyes only");
    red.tlp = hotline::proto::Tlp::Red as i32;
    let id = c.send(0, red).await;
    c.until_held(1, &id).await;
    id
}

/// A notice from CHL's operator continuing `in_reply_to`.
fn reply(to: &[&str], in_reply_to: &str, tlp: hotline::proto::Tlp) -> Notice {
    let mut n = common::notice(to, "more on this");
    n.kind = hotline::proto::NoticeKind::Update as i32;
    n.in_reply_to = in_reply_to.into();
    n.tlp = tlp as i32;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tlp_holds_along_a_thread_a_reply_to_a_red_notice_reaches_no_one_new() {
    use hotline::proto::{SendNoticeRequest, Tlp};
    let c = Cluster::start(&["PER", "CHL", "ARG"], FAST_NORMS).await;
    let red = red_notice_to_chl(&c).await;
    let send = |n: Notice| {
        let mut op = c.operator(1);
        async move { op.send_notice(SendNoticeRequest { notice: Some(n) }).await }
    };
    // A reply may not be less restricted than what it answers.
    let weaker = send(reply(&["PER"], &red, Tlp::Green)).await.unwrap_err();
    assert_eq!(weaker.code(), Code::FailedPrecondition);
    assert!(
        weaker.message().contains("at least as restricted"),
        "{}",
        weaker.message()
    );
    // A RED reply to the sender is fine; continuing that reply to ARG is a forward of RED.
    let first = send(reply(&["PER"], &red, Tlp::Red)).await.unwrap().into_inner().id;
    let onward = send(reply(&["ARG"], &first, Tlp::Red)).await.unwrap_err();
    assert_eq!(onward.code(), Code::FailedPrecondition);
    assert!(
        onward.message().contains("TLP:RED") && onward.message().contains("ARG"),
        "{}",
        onward.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_refuses_a_reply_that_breaks_the_tlp_of_a_notice_it_holds() {
    let c = Cluster::start(&["PER", "CHL", "ARG"], FAST_NORMS).await;
    let red = red_notice_to_chl(&c).await;
    // CHL's node is bypassed: CHL's key signs a reply that also goes to ARG.
    let mut forged = valid_notice("CHL", &["PER", "ARG"]);
    forged.in_reply_to = red;
    forged.tlp = hotline::proto::Tlp::Red as i32;
    // PER's log still grows with CHL's receipt of the RED notice, so look for the reply itself.
    let err = deliver(&mut c.peer_client(1, 0), signed(&forged, &key(&c, 1)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("TLP:RED"), "{}", err.message());
    assert!(
        !c.log_lines(0).iter().any(|l| l.contains(&forged.id)),
        "the refused reply was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_signature_of_several_mib_under_an_unknown_key_is_refused_and_nothing_logged() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut env = signed(&valid_notice("CHL", &["PER"]), &key(&c, 1));
    env.signatures.push(hotline::proto::Signature {
        keyid: "hotline.example/XYZ+deadbeef".into(),
        sig: vec![7; 3 << 20],
    });
    refused(
        &c,
        env,
        Code::InvalidArgument,
        "field signatures: 2 signatures, but CHL has 1 key",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_valid_signature_repeated_thousands_of_times_is_refused_before_any_is_verified() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut env = signed(&valid_notice("CHL", &["PER"]), &key(&c, 1));
    let one = env.signatures[0].clone();
    env.signatures = vec![one; 20_000];
    refused(&c, env, Code::InvalidArgument, "20000 signatures").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_agreement_allows_is_refused_before_it_is_decoded() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut n = valid_notice("CHL", &["PER"]);
    n.summary = "x".repeat(6 << 20); // the agreement allows 1 MiB; a batch 4 MiB
    let err = deliver(&mut c.peer_client(1, 0), signed(&n, &key(&c, 1)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("limit"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_starts_tls_is_closed_after_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        config.handshake_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(c.nodes[0].as_ref().unwrap().addr)
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    // The node closes it; a node without a handshake timeout holds it until the test gives up.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), silent.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "still open: {closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_nodes_total_cap_are_closed_whatever_their_address() {
    use tokio::io::AsyncReadExt;
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        config.connections_per_address = 2;
        config.connections = 3;
    })
    .await;
    let addr = c.nodes[0].as_ref().unwrap().addr;
    let mut held = Vec::new();
    let mut closed = 0;
    // Eight loopback addresses, one connection each: only the total cap can stop them.
    for i in 2..10u8 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, i], 0))).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        match tokio::time::timeout(std::time::Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            _ => held.push(s),
        }
    }
    assert!(held.len() <= 3, "{} connections held open", held.len());
    assert!(closed >= 5, "only {closed} of 8 refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partys_operator_certificate_cannot_act_as_its_node() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    // CHL's operator certificate is issued by CHL's CA, but it is not CHL's node.
    let endpoint = format!("https://{}", c.nodes[0].as_ref().unwrap().addr);
    let channel = hotline::transport::channel(
        &endpoint,
        &c.configs[0].ca_pem().unwrap(),
        &c.configs[1].client_cert().unwrap(),
    )
    .unwrap();
    let err = deliver(
        &mut FederationClient::new(channel),
        signed(&valid_notice("CHL", &["PER"]), &key(&c, 1)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("not its node's"), "{}", err.message());
    // CHL's node certificate still is.
    deliver(
        &mut c.peer_client(1, 0),
        signed(&valid_notice("CHL", &["PER"]), &key(&c, 1)),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_calls_over_its_share_are_refused_before_their_bodies_are_read() {
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| config.peer_calls_in_flight = 1).await;
    let chl = key(&c, 1);
    // Thirty calls of about 1 MiB each, all at once, on one connection.
    let client = c.peer_client(1, 0);
    let calls: Vec<_> = (0..30)
        .map(|_| {
            let mut n = valid_notice("CHL", &["PER"]);
            n.summary = "x".repeat(1_000_000);
            let (mut client, env) = (client.clone(), signed(&n, &chl));
            tokio::spawn(async move { deliver(&mut client, env).await })
        })
        .collect();
    let mut refused = 0;
    for call in calls {
        if let Err(e) = call.await.unwrap() {
            assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
            assert!(e.message().contains("calls in flight"), "{}", e.message());
            refused += 1;
        }
    }
    assert!(refused > 0, "no call was refused at a share of one");
    // The slots are freed: a lone call goes through.
    deliver(&mut c.peer_client(1, 0), signed(&valid_notice("CHL", &["PER"]), &chl))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_is_not_protobuf_is_invalid_argument_not_internal() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let err = undecodable_deliver_batch(&c).await;
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("decode"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_ends_in_the_middle_of_its_message_is_invalid_argument_not_internal() {
    use tower::ServiceExt as _;
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let channel = hotline::transport::channel(
        &format!("https://{}", c.nodes[0].as_ref().unwrap().addr),
        &c.configs[0].ca_pem().unwrap(),
        &c.configs[1].node_cert().unwrap(),
    )
    .unwrap();
    // A gRPC frame announcing 100 bytes, then 3, then the end of the stream.
    let request = http::Request::post(format!(
        "https://{}/hotline.v1.Federation/DeliverBatch",
        c.nodes[0].as_ref().unwrap().addr
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(tonic::body::Body::new(String::from("\0\0\0\0dabc")))
    .unwrap();
    let response = channel.oneshot(request).await.unwrap();
    let status = tonic::Status::from_header_map(response.headers()).expect("a trailers-only answer");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("EOF"), "{}", status.message());
}

/// CHL's node calls PER's `DeliverBatch` with a body that is not protobuf
/// (field 1 claims more bytes than follow) and gets the refusal.
async fn undecodable_deliver_batch(c: &Cluster) -> tonic::Status {
    let mut client = tonic::client::Grpc::new(
        hotline::transport::channel(
            &format!("https://{}", c.nodes[0].as_ref().unwrap().addr),
            &c.configs[0].ca_pem().unwrap(),
            &c.configs[1].node_cert().unwrap(),
        )
        .unwrap(),
    );
    client.ready().await.unwrap();
    client
        .unary::<_, hotline::proto::DeliverBatchResponse, _>(
            tonic::Request::new(RawBytes(vec![0x0a, 0xff, 0x01, 0x00])),
            http::uri::PathAndQuery::from_static("/hotline.v1.Federation/DeliverBatch"),
            RawCodec,
        )
        .await
        .unwrap_err()
}

/// Bytes sent as they are, as a broken or hostile client might.
struct RawBytes(Vec<u8>);

/// Encodes [`RawBytes`] verbatim and decodes the answer as protobuf.
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = RawBytes;
    type Decode = hotline::proto::DeliverBatchResponse;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<hotline::proto::DeliverBatchResponse>;
    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = RawBytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: RawBytes, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item.0);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_rate_is_spent_is_refused_before_its_request_is_decoded() {
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        config.limits = common::TIGHT_LIMITS
    })
    .await;
    let chl = key(&c, 1);
    // CHL's node spent part of its burst delivering its roster at start: what is left goes now.
    let mut spent = false;
    for _ in 0..4 {
        match deliver(&mut c.peer_client(1, 0), signed(&valid_notice("CHL", &["PER"]), &chl)).await {
            Ok(_) => {}
            Err(e) if e.code() == Code::ResourceExhausted => {
                spent = true;
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(spent, "a burst of 3 is spent within 4 calls");
    // Its burst is spent: the next call is refused whatever its body, which is not even protobuf.
    let err = undecodable_deliver_batch(&c).await;
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("requests per second"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_notice_whose_body_is_not_the_text_its_sender_signed_is_refused() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let per = hotline::seal::SealKey::load(&c.configs[0].encryption_key).unwrap();
    let (mut signed_text, mut shown) = (valid_notice("CHL", &["PER"]), valid_notice("CHL", &["PER"]));
    signed_text.title = "Our systems are fine".into();
    shown.id = signed_text.id.clone();
    shown.title = "Your systems attacked ours".into();
    let lying = common::lying_seal(
        &signed_text.encode_to_vec(),
        &shown.encode_to_vec(),
        "PER",
        per.public(),
    );
    let meta = hotline::message::meta::of_payload(NOTICE_TYPE, &signed_text.encode_to_vec(), None);
    let sealed = hotline::proto::SealedMessage {
        payload_type: NOTICE_TYPE.into(),
        meta: Some(meta),
        sealed: Some(lying),
    };
    let env = envelope::sign(envelope::SEALED_TYPE, sealed.encode_to_vec(), &key(&c, 1)).unwrap();
    refused(&c, env, Code::InvalidArgument, "the commitment does not match").await;
}
