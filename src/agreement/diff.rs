//! What changes from one version of the agreement to the next, in words, so
//! that an operator approves a proposal knowing exactly what it does:
//! parties added and removed, endpoints, TLS identities, keys (added,
//! ended, revoked), observers, the quorum, the title and every norm.

use super::norms::Norms;
use super::schema::{Agreement, Party};
use crate::clock;
use crate::keys::TrustedKey;

/// Every difference between `old` and `new`, one line each: `+` added,
/// `-` removed, `~` changed.
pub fn diff(old: &Agreement, new: &Agreement) -> Vec<String> {
    let mut out = Vec::new();
    if old.title != new.title {
        out.push(format!("~ title: {:?} -> {:?}", old.title, new.title));
    }
    if old.quorum != new.quorum {
        out.push(format!("~ quorum: {} -> {}", old.quorum, new.quorum));
    }
    for p in &new.parties {
        match old.party(&p.id) {
            None => out.push(format!(
                "+ party {} ({}) at {} with key {}",
                p.id,
                p.name,
                p.endpoint,
                keys(&p.keys)
            )),
            Some(was) => party_changes(was, p, &mut out),
        }
    }
    for p in old.parties.iter().filter(|p| new.party(&p.id).is_none()) {
        out.push(format!("- party {} ({})", p.id, p.name));
    }
    for o in &new.observers {
        match old.observers.iter().find(|w| w.id == o.id) {
            None => out.push(format!(
                "+ observer {} ({}): reads the public tier of every log",
                o.id, o.name
            )),
            Some(w) if w != o => out.push(format!("~ observer {} name or TLS CA changed", o.id)),
            Some(_) => {}
        }
    }
    for o in old
        .observers
        .iter()
        .filter(|o| !new.observers.iter().any(|n| n.id == o.id))
    {
        out.push(format!("- observer {} ({})", o.id, o.name));
    }
    norm_changes(&old.norms, &new.norms, &mut out);
    out
}

fn keys(keys: &[TrustedKey]) -> String {
    keys.iter().map(key).collect::<Vec<_>>().join(", ")
}

fn key(k: &TrustedKey) -> String {
    let mut s = k.key.key_id();
    if let Some(from) = k.valid_from {
        s += &format!(" from {}", clock::rfc3339(from));
    }
    if let Some(until) = k.valid_until {
        s += &format!(" until {}", clock::rfc3339(until));
    }
    if let Some(revoked) = k.revoked {
        s += &format!(" REVOKED from {}", clock::rfc3339(revoked));
    }
    s
}

fn party_changes(was: &Party, now: &Party, out: &mut Vec<String>) {
    let id = &now.id;
    if was.name != now.name {
        out.push(format!("~ party {id} name: {:?} -> {:?}", was.name, now.name));
    }
    if was.endpoints != now.endpoints {
        out.push(format!(
            "~ party {id} endpoint: {} -> {}",
            was.endpoints.join(" "),
            now.endpoints.join(" ")
        ));
    }
    if was.tls != now.tls {
        out.push(format!("~ party {id} TLS identity (tls_ca or tls_cert_sha256) changed"));
    }
    for k in &now.keys {
        match was.keys.iter().find(|w| w.key == k.key) {
            None => out.push(format!("+ party {id} key {}", key(k))),
            Some(w) if key(w) != key(k) => out.push(format!("~ party {id} key {} -> {}", key(w), key(k))),
            Some(_) => {}
        }
    }
    for k in &now.encryption_keys {
        match was.encryption_keys.iter().find(|w| w.key == k.key) {
            None => out.push(format!("+ party {id} encryption key {}", k.key.encode())),
            Some(w) if w != k => out.push(format!(
                "~ party {id} encryption key {} window or revocation",
                k.key.encode()
            )),
            Some(_) => {}
        }
    }
    for w in was
        .encryption_keys
        .iter()
        .filter(|w| !now.encryption_keys.iter().any(|k| k.key == w.key))
    {
        out.push(format!("- party {id} encryption key {}", w.key.encode()));
    }
    for w in was.keys.iter().filter(|w| !now.keys.iter().any(|k| k.key == w.key)) {
        out.push(format!("- party {id} key {}", w.key.key_id()));
    }
}

fn norm_changes(old: &Norms, new: &Norms, out: &mut Vec<String>) {
    let d = |x| clock::format_duration(x);
    let durations = [
        ("receipt_within", old.receipt_within, new.receipt_within),
        (
            "respond_within.critical",
            old.respond_within_critical,
            new.respond_within_critical,
        ),
        ("respond_within.high", old.respond_within_high, new.respond_within_high),
        (
            "respond_within.medium",
            old.respond_within_medium,
            new.respond_within_medium,
        ),
        ("respond_within.low", old.respond_within_low, new.respond_within_low),
        ("comm_check_every", old.comm_check_every, new.comm_check_every),
        (
            "comm_check_answer_within",
            old.comm_check_answer_within,
            new.comm_check_answer_within,
        ),
        ("clock_skew", old.clock_skew, new.clock_skew),
    ];
    for (name, a, b) in durations {
        if a != b {
            out.push(format!("~ norms.{name}: {} -> {}", d(a), d(b)));
        }
    }
    if old.acknowledge_within != new.acknowledge_within {
        let show = |a: Option<[std::time::Duration; 4]>| match a {
            None => "none".to_owned(),
            Some(by) => by.map(d).join(" / "),
        };
        out.push(format!(
            "~ norms.acknowledge_within (critical / high / medium / low): {} -> {}",
            show(old.acknowledge_within),
            show(new.acknowledge_within)
        ));
    }
    let optional = [
        ("link_down_alert", old.link_down_alert, new.link_down_alert),
        ("relay_after", old.relay_after, new.relay_after),
    ];
    for (name, a, b) in optional {
        if a != b {
            let show = |x: Option<std::time::Duration>| x.map_or("none".to_owned(), d);
            out.push(format!("~ norms.{name}: {} -> {}", show(a), show(b)));
        }
    }
    if old.relays != new.relays {
        out.push(format!(
            "~ norms.relays: [{}] -> [{}]",
            old.relays.join(", "),
            new.relays.join(", ")
        ));
    }
    if old.max_notice_bytes != new.max_notice_bytes {
        out.push(format!(
            "~ norms.max_notice_bytes: {} -> {}",
            old.max_notice_bytes, new.max_notice_bytes
        ));
    }
}
