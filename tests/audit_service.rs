//! The Audit gRPC service over real mutual TLS on 127.0.0.1:0, against a
//! real log: what auditors get, and the status codes for bad requests.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{TlsParty, tls_agreement, tls_parties};
use hotline::audit::AuditService;
use hotline::limits::{LimitConfig, Limits};
use hotline::log::{Log, checkpoint};
use hotline::proto::audit_client::AuditClient;
use hotline::proto::audit_server::AuditServer;
use hotline::proto::{
    ConsistencyProofRequest, GetCheckpointRequest, GetEntriesRequest, InclusionProofRequest,
    ListWitnessedCheckpointsRequest,
};
use hotline::tls::{CertKey, Identifier, Role, Usage, fingerprint, issue};
use hotline::transport;
use tlog_tiles::Hash;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

struct Fixture {
    _dir: tempfile::TempDir,
    log: Arc<Log>,
    parties: Vec<TlsParty>,
    auditor: CertKey,
    port: u16,
}

async fn start() -> Fixture {
    start_with(LimitConfig::default()).await
}

async fn start_with(limits: LimitConfig) -> Fixture {
    let parties = tls_parties(&["PER", "CHL"]);
    let me = &parties[0];
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), me.key.clone()).unwrap());
    for batch in 0..4 {
        let entries = (0..5).map(|i| common::entry(&format!("entry {batch}-{i}"))).collect();
        log.append(entries).await.unwrap();
    }
    let auditor = issue(&me.id, &me.ca, "auditor-1", &[], Usage::Client).unwrap();
    let pem = |c: &CertKey| hotline::tls::certs_from_pem("auditor", &c.cert).unwrap()[0].clone();
    let cleared = hotline::tls::LocalCert {
        name: "auditor-1".to_owned(),
        role: Role::Auditor,
        clearance: hotline::proto::Tlp::Red,
    };
    let locals = HashMap::from([(fingerprint(&pem(&auditor)), cleared)]);
    let identifier = Arc::new(Identifier::new(&tls_agreement(&parties), locals).unwrap());
    let client_cas: String = parties.iter().map(|p| p.ca.cert.clone()).collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = transport::server(&me.node, &client_cas, std::time::Duration::from_secs(10))
        .unwrap()
        .add_service(transport::health().await)
        .add_service(transport::reflection().unwrap())
        .add_service(AuditServer::new(AuditService::new(
            log.clone(),
            hotline::gate::Gate::new(identifier, Limits::new(limits), &me.id),
            hotline::opener::Opener::default(),
        )));
    tokio::spawn(server.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)));
    Fixture {
        _dir: dir,
        log,
        parties,
        auditor,
        port,
    }
}

fn client(f: &Fixture, cert: &CertKey) -> AuditClient<Channel> {
    let channel = transport::channel(&format!("https://127.0.0.1:{}", f.port), &f.parties[0].ca.cert, cert).unwrap();
    AuditClient::new(channel)
}

fn hash(bytes: &[u8]) -> Hash {
    Hash(bytes.try_into().unwrap())
}

