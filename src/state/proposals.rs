//! Versions of the agreement proposed over the hotline, with every
//! signature gathered so far, and the parties that rejected them.

use crate::db::{Connection, OptionalExtension, params};

use crate::log::StateError;

/// A version of the agreement proposed over the hotline, with every
/// signature gathered so far.
#[derive(Clone, Debug)]
pub struct Proposal {
    /// The SHA-256 of its text.
    pub sha256: Vec<u8>,
    /// Its version number.
    pub version: u64,
    /// The signed note with every signature gathered.
    pub note: Vec<u8>,
    /// The party that proposed it (the first we heard it from).
    pub proposed_by: String,
    /// When we first heard of it, ms since the epoch.
    pub proposed_ms: i64,
}

/// What an amendment message adds to a proposal.
#[derive(Clone, Debug)]
pub enum AmendmentStep {
    /// Signatures, already checked, to add to the proposal (kept if new).
    Signatures(Proposal),
    /// A party's rejection of the proposal with this text hash, and why.
    Rejection {
        /// The SHA-256 of the proposed text.
        sha256: Vec<u8>,
        /// The party that rejects it.
        party: String,
        /// Why.
        reason: String,
    },
}

/// Records an amendment step: a new proposal is kept, a known one gains the
/// signatures it lacked, a rejection is noted.
pub fn record_amendment(c: &Connection, step: &AmendmentStep) -> Result<(), StateError> {
    match step {
        AmendmentStep::Rejection { sha256, party, reason } => reject_proposal(c, sha256, party, reason),
        AmendmentStep::Signatures(p) => {
            let Some(held) = proposal(c, &p.sha256)? else {
                return save_proposal(c, p);
            };
            let merged = crate::note::SignedNote::parse(&held.note)
                .and_then(|held| held.union(&crate::note::SignedNote::parse(&p.note)?, |_| true))
                .map_err(|e| StateError::Invalid(format!("proposal {}: {e}", hex::encode(&p.sha256))))?;
            save_proposal(
                c,
                &Proposal {
                    note: merged.to_bytes(),
                    ..held
                },
            )
        }
    }
}

/// Keeps a proposal, or replaces its note with one holding more signatures.
fn save_proposal(c: &Connection, p: &Proposal) -> Result<(), StateError> {
    c.prepare_cached(
        "INSERT INTO proposals (sha256, version, note, proposed_by, proposed_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (sha256) DO UPDATE SET note = excluded.note",
    )?
    .execute(params![
        p.sha256,
        p.version as i64,
        p.note,
        p.proposed_by,
        p.proposed_ms
    ])?;
    Ok(())
}

/// Proposals of versions after `adopted`, oldest first: what is pending.
pub fn proposals_after(c: &Connection, adopted: u64) -> crate::db::Result<Vec<Proposal>> {
    c.prepare_cached(
        "SELECT sha256, version, note, proposed_by, proposed_ms FROM proposals WHERE version > ?1 ORDER BY version, proposed_ms",
    )?
    .query_map([adopted as i64], row_to_proposal)?
    .collect()
}

/// How many proposals of versions after `adopted` are pending.
pub fn pending_count(c: &Connection, adopted: u64) -> crate::db::Result<usize> {
    c.prepare_cached("SELECT COUNT(*) FROM proposals WHERE version > ?1")?
        .query_row([adopted as i64], |r| r.get::<i64>(0).map(|n| n as usize))
}

/// How many different proposals a node keeps pending from one proposing
/// party: a peer cannot fill the store with texts nobody will sign, and one
/// party's proposals never crowd out another's (the amendment that removes
/// a party that floods must still get through).
pub const MAX_PENDING_PER_PARTY: usize = 8;

/// How many of the proposals pending after version `adopted` `party` proposed.
pub fn pending_count_by(c: &Connection, adopted: u64, party: &str) -> crate::db::Result<usize> {
    c.prepare_cached("SELECT COUNT(*) FROM proposals WHERE version > ?1 AND proposed_by = ?2")?
        .query_row(crate::db::params![adopted as i64, party], |r| {
            r.get::<i64>(0).map(|n| n as usize)
        })
}

/// The proposal whose text has SHA-256 `sha256`, if we hold it.
pub fn proposal(c: &Connection, sha256: &[u8]) -> crate::db::Result<Option<Proposal>> {
    c.prepare_cached("SELECT sha256, version, note, proposed_by, proposed_ms FROM proposals WHERE sha256 = ?1")?
        .query_row([sha256], row_to_proposal)
        .optional()
}

fn row_to_proposal(r: &crate::db::Row<'_>) -> crate::db::Result<Proposal> {
    Ok(Proposal {
        sha256: r.get(0)?,
        version: r.get::<i64>(1)? as u64,
        note: r.get(2)?,
        proposed_by: r.get(3)?,
        proposed_ms: r.get(4)?,
    })
}

/// Records that `party` rejected a proposal, and why.
fn reject_proposal(c: &Connection, sha256: &[u8], party: &str, reason: &str) -> Result<(), StateError> {
    c.prepare_cached(
        "INSERT INTO rejections (sha256, party, reason) VALUES (?1, ?2, ?3)
         ON CONFLICT (sha256, party) DO UPDATE SET reason = excluded.reason",
    )?
    .execute(params![sha256, party, reason])?;
    Ok(())
}

/// The proposals pending after `adopted`, each with who rejected it and why.
pub fn pending_with_rejections(c: &Connection, adopted: u64) -> crate::db::Result<Vec<(Proposal, Rejections)>> {
    proposals_after(c, adopted)?
        .into_iter()
        .map(|p| {
            let rejected = rejections(c, &p.sha256)?;
            Ok((p, rejected))
        })
        .collect()
}

/// Who rejected a proposal (a party), and why.
pub type Rejections = Vec<(String, String)>;

/// Who rejected a proposal, and why.
pub fn rejections(c: &Connection, sha256: &[u8]) -> crate::db::Result<Rejections> {
    c.prepare_cached("SELECT party, reason FROM rejections WHERE sha256 = ?1 ORDER BY party")?
        .query_map([sha256], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}
