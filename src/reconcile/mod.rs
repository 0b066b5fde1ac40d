//! One account from many logs: a neutral auditor reads the public exports
//! of several parties' logs, verifies each as `audit verify` does, and then
//! checks every fact that links them: each message sent is logged received
//! under the same commitment, each receipt is proven in its signer's log,
//! each checkpoint a party witnessed of another is consistent with that
//! party's export, the deadlines each side logged as missed agree, and the
//! agreement versions adopted form one chain. Every
//! contradiction is a [`Finding`] naming the party at fault and the signed
//! statements that cannot both be true. It reads commitments only, never a
//! message's text, so it runs on the public tier.
//!
//! `facts.rs` gathers what each export says; this module links them.

mod chain;
mod clocks;
mod facts;
pub mod fetch;
mod finding;
pub mod report;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use tlog_tiles::Hash;

use crate::agreement::SignedAgreement;
pub use facts::Facts;
pub use finding::{Compliance, Finding, Kind, Pair, ReconcileError, Reconciliation};

/// Reconciles the exports in `dirs` under `agreement`, the version the
/// auditor trusts, and the later versions the exports adopted (each export
/// verified first, `progress` called per export read).
pub fn reconcile(
    dirs: &[PathBuf],
    agreement: SignedAgreement,
    mut progress: impl FnMut(&Path),
) -> Result<Reconciliation, ReconcileError> {
    let mut logs: BTreeMap<String, Facts> = BTreeMap::new();
    let mut paths: HashMap<String, PathBuf> = HashMap::new();
    let mut chain = chain::Chain::new(agreement);
    let mut notes = facts::Notes::new();
    // A party that joined by amendment is known once an export read before
    // it adopted a version naming it.
    let mut pending: Vec<&PathBuf> = dirs.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut later = Vec::new();
        for dir in pending {
            if chain.party_by_origin(&Facts::origin(dir)).is_none() {
                later.push(dir);
                continue;
            }
            progress(dir);
            let facts = Facts::read(dir, &chain, &mut notes)?;
            chain.extend(&facts.notes);
            if let Some(first) = paths.insert(facts.party.clone(), dir.clone()) {
                return Err(ReconcileError::Twice(first, dir.clone(), facts.party));
            }
            logs.insert(facts.party.clone(), facts);
        }
        if later.len() == before {
            let dir = later[0];
            return Err(ReconcileError::UnknownOrigin {
                path: dir.clone(),
                origin: Facts::origin(dir),
            });
        }
        pending = later;
    }
    let mut out = Reconciliation {
        logs: logs
            .iter()
            .map(|(p, f)| (p.clone(), (f.size, hex::encode(f.root.0))))
            .collect(),
        ..Default::default()
    };
    for f in logs.values_mut() {
        f.settle(&chain, &mut notes);
        out.receipts += f.receipts.len() as u64;
        out.findings.append(&mut f.bad);
    }
    messages(&logs, &mut out);
    checkpoints(&logs, &mut out);
    clocks::clocks(&logs, &mut out);
    agreements(&logs, &mut out);
    // Grouped by kind, each pair's indexes kept pointing at its findings.
    let mut order: Vec<usize> = (0..out.findings.len()).collect();
    order.sort_by(|a, b| {
        (out.findings[*a].kind, &out.findings[*a].party).cmp(&(out.findings[*b].kind, &out.findings[*b].party))
    });
    let mut moved = vec![0; order.len()];
    for (new, old) in order.iter().enumerate() {
        moved[*old] = new;
    }
    let mut findings: Vec<Option<Finding>> = out.findings.drain(..).map(Some).collect();
    out.findings = order.iter().filter_map(|i| findings[*i].take()).collect();
    for pair in &mut out.pairs {
        for i in &mut pair.findings {
            *i = moved[*i];
        }
    }
    Ok(out)
}