#[tokio::test]
async fn an_auditor_reads_entries_and_checks_proofs_against_the_signed_checkpoint() {
    let f = start().await;
    let mut audit = client(&f, &f.auditor);
    let note = audit
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap()
        .note;
    let cp = checkpoint::verify(&note, f.parties[0].key.verifier()).unwrap();
    assert_eq!(cp.size, 20);

    let mut stream = audit
        .get_entries(GetEntriesRequest { start: 3, end: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut entries = Vec::new();
    while let Some(e) = stream.next().await {
        entries.push(e.unwrap());
    }
    assert_eq!(entries.len(), 17);
    assert_eq!(entries[0].index, 3);

    let proof = audit
        .get_inclusion_proof(InclusionProofRequest { index: 7, tree_size: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proof.tree_size, 20);
    let leaf = tlog_tiles::record_hash(&entries[4].data);
    assert_eq!(proof.leaf_hash, leaf.0);
    let path: Vec<Hash> = proof.hashes.iter().map(|h| hash(h)).collect();
    tlog_tiles::check_record(&path, 20, cp.root, 7, leaf).unwrap();

    let c = audit
        .get_consistency_proof(ConsistencyProofRequest {
            old_size: 5,
            new_size: 20,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The auditor recomputes the old root from the first five entries itself.
    let mut first = audit
        .get_entries(GetEntriesRequest { start: 0, end: 5 })
        .await
        .unwrap()
        .into_inner();
    let mut frontier = hotline::log::tree::Frontier::default();
    while let Some(e) = first.next().await {
        frontier.push(&e.unwrap().data);
    }
    assert_eq!(frontier.size(), 5);
    let path: Vec<Hash> = c.hashes.iter().map(|h| hash(h)).collect();
    tlog_tiles::check_tree(&path, c.new_size, cp.root, 5, frontier.root()).unwrap();

    let w = audit
        .list_witnessed_checkpoints(ListWitnessedCheckpointsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(w.checkpoints.is_empty());
}

#[tokio::test]
async fn one_call_proves_several_old_sizes_consistent_with_one_new_size() {
    let f = start().await;
    let mut audit = client(&f, &f.auditor);
    let mut all = audit
        .get_entries(GetEntriesRequest { start: 0, end: 20 })
        .await
        .unwrap()
        .into_inner();
    // The root at every size, recomputed from the entries.
    let mut frontier = hotline::log::tree::Frontier::default();
    let mut roots = vec![frontier.root()];
    while let Some(e) = all.next().await {
        frontier.push(&e.unwrap().data);
        roots.push(frontier.root());
    }
    let c = audit
        .get_consistency_proof(ConsistencyProofRequest {
            old_size: 3,
            new_size: 20,
            more_old_sizes: vec![1, 19, 7, 20],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.more.len(), 4);
    for (old, proof) in [3u64, 1, 19, 7, 20].into_iter().zip(std::iter::once(&c).chain(&c.more)) {
        assert_eq!((proof.old_size, proof.new_size), (old, 20));
        let path: Vec<Hash> = proof.hashes.iter().map(|h| hash(h)).collect();
        tlog_tiles::check_tree(&path, 20, roots[20], old, roots[old as usize]).unwrap();
    }
    let err = audit
        .get_consistency_proof(ConsistencyProofRequest {
            old_size: 3,
            new_size: 20,
            more_old_sizes: vec![5, 21],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("old_size"), "{}", err.message());
}

#[tokio::test]
async fn out_of_range_and_malformed_requests_get_precise_codes() {
    let f = start().await;
    let mut audit = client(&f, &f.auditor);
    let err = audit
        .get_inclusion_proof(InclusionProofRequest {
            index: 20,
            tree_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    assert!(err.message().contains("0 to 19"), "{}", err.message());
    let err = audit
        .get_inclusion_proof(InclusionProofRequest {
            index: 0,
            tree_size: 21,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    // Each malformed consistency request is refused, naming the field at fault.
    for (request, field) in [
        ((0, 5, vec![]), "old_size"),
        ((6, 5, vec![]), "old_size"),
        ((1, 20, vec![1; hotline::log::MAX_MORE_OLD_SIZES + 1]), "more_old_sizes"),
    ] {
        let (old_size, new_size, more_old_sizes) = request;
        let err = audit
            .get_consistency_proof(ConsistencyProofRequest {
                old_size,
                new_size,
                more_old_sizes,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(field), "{}", err.message());
    }
    let err = audit
        .get_entries(GetEntriesRequest { start: 0, end: 99 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    let err = audit
        .get_entries(GetEntriesRequest { start: 10, end: 5 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_peer_node_certificate_is_not_an_auditor() {
    let f = start().await;
    let mut audit = client(&f, &f.parties[1].node);
    let err = audit.get_checkpoint(GetCheckpointRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("party CHL"), "{}", err.message());
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_cannot_connect() {
    let f = start().await;
    let stranger_ca = hotline::tls::new_ca("XXX").unwrap();
    let stranger = issue("XXX", &stranger_ca, "mallory", &[], Usage::Client).unwrap();
    let mut audit = client(&f, &stranger);
    let err = audit.get_checkpoint(GetCheckpointRequest {}).await.unwrap_err();
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

#[tokio::test]
async fn stock_health_checking_reports_serving() {
    let f = start().await;
    let channel = transport::channel(
        &format!("https://127.0.0.1:{}", f.port),
        &f.parties[0].ca.cert,
        &f.auditor,
    )
    .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "hotline.v1.Audit".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotline_audit_verify_checks_a_running_node_with_an_envelope_kept_beside_its_entry() {
    let f = start().await;
    // An envelope larger than both an entry bundle and gRPC's default 4 MiB reply.
    let big = hotline::envelope::sign(hotline::envelope::NOTICE_TYPE, vec![1; 5 << 20], &f.parties[0].key).unwrap();
    let entry = common::sent_entry(&big);
    assert!(entry.envelope.is_some());
    f.log.append(vec![entry]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let (ca, cert, key) = (
        write("ca.pem", &f.parties[0].ca.cert),
        write("a.pem", &f.auditor.cert),
        write("a.key", &f.auditor.key),
    );
    let node = format!("https://127.0.0.1:{}", f.port);
    let vkey = f.parties[0].key.verifier().to_string();
    let (ok, v) = tokio::task::spawn_blocking(move || {
        common::hotline_json(&[
            "audit",
            "verify",
            "--node",
            &node,
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--cert-key",
            &key,
            "--vkey",
            &vkey,
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{v}");
    assert_eq!(v["entries"], 21);
    assert_eq!(v["valid"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_over_its_rate_is_refused_resource_exhausted() {
    let f = start_with(common::TIGHT_LIMITS).await;
    let mut c = client(&f, &f.auditor);
    for _ in 0..3 {
        c.get_checkpoint(GetCheckpointRequest {}).await.unwrap();
    }
    let refused = c.get_checkpoint(GetCheckpointRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("auditor-1"), "{refused:?}");
}
