//! Agreement texts as the parties review them: the `[norms]` tables hotline
//! ships (the brief's, the demo's, the load runs'), version 1 from the
//! parties' `[[party]]` entries, and the version after one with parties
//! added or removed, keys rotated or revoked, or a new quorum.

use crate::agreement::SignedAgreement;

/// A `[norms]` table: the receipt clock, the acknowledgement and response
/// clocks by severity (critical, high, medium, low), how often communication
/// checks run and how long one has for its answer; the notice size and
/// clock skew are the brief's.
macro_rules! norms {
    ($receipt:literal, [$ac:literal, $ah:literal, $am:literal, $al:literal],
     [$rc:literal, $rh:literal, $rm:literal, $rl:literal], $every:literal, $answer:literal) => {
        concat!(
            "[norms]\nreceipt_within = \"",
            $receipt,
            "\"\n",
            "acknowledge_within = { critical = \"",
            $ac,
            "\", high = \"",
            $ah,
            "\", medium = \"",
            $am,
            "\", low = \"",
            $al,
            "\" }\n",
            "respond_within = { critical = \"",
            $rc,
            "\", high = \"",
            $rh,
            "\", medium = \"",
            $rm,
            "\", low = \"",
            $rl,
            "\" }\n",
            "comm_check_every = \"",
            $every,
            "\"\ncomm_check_answer_within = \"",
            $answer,
            "\"\n",
            "max_notice_bytes = 1048576\nclock_skew = \"5m\"\n"
        )
    };
}

/// The brief's norms, for a real hotline.
pub const DEFAULT_NORMS: &str = norms!(
    "5m",
    ["15m", "1h", "4h", "24h"],
    ["1h", "4h", "24h", "72h"],
    "24h",
    "15m"
);

/// Norms compressed to seconds, so the demo (and tests) see deadlines pass:
/// a HIGH notice must be acknowledged within 2 s and answered within 3 s.
pub const DEMO_NORMS: &str = norms!("5s", ["1s", "2s", "1h", "1h"], ["2s", "3s", "1h", "1h"], "1h", "5s");

/// Norms whose clocks outlast any load run (benchmarks, drills): no deadline fires.
pub const LOAD_NORMS: &str = norms!(
    "1h",
    ["24h", "24h", "24h", "24h"],
    ["24h", "24h", "24h", "24h"],
    "24h",
    "1h"
);

/// Agreement text from a norms table and the parties' `[[party]]` entries:
/// version 1, or the version after `follows`, naming it by its text's hash.
pub fn agreement_text(follows: Option<&SignedAgreement>, title: &str, norms: &str, entries: &[String]) -> String {
    let head = match follows {
        None => "version = 1".to_owned(),
        Some(prev) => format!(
            "version = {}\nprevious = \"{}\"",
            prev.agreement.version + 1,
            hex::encode(prev.text_sha256())
        ),
    };
    let mut text = format!("# hotline agreement\n{head}\ntitle = \"{title}\"\n\n{norms}\n");
    for e in entries {
        text += e;
        text += "\n";
    }
    text
}

/// What an amendment changes, for [`amended_text`].
#[derive(Clone, Debug, Default)]
pub struct Changes {
    /// `[[party]]` tables to add, as `hotline init` writes them in `party.toml`.
    pub add: Vec<String>,
    /// Parties to remove, by id.
    pub remove: Vec<String>,
    /// A new quorum.
    pub quorum: Option<usize>,
    /// Key rotations: the party, its new verifier key, when the new key is
    /// valid from and when the keys it replaces end (the overlap between).
    pub rotate: Vec<(String, String, time::OffsetDateTime, time::OffsetDateTime)>,
    /// Keys revoked (by key id, `name+hexkeyhash`) from an instant on.
    pub revoke: Vec<(String, time::OffsetDateTime)>,
}

/// The text of the version after `prev` with `changes` made: numbered and
/// chained to it; everything else is `prev`'s text unchanged, so the
/// parties review exactly what changed.
pub fn amended_text(prev: &SignedAgreement, changes: &Changes) -> String {
    let text = prev.text();
    let (head, parties) = text.split_once("\n[[party]]\n").unwrap_or((text, ""));
    let mut out = String::new();
    for line in head.lines() {
        if line.starts_with("previous =") || (changes.quorum.is_some() && line.starts_with("quorum =")) {
            continue;
        }
        if line.starts_with("version =") {
            out += &format!(
                "version = {}\nprevious = \"{}\"\n",
                prev.agreement.version + 1,
                hex::encode(prev.text_sha256())
            );
            if let Some(q) = changes.quorum {
                out += &format!("quorum = {q}\n");
            }
            continue;
        }
        out += line;
        out += "\n";
    }
    let blocks = format!("[[party]]\n{parties}");
    for block in blocks.split("[[party]]\n").filter(|b| !b.trim().is_empty()) {
        let id = block
            .lines()
            .find_map(|l| l.strip_prefix("id = "))
            .unwrap_or("")
            .trim_matches('"')
            .to_owned();
        if changes.remove.contains(&id) {
            continue;
        }
        out += "\n[[party]]\n";
        out += &amend_keys(block.trim_end_matches('\n'), &id, changes);
        out += "\n";
    }
    for entry in &changes.add {
        out += "\n";
        out += entry.trim_end_matches('\n');
        out += "\n";
    }
    out
}

/// A party's table with the key rotations and revocations of `changes` made.
fn amend_keys(block: &str, party: &str, changes: &Changes) -> String {
    let rfc = crate::clock::rfc3339;
    let rotation = changes.rotate.iter().find(|r| r.0 == party);
    let mut parts: Vec<String> = block.split("[[party.key]]\n").map(str::to_owned).collect();
    for key in parts.iter_mut().skip(1) {
        let vkey = key
            .lines()
            .find_map(|l| l.strip_prefix("vkey = "))
            .unwrap_or("")
            .trim_matches('"')
            .to_owned();
        let mut extra = String::new();
        if let Some((_, _, _, until)) = rotation
            && !key.contains("valid_until =")
        {
            extra += &format!("valid_until = {}\n", rfc(*until));
        }
        if let Some((_, at)) = changes
            .revoke
            .iter()
            .find(|(id, _)| vkey.starts_with(&format!("{id}+")))
        {
            extra += &format!("revoked = {}\n", rfc(*at));
        }
        if !key.ends_with('\n') {
            key.push('\n');
        }
        key.push_str(&extra);
    }
    let mut out = parts.join("[[party.key]]\n");
    if let Some((_, vkey, from, _)) = rotation {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out += &format!("[[party.key]]\nvkey = \"{vkey}\"\nvalid_from = {}\n", rfc(*from));
    }
    out.trim_end_matches('\n').to_owned()
}