/// Each message sent to a party we hold the log of, as that party logged it.
fn messages(logs: &BTreeMap<String, Facts>, out: &mut Reconciliation) {
    let mut pairs: BTreeMap<(String, String), Pair> = BTreeMap::new();
    for (sender, s) in logs {
        for m in &s.sent {
            for to in m.to.iter().filter(|t| logs.contains_key(*t)) {
                let r = &logs[to];
                out.messages += 1;
                let pair = pairs.entry((sender.clone(), to.clone())).or_insert_with(|| Pair {
                    from: sender.clone(),
                    to: to.clone(),
                    ..Pair::default()
                });
                pair.sent += 1;
                pair.receipted += s.receipts.contains_key(&(to.clone(), m.id.clone())) as u64;
                if m.kind == "notice" {
                    pair.notices += 1;
                    pair.answered += r.answered.contains(&m.id) as u64;
                }
                let findings = out.findings.len();
                match r.received.get(&(sender.clone(), m.id.clone())) {
                    Some(got) if got.commitment == m.commitment => {
                        out.delivered += 1;
                        pair.received += 1;
                    }
                    Some(got) => out.findings.push(Finding {
                        kind: Kind::OtherCommitment,
                        party: to.clone(),
                        message_id: m.id.clone(),
                        says: format!(
                            "{to} logged at its index {} another envelope under id {} than {sender} logged as sent at its index {}",
                            got.index, m.id, m.index
                        ),
                        evidence: vec![
                            (format!("{sender}'s commitment"), hex::encode(&m.commitment)),
                            (format!("{to}'s commitment"), hex::encode(&got.commitment)),
                        ],
                    }),
                    None => match s.receipts.get(&(to.clone(), m.id.clone())) {
                        Some(receipt) => denied(to, r, m, receipt, out),
                        None => out.undelivered += 1,
                    },
                }
                pair.findings.extend(findings..out.findings.len());
            }
        }
        // What a party logged as received from this sender, that the sender never logged as sent.
        for (receiver, r) in logs.iter().filter(|(p, _)| *p != sender) {
            // Only once the sender's export reaches every checkpoint of it the
            // receiver holds (a delivery carries one covering the message).
            let reached = r.held.get(sender).into_iter().flatten().all(|h| h.size <= s.size);
            for ((from, id), got) in &r.received {
                if from == sender && !s.sent_ids.contains(id) && !reached {
                    out.beyond += 1;
                } else if from == sender && !s.sent_ids.contains(id) {
                    out.findings.push(Finding {
                        kind: Kind::NotSent,
                        party: sender.clone(),
                        message_id: id.clone(),
                        says: format!(
                            "{receiver} logged at its index {} a message {id} received from {sender}, which {sender}'s export of size {} does not hold as sent",
                            got.index, s.size
                        ),
                        evidence: vec![(format!("{receiver}'s commitment"), hex::encode(&got.commitment))],
                    });
                    let pair = pairs.entry((sender.clone(), receiver.clone())).or_insert_with(|| Pair {
                        from: sender.clone(),
                        to: receiver.clone(),
                        ..Pair::default()
                    });
                    pair.findings.push(out.findings.len() - 1);
                }
            }
        }
    }
    out.pairs = pairs.into_values().collect();
}

/// A message its recipient's export lacks though the sender holds its
/// receipt: denied if the recipient's export holds another leaf at the
/// index its signed receipt names.
fn denied(to: &str, r: &Facts, m: &facts::Sent, receipt: &facts::HeldReceipt, out: &mut Reconciliation) {
    match r.leaves.get(receipt.index as usize) {
        None => out.beyond += 1,
        Some(leaf) if *leaf == receipt.leaf => out.delivered += 1,
        Some(leaf) => out.findings.push(Finding {
            kind: Kind::Denied,
            party: to.to_owned(),
            message_id: m.id.clone(),
            says: format!(
                "{to}'s log at size {} holds no entry received for {}, but {to}'s receipt for it, signed, names its index {} under its checkpoint of size {}, and its export holds a different leaf there",
                r.size, m.id, receipt.index, receipt.size
            ),
            evidence: vec![
                (
                    format!("{to}'s signed receipt: the SHA-256 of its envelope, in the sender's export as envelope/<it>"),
                    receipt.envelope.clone(),
                ),
                (format!("{to}'s checkpoint in it"), receipt.checkpoint.to_string()),
                (format!("{to}'s checkpoint of its export"), r.note.clone()),
                (format!("{to}'s leaf at {} in its export", receipt.index), hex::encode(leaf.0)),
            ],
        }),
    }
}

