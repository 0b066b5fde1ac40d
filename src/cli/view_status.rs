//! How `hotline status` shows a node's state: its peers with their clocks
//! met and missed and their human check times, the running deadlines and
//! the recent norm events, as JSON and as a table.

use hotline::proto::StatusResponse;
use serde_json::{Value, json};

use super::view::{link_json, link_words, norm_json, norm_lines, short, term, ts};

/// `status`: peers, running deadlines and recent norm events.
pub fn status(s: &StatusResponse) -> (Value, String) {
    let peers: Vec<Value> = s
        .peers
        .iter()
        .map(|p| {
            json!({"party": p.party, "endpoint": p.endpoint, "outbox": p.outbox,
                        "last_comm_check_ok": ts(&p.last_comm_check_ok), "witnessed_size": p.witnessed_size,
                        "agreement_version": p.agreement_version, "roster_version": p.roster_version,
                        "deadlines_met": p.deadlines_met,
                        "deadlines_missed": p.deadlines_missed, "human_check_ms": p.human_check_ms,
                        "link": p.link.as_ref().map(link_json),
                        "clocks": p.clocks.iter().map(|c| json!({"deadline": short(c.deadline().as_str_name(), "DEADLINE_"),
                            "met": c.met, "missed": c.missed})).collect::<Vec<_>>()})
        })
        .collect();
    let deadlines: Vec<Value> = s
        .deadlines
        .iter()
        .map(|d| {
            json!({"party": d.party, "message_id": d.message_id,
                        "deadline": short(d.deadline().as_str_name(), "DEADLINE_"), "due_at": ts(&d.due_at)})
        })
        .collect();
    let value = json!({"party": s.party, "log_size": s.log_size, "agreement_version": s.agreement_version,
                "roster_version": s.roster_version,
                "amendments_pending": s.amendments_pending, "peers": peers, "deadlines": deadlines,
                "deadlines_running": s.deadlines_running,
                "recent_norm_events": s.recent_norm_events.iter().map(norm_json).collect::<Vec<_>>()});
    let human = {
        let mut t = format!(
            "party {}   log size {}   agreement version {} ({} amendment(s) pending)   roster version {}\n\npeers\n",
            s.party, s.log_size, s.agreement_version, s.amendments_pending, s.roster_version
        );
        t += &format!(
            "  {:<8} {:<28} {:<5} {:>7} {:<30} {:>9} {:>9} {:>6} {:>6} {:>6}\n",
            "PARTY",
            "ENDPOINT",
            "LINK",
            "OUTBOX",
            "LAST COMM CHECK OK",
            "WITNESSED",
            "AGREEMENT",
            "ROSTER",
            "MET",
            "MISSED"
        );
        for p in &s.peers {
            let agreement = match p.agreement_version {
                0 => "-".to_owned(),
                v => format!("v{v}"),
            };
            let roster = match p.roster_version {
                0 => "-".to_owned(),
                v => format!("v{v}"),
            };
            let link = match &p.link {
                None => "-",
                Some(l) if l.reachable => "up",
                Some(_) => "DOWN",
            };
            t += &format!(
                "  {:<8} {:<28} {:<5} {:>7} {:<30} {:>9} {:>9} {:>6} {:>6} {:>6}\n",
                term(&p.party),
                term(&p.endpoint),
                link,
                p.outbox,
                ts(&p.last_comm_check_ok),
                p.witnessed_size,
                agreement,
                roster,
                p.deadlines_met,
                p.deadlines_missed
            );
        }
        if !s.peers.is_empty() {
            t += "  (LINK: whether our last call reached the peer, - before the first; MET and MISSED: the clocks each peer owed, exercise traffic left out)\n";
            for l in s.peers.iter().filter_map(|p| p.link.as_ref()).filter(|l| !l.reachable) {
                t += &format!("  {}\n", link_words(l));
            }
            for p in s.peers.iter().filter(|p| !p.clocks.is_empty()) {
                let by_kind: Vec<String> = p
                    .clocks
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {}/{}",
                            short(c.deadline().as_str_name(), "DEADLINE_"),
                            c.met,
                            c.missed
                        )
                    })
                    .collect();
                t += &format!("  {:<8} met/missed: {}\n", term(&p.party), by_kind.join(", "));
            }
            for p in s.peers.iter().filter(|p| !p.human_check_ms.is_empty()) {
                let times: Vec<String> = p
                    .human_check_ms
                    .iter()
                    .map(|ms| hotline::clock::format_duration(std::time::Duration::from_millis(*ms)))
                    .collect();
                t += &format!(
                    "  {:<8} human check answers, newest first: {}\n",
                    term(&p.party),
                    times.join(", ")
                );
            }
        }
        t += &format!("\nrunning deadlines: {}", s.deadlines_running);
        if (s.deadlines.len() as u64) < s.deadlines_running {
            t += &format!(", the {} due soonest", s.deadlines.len());
        }
        t += "\n";
        for d in &s.deadlines {
            t += &format!(
                "  {:<8} owes {:<18} for {} by {}\n",
                term(&d.party),
                short(d.deadline().as_str_name(), "DEADLINE_"),
                term(&d.message_id),
                ts(&d.due_at)
            );
        }
        t += "\nrecent norm events\n";
        t += &norm_lines(&s.recent_norm_events);
        t
    };
    (value, human)
}
