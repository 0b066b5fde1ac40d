//! The demo's timeline: every entry of every party's log, merged by time.

use anyhow::Context;
use hotline::clock;
use hotline::config::Config;
use hotline::log::{LogReader, entry};
use hotline::proto::LogEntry;
use prost::Message;

/// Every entry of every party's log, oldest first: (time, party, description).
pub fn timeline(configs: &[Config]) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut all = Vec::new();
    for c in configs {
        let reader = LogReader::open(&c.data)?;
        for (_, stored) in reader.entries(0, i64::MAX as u64, usize::MAX >> 1)? {
            let e = LogEntry::decode(&stored.data[..])?;
            let at = e
                .logged_at
                .as_ref()
                .and_then(clock::from_proto)
                .context("entry without a time")?;
            all.push((at, c.party.clone(), entry::describe(&e)));
        }
    }
    all.sort_by_key(|(at, _, _)| *at);
    Ok(all
        .into_iter()
        .map(|(at, p, l)| {
            let t = at.time();
            (
                format!(
                    "{:02}:{:02}:{:02}.{:03}",
                    t.hour(),
                    t.minute(),
                    t.second(),
                    t.millisecond()
                ),
                p,
                l,
            )
        })
        .collect())
}