/// Every checkpoint of a party that another holds (witnessed, or in a
/// receipt), against that party's export. A rewritten history disagrees
/// with every checkpoint signed after the rewritten entry: one finding per
/// party, proven by the first, counting the rest.
fn checkpoints(logs: &BTreeMap<String, Facts>, out: &mut Reconciliation) {
    for (party, p) in logs {
        let mut held: Vec<(&str, &facts::Held)> = logs
            .iter()
            .flat_map(|(w, f)| f.held.get(party).into_iter().flatten().map(move |h| (w.as_str(), h)))
            .collect();
        held.sort_by_key(|(w, h)| (h.size, *w));
        held.dedup_by_key(|(w, h)| (h.size, h.root, *w));
        let roots = roots_at(&p.leaves, held.iter().map(|(_, h)| h.size));
        let mut forks = Vec::new();
        for ((witness, h), root) in held.into_iter().zip(roots) {
            out.checkpoints += 1;
            match root {
                Some(root) if root == h.root => {}
                Some(root) => forks.push((witness, h, root)),
                None => out.beyond += 1,
            }
        }
        let Some((witness, h, root)) = forks.first() else {
            continue;
        };
        let more = match forks.len() - 1 {
            0 => String::new(),
            n => format!("; {n} later checkpoint(s) of {party} that other parties hold disagree with it too"),
        };
        out.findings.push(Finding {
            kind: Kind::Fork,
            party: party.clone(),
            message_id: String::new(),
            says: format!(
                "{party} signed a checkpoint of size {} with root {}, which {witness} holds, but its export's tree at that size has root {}{more}",
                h.size,
                hex::encode(h.root.0),
                hex::encode(root.0)
            ),
            evidence: vec![
                (format!("{party}'s checkpoint held by {witness}"), h.note.to_string()),
                (format!("{party}'s checkpoint of its export"), p.note.clone()),
            ],
        });
    }
}

/// The tree root after each of `sizes` (ascending) leaves; none past the end.
fn roots_at(leaves: &[Hash], sizes: impl Iterator<Item = u64>) -> Vec<Option<Hash>> {
    let mut tree = crate::log::tree::Frontier::default();
    sizes
        .map(|size| {
            while tree.size() < size {
                let leaf = leaves.get(tree.size() as usize)?;
                tree.push_leaf(*leaf);
            }
            Some(tree.root())
        })
        .collect()
}

/// The versions of the agreement each party adopted, as one chain.
fn agreements(logs: &BTreeMap<String, Facts>, out: &mut Reconciliation) {
    let mut first: BTreeMap<u64, (&str, &[u8; 32])> = BTreeMap::new();
    for (party, f) in logs {
        for (version, sha) in &f.adopted {
            match first.get(version) {
                Some((other, theirs)) if *theirs != sha => out.findings.push(Finding {
                    kind: Kind::AgreementFork,
                    party: party.clone(),
                    message_id: String::new(),
                    says: format!("{party} and {other} adopted different texts as version {version} of the agreement"),
                    evidence: vec![
                        (format!("{other}'s text hash"), hex::encode(theirs)),
                        (format!("{party}'s text hash"), hex::encode(sha)),
                    ],
                }),
                Some(_) => {}
                None => {
                    first.insert(*version, (party, sha));
                }
            }
        }
    }
}
