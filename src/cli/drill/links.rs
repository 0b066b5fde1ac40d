//! `hotline drill --link PROFILE`: every party reached through an impairing
//! proxy at the endpoint the agreement publishes for it (its node listening
//! behind), each node dialling from a loopback address of its own so a
//! proxy can tell parties apart, and what the link did to delivery read
//! back from the logs: messages delivered and receipted, duplicates, the
//! time from sending to the receipt, and the bytes that crossed the wire.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hotline::config::Config;
use hotline::impair::{FLAP_CUT, FLAP_EVERY, LinkProfile, PARTITION_CUT, Passage, Proxy};
use hotline::proto::{LogEntry, log_entry};
use prost::Message as _;

/// Below the ports each node listens on behind its proxy.
const FIRST_NODE_PORT: u16 = 20_000;

/// How long a flapping network flaps: three of its minutes.
const FLAPPING_FOR: Duration = Duration::from_secs(180);

/// The proxies in front of every party, and when a link last came back.
pub struct Network {
    profile: LinkProfile,
    proxies: Vec<Proxy>,
    sources: Vec<IpAddr>,
    returned: Mutex<Option<Instant>>,
    /// When the schedule ends: no link is cut from then on.
    calm_from: Mutex<Option<Instant>>,
}

/// The loopback address party `k` (from 0) dials from.
fn source(k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1, (k / 250) as u8, (k % 250 + 1) as u8))
}

