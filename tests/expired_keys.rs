//! A node never signs with a key outside its window in the agreement in
//! force: what it would sign so could never verify, at its peers or in its
//! own audit. `serve` refuses to start with such a key, and the signer
//! refuses to sign; no accepted call writes an entry `audit verify` rejects.

mod common;

use hotline::agreement::SignedAgreement;
use hotline::proto::{
    ApproveAmendmentRequest, CommCheckRequest, ProposeAmendmentRequest, RespondRequest, ResponseStatus,
};
use hotline::setup::Changes;
use tonic::Code;

/// The rotation's overlap: PER's old key is valid this long after the rotation.
const OVERLAP: time::Duration = time::Duration::hours(1);

/// PER and CHL, where PER rotated its key over the hotline (the old key valid
/// for `OVERLAP` more) and was then restarted without the rotation's next
/// key file, as the operator of the report did.
async fn per_left_with_its_old_key_only() -> common::Cluster {
    let mut c = common::Cluster::start(&["PER", "CHL"], common::FAST_NORMS).await;
    let old = c.key(0);
    let new = hotline::keys::IdentityKey::generate(old.name()).unwrap();
    new.save(&c.configs[0].next_identity_key).unwrap();
    let now = c.clock.now();
    let v1 = SignedAgreement::parse(&c.node(0).in_force().signed.to_bytes()).unwrap();
    let changes = Changes {
        rotate: vec![("PER".into(), new.verifier().to_string(), now, now + OVERLAP)],
        ..Default::default()
    };
    c.operator(0)
        .propose_amendment(ProposeAmendmentRequest {
            signed_note: hotline::setup::amended_text(&v1, &changes).into_bytes(),
            reason: "rotation".into(),
        })
        .await
        .unwrap();
    common::awaited("CHL approves version 2", || async {
        let approved = c
            .operator(1)
            .approve_amendment(ApproveAmendmentRequest {
                version: 2,
                ..Default::default()
            })
            .await;
        approved.is_ok().then_some(())
    })
    .await;
    c.eventually(10, "both adopted version 2", |c| c.version(0) == 2 && c.version(1) == 2)
        .await;
    c.stop(0).await;
    std::fs::remove_file(&c.configs[0].next_identity_key).unwrap();
    c.restart(0).await;
    c
}

fn refused_for_its_key(status: &tonic::Status) -> bool {
    status.code() == Code::FailedPrecondition && status.message().contains("no identity key of this node is valid")
}

/// A small deterministic generator, so a failing sequence can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_operator_call_writes_an_entry_audit_verify_rejects_across_a_keys_expiry() {
    // Each seed draws another sequence of calls and clock steps; a failing one replays.
    for seed in [0x5eed, 0xface, 0xbeef] {
        operator_calls_across_the_expiry(seed).await;
    }
}

/// Random operator calls while the clock moves past PER's old key's
/// window: each is accepted or refused for the key, and PER's log verifies.
async fn operator_calls_across_the_expiry(seed: u64) {
    let c = per_left_with_its_old_key_only().await;
    let chl_notice = c.send(1, common::notice(&["PER"], "Answer me")).await;
    c.until_held(0, &chl_notice).await;
    let mut rng = Lcg(seed);
    let (mut accepted, mut refused) = (0, 0);
    for step in 0..24 {
        // About half an overlap in all before the expiry, then past it.
        c.clock.advance(std::time::Duration::from_secs(rng.next(600) + 60));
        let mut op = c.operator(0);
        let outcome = match rng.next(3) {
            0 => op
                .send_notice(hotline::proto::SendNoticeRequest {
                    notice: Some(common::notice(&["CHL"], &format!("step {step}"))),
                })
                .await
                .map(drop),
            1 => op
                .comm_check(CommCheckRequest {
                    party: "CHL".into(),
                    human: false,
                })
                .await
                .map(drop),
            _ => op
                .respond(RespondRequest {
                    notice_id: chl_notice.clone(),
                    status: ResponseStatus::Acknowledged as i32,
                    text: format!("step {step}"),
                    ..Default::default()
                })
                .await
                .map(drop),
        };
        match outcome {
            Ok(()) => accepted += 1,
            Err(s) if refused_for_its_key(&s) => refused += 1,
            Err(s) => assert!(s.code() != Code::Internal, "seed {seed:#x}, step {step}: {s:?}"),
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "seed {seed:#x}: {accepted} accepted, {refused} refused"
    );
    let data = c.configs[0].data.to_str().unwrap().to_owned();
    let (ok, v) = common::hotline_json(&["audit", "verify", "--data", &data]);
    assert!(ok, "seed {seed:#x}: PER's own log verifies: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_past_its_window_is_refused_at_sign_and_at_start() {
    let mut c = per_left_with_its_old_key_only().await;
    c.send(0, common::notice(&["CHL"], "Within the overlap")).await;
    c.clock.advance((OVERLAP + time::Duration::minutes(1)).unsigned_abs());
    let refused = c
        .operator(0)
        .send_notice(hotline::proto::SendNoticeRequest {
            notice: Some(common::notice(&["CHL"], "After it")),
        })
        .await
        .unwrap_err();
    assert!(refused_for_its_key(&refused), "{refused:?}");
    assert!(refused.message().contains("next key"), "{}", refused.message());
    c.stop(0).await;
    let listener = tokio::net::TcpListener::bind(c.configs[0].listen_addr()).await.unwrap();
    let err = hotline::server::start(&c.configs[0], Some(listener), c.clock.clone())
        .await
        .err()
        .expect("serve refuses an expired key");
    let err = err.to_string();
    assert!(err.contains("no identity key of this node is valid"), "{err}");
    assert!(err.contains("identity.key"), "the key file is named: {err}");
}
