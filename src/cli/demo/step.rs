//! What every step of the demo uses: an operator client for a party, its
//! roster of named people, waiting for a step to be done, saying what
//! happens, and the files an auditor and a CERT tool get at the end.

use std::time::{Duration, Instant};

use anyhow::bail;
use hotline::config::Config;
use hotline::proto::operator_client::OperatorClient;
use tonic::transport::Channel;

use crate::cli::view::Out;

pub fn operator(c: &Config) -> anyhow::Result<OperatorClient<Channel>> {
    Ok(OperatorClient::new(hotline::transport::channel(
        &c.client_node,
        &c.ca_pem()?,
        &c.client_cert()?,
    )?))
}

/// Publishes roster version 2 of `c`'s party, signed by its identity key:
/// `technical` acts with the party's operator certificate, `policy` receives escalations.
pub async fn publish_roster(c: &Config, technical: &str, policy: &str) -> anyhow::Result<()> {
    let cert = c
        .local_fingerprints()?
        .into_iter()
        .find(|(_, local)| local.name == "operator")
        .map(|(fp, _)| hex::encode(fp))
        .unwrap_or_default();
    let text = format!(
        "party = \"{}\"\nversion = 2\n\n[[contact]]\nname = \"{technical}\"\nroles = [\"technical\"]\n\
         languages = [\"es\", \"en\"]\ncerts = [\"{cert}\"]\n\n[[contact]]\nname = \"{policy}\"\nroles = [\"policy\"]\nlanguages = [\"es\"]\n",
        c.party
    );
    let signed = hotline::roster::SignedRoster::sign(&text, &hotline::keys::IdentityKey::load(&c.identity_key)?)?;
    operator(c)?
        .publish_roster(hotline::proto::PublishRosterRequest {
            signed_roster: signed.to_bytes(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{} PublishRoster: {}", c.party, s.message()))?;
    Ok(())
}

pub async fn wait(what: &str, secs: u64, mut done: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(secs);
    while !done()? {
        if Instant::now() > until {
            bail!("demo step timed out: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Writes `node`'s compliance report and the STIX 2.1 export of its notices into `dir`.
pub fn auditor_files(node: &Config, dir: &std::path::Path) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = hotline::keys::IdentityKey::load(&node.identity_key)?;
    let verified = hotline::log::verify::verify_data_dir(&node.data, key.verifier(), |_, _| {});
    let opener = hotline::opener::Opener::load(&node.party, &node.encryption_key)?;
    let ledger = hotline::report::Ledger::from_data_dir(&node.data, Some(opener))?;
    let verification = hotline::report::Verification::of(&verified);
    let html =
        hotline::report::render(&ledger, &node.party, &verification).map_err(|e| anyhow::anyhow!("report: {e}"))?;
    let report = dir.join("report.html");
    crate::cli::files::write_atomic(&report, html.as_bytes())?;
    let c = hotline::store::open_reader(&node.data)?;
    let opener = hotline::opener::Opener::load(&node.party, &node.encryption_key)?;
    let bundle = hotline::stix::bundle_of_log(&c, &node.party, hotline::proto::Tlp::Amber, &opener)?
        .context("the log holds no adopted agreement")?;
    let stix = dir.join("stix.json");
    crate::cli::files::write_atomic(&stix, (serde_json::to_string_pretty(&bundle)? + "\n").as_bytes())?;
    Ok((report, stix))
}

pub fn say(out: Out, line: &str) {
    if !out.json {
        crate::cli::view::outln!("{line}");
    }
}