impl Network {
    /// Puts each party of `made` behind a proxy with `profile`'s impairment
    /// on its published endpoint; the configurations as they now read.
    pub async fn build(
        made: Vec<(Config, tokio::net::TcpListener)>,
        profile: LinkProfile,
    ) -> anyhow::Result<(Vec<Config>, Network)> {
        let mut configs = Vec::with_capacity(made.len());
        let (mut proxies, mut sources) = (Vec::new(), Vec::new());
        let mut port = FIRST_NODE_PORT;
        for (k, (config, published)) in made.into_iter().enumerate() {
            // The node binds its own port when it starts: one below the range
            // the system hands out to outgoing connections, which would otherwise
            // take it first now and then.
            let own = loop {
                port += 1;
                anyhow::ensure!(port < 32_768, "no free port below 32768 for the nodes");
                if let Ok(free) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                    break free.local_addr()?;
                }
            };
            hotline::setup::move_behind(&config.path, own, Some(source(k)))?;
            configs.push(Config::load(&config.path)?);
            proxies.push(Proxy::start(published, own, profile.impairment())?);
            sources.push(source(k));
        }
        let network = Network {
            profile,
            proxies,
            sources,
            returned: Mutex::new(None),
            calm_from: Mutex::new(None),
        };
        Ok((configs, network))
    }

    /// Starts what the profile does over time: links that flap (each cut
    /// for 20 s in every minute, at its own offset, for three minutes) or a
    /// tenth of the parties cut off from the rest for two minutes. Nothing
    /// for the others.
    pub fn start_schedule(self: &Arc<Self>) {
        let n = self.proxies.len();
        let lasts = match self.profile {
            LinkProfile::Flapping => FLAPPING_FOR,
            LinkProfile::Partition => PARTITION_CUT,
            _ => Duration::ZERO,
        };
        *self.calm_from.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + lasts);
        match self.profile {
            LinkProfile::Flapping => {
                for k in 0..n {
                    let network = self.clone();
                    let offset = FLAP_EVERY.mul_f64(k as f64 / n as f64);
                    tokio::spawn(async move {
                        let start = tokio::time::Instant::now();
                        let mut cut_at = start + offset;
                        while cut_at + FLAP_CUT <= start + FLAPPING_FOR {
                            tokio::time::sleep_until(cut_at).await;
                            network.proxies[k].set_passage(Passage::Cut);
                            tokio::time::sleep(FLAP_CUT).await;
                            network.proxies[k].set_passage(Passage::Open);
                            network.came_back();
                            cut_at += FLAP_EVERY;
                        }
                    });
                }
            }
            LinkProfile::Partition => {
                let cut: Vec<usize> = (0..n.div_ceil(10)).collect();
                let network = self.clone();
                tokio::spawn(async move {
                    network.partition(&cut, true);
                    tokio::time::sleep(PARTITION_CUT).await;
                    network.partition(&cut, false);
                    network.came_back();
                });
            }
            LinkProfile::Clean | LinkProfile::Satellite | LinkProfile::Narrowband => {}
        }
    }

    /// Cuts the parties of `side` off from every other party (both ways),
    /// or joins them again.
    fn partition(&self, side: &[usize], cut: bool) {
        let inside: HashSet<IpAddr> = side.iter().map(|k| self.sources[*k]).collect();
        let outside: HashSet<IpAddr> = self.sources.iter().filter(|s| !inside.contains(s)).copied().collect();
        for (k, proxy) in self.proxies.iter().enumerate() {
            let cut_off = match (cut, side.contains(&k)) {
                (false, _) => HashSet::new(),
                (true, true) => outside.clone(),
                (true, false) => inside.clone(),
            };
            proxy.cut_off(cut_off);
        }
    }

    fn came_back(&self) {
        *self.returned.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// When a link last came back, if one did and no link is to be cut
    /// any more (a flapping network still flapping has no last return yet).
    pub fn last_return(&self) -> Option<Instant> {
        let calm = self.calm_from.lock().unwrap_or_else(|e| e.into_inner());
        if calm.is_none_or(|at| at > Instant::now()) {
            return None;
        }
        *self.returned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every byte the proxies forwarded, both ways.
    pub fn bytes(&self) -> u64 {
        self.proxies.iter().map(Proxy::bytes_forwarded).sum()
    }
}

/// What delivery achieved, read from every party's log.
#[derive(Debug, Default, serde::Serialize)]
pub struct Delivery {
    /// Messages × recipients sent.
    pub owed: u64,
    /// Of those, how many the sender logged a receipt for.
    pub receipted: u64,
    /// Messages a recipient logged more than once (it must be 0).
    pub duplicates: u64,
    /// The median and 99th-percentile time from sending to the receipt
    /// being logged, in ms (both in the sender's log, on its clock).
    pub median_ms: i64,
    /// See `median_ms`.
    pub p99_ms: i64,
}

/// Reads every log of `configs` (nodes stopped) for [`Delivery`].
pub fn delivery(configs: &[Config]) -> anyhow::Result<Delivery> {
    let mut figures = Delivery::default();
    let mut times = Vec::new();
    for c in configs {
        let reader = hotline::log::LogReader::open(&c.data)?;
        let (mut sent, mut receipts) = (HashMap::new(), Vec::new());
        let mut received: HashMap<String, u64> = HashMap::new();
        reader.each_entry(|_, e| {
            let Ok(entry) = LogEntry::decode(&e.data[..]) else {
                return;
            };
            let at = entry
                .logged_at
                .as_ref()
                .and_then(hotline::clock::from_proto)
                .map_or(0, hotline::clock::to_ms);
            match entry.body {
                Some(log_entry::Body::Sent(s)) => {
                    if let Some(m) = s.meta {
                        figures.owed += s.to.len() as u64;
                        sent.insert(m.id, at);
                    }
                }
                Some(log_entry::Body::Received(r)) => match r.meta {
                    Some(m) if m.kind == "receipt" => receipts.push((m.id, at)),
                    Some(m) => *received.entry(m.id).or_default() += 1,
                    None => {}
                },
                _ => {}
            }
        })?;
        for (id, at) in receipts {
            if let Some(sent_at) = sent.get(&id) {
                figures.receipted += 1;
                times.push(at - sent_at);
            }
        }
        figures.duplicates += received.values().filter(|n| **n > 1).count() as u64;
    }
    times.sort_unstable();
    let at = |q: f64| {
        times
            .get(((q * times.len() as f64) as usize).min(times.len().saturating_sub(1)))
            .copied()
    };
    figures.median_ms = at(0.5).unwrap_or(0);
    figures.p99_ms = at(0.99).unwrap_or(0);
    Ok(figures)
}
