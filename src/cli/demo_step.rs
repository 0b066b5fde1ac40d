//! What every step of the demo uses: an operator client for a party, waiting
//! for a step to be done, and saying what happens.

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
