//! What every step of the demo uses: an operator client for a party, its
//! roster of named people, waiting for a step to be done, and saying what happens.

use std::time::{Duration, Instant};

use anyhow::bail;
use hotline::config::Config;
use hotline::proto::operator_client::OperatorClient;
use tonic::transport::Channel;

use super::view::Out;

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
        .find(|(_, (name, _))| name == "operator")
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

pub fn say(out: Out, line: &str) {
    if !out.json {
        super::view::outln!("{line}");
    }
}
