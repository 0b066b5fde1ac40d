//! Step 5 of the demo: a fourth party joins by an amendment adopted while
//! every node runs.

use std::path::Path;

use anyhow::Context;
use hotline::config::Config;
use hotline::keys::IdentityKey;
use hotline::proto::{Category, Notice, NoticeKind, SendNoticeRequest, Severity, Tlp};
use hotline::server::Running;
use hotline::state;

use super::step::{operator, say, wait};
use crate::cli::view::Out;

/// Step 5: EST joins while every node runs. It creates its files and signs
/// version 2 (the agreement in force with EST added); PER proposes it over
/// the hotline, CHL and ARG approve, and every node adopts it the moment
/// its signatures meet the chain rule. EST starts from the adopted version,
/// fetched from PER, and PER's notice to it is receipted.
pub async fn join(
    root: &Path,
    configs: &[Config],
    nodes: &mut Vec<Running>,
    exercise: i32,
    out: Out,
) -> anyhow::Result<Config> {
    use hotline::agreement::SignedAgreement;
    use hotline::proto::{ApproveAmendmentRequest, GetAgreementRequest, ProposeAmendmentRequest};
    say(
        out,
        "5. EST joins: PER proposes agreement version 2 over the hotline; CHL and ARG approve",
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let dir = root.join("EST");
    let endpoint = format!("https://{addr}");
    let plan = hotline::setup::Plan::local("EST", "hotline.example/EST", "EST national CSIRT", addr, &endpoint);
    let created = hotline::setup::create(&dir, &plan)?;
    let current = SignedAgreement::parse(&nodes[0].node.in_force().signed.to_bytes())?;
    let changes = hotline::setup::Changes {
        add: vec![created.party_entry.clone()],
        ..Default::default()
    };
    let mut v2 = SignedAgreement::parse(hotline::setup::amended_text(&current, &changes).as_bytes())?;
    v2.sign(&IdentityKey::load(&dir.join("identity.key"))?)?;
    operator(&configs[0])?
        .propose_amendment(ProposeAmendmentRequest {
            signed_note: v2.to_bytes(),
            reason: "EST joins the hotline".into(),
        })
        .await
        .context("PER ProposeAmendment")?;
    for (i, c) in configs.iter().enumerate().skip(1) {
        let node = nodes[i].node.clone();
        wait("the proposal reaches every party", 20, || {
            Ok(!node.read(|c| hotline::state::proposals_after(c, 1))?.is_empty() || node.in_force().version() == 2)
        })
        .await?;
        operator(c)?
            .approve_amendment(ApproveAmendmentRequest {
                version: 2,
                ..Default::default()
            })
            .await
            .with_context(|| format!("{} ApproveAmendment", c.party))?;
    }
    wait("every node adopts version 2", 20, || {
        Ok(nodes.iter().all(|n| n.node.in_force().version() == 2))
    })
    .await?;
    say(
        out,
        "   version 2 adopted by PER, CHL and ARG while running: EST's key trusted, its node dialled",
    );
    // EST fetches the version in force from PER with its own node certificate, and starts.
    let mut est = Config::load_before_agreement(&created.config)?;
    let per_endpoint = format!("https://{}", nodes[0].addr);
    let channel = hotline::transport::channel(&per_endpoint, &configs[0].ca_pem()?, &est.node_cert()?)?;
    let adopted = hotline::proto::federation_client::FederationClient::new(channel)
        .get_agreement(GetAgreementRequest { version: 0 })
        .await
        .context("EST fetches the agreement from PER")?
        .into_inner()
        .signed_note;
    std::fs::write(&est.agreement, &adopted)?;
    est = Config::load(&created.config)?;
    nodes.push(hotline::server::start(&est, Some(listener), hotline::clock::Clock::system()).await?);
    let welcome = Notice {
        to: vec!["EST".into()],
        kind: NoticeKind::Notification as i32,
        severity: Severity::Low as i32,
        category: Category::Other as i32,
        tlp: Tlp::Green as i32,
        title: "Welcome to the hotline".into(),
        exercise,
        ..Default::default()
    };
    let sent = operator(&configs[0])?
        .send_notice(SendNoticeRequest { notice: Some(welcome) })
        .await
        .context("PER SendNotice to EST")?
        .into_inner();
    let per = nodes[0].node.clone();
    wait("EST's receipt", 20, || {
        Ok(per.read(|c| state::receipts(c, &sent.id))?.len() == 1)
    })
    .await?;
    wait("cross-witnessed checkpoints with EST", 10, || {
        Ok(per.read(|c| state::last_witnessed(c, "EST"))?.is_some())
    })
    .await?;
    say(
        out,
        &format!(
            "   EST started from version 2 (fetched from PER); PER's notice {} to EST receipted",
            sent.id
        ),
    );
    Ok(est)
}
