//! Every version of a party's roster this node logged, ours and peers'.

use crate::db::{Connection, params};

use crate::log::StateError;

/// A roster version as logged: the signed note, verified before it was kept.
#[derive(Clone, Debug)]
pub struct KeptRoster {
    /// The party it is for.
    pub party: String,
    /// Its version.
    pub version: u64,
    /// The signed note, byte for byte. Not stored: the `rosters` table holds
    /// its place, and the note is read from the logged envelope, which is
    /// sealed (rows written before rosters were sealed hold it in clear).
    pub note: Vec<u8>,
    /// The log entry that recorded it.
    pub log_index: u64,
}

/// Keeps a roster version, in the transaction that logs it, with no note
/// (people's names stay in the sealed envelope at `log_index`); a version
/// kept already (two updates raced) stays as first kept.
pub fn insert_roster(c: &Connection, r: &KeptRoster, log_index: u64) -> Result<(), StateError> {
    c.prepare_cached(
        "INSERT INTO rosters (party, version, note, log_index) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
    )?
    .execute(params![r.party, r.version as i64, Vec::<u8>::new(), log_index as i64])?;
    Ok(())
}

/// The newest roster of every party.
pub fn latest_rosters(c: &Connection) -> Result<Vec<KeptRoster>, StateError> {
    let mut stmt = c.prepare_cached(
        "SELECT party, version, note, log_index FROM rosters r \
         WHERE version = (SELECT MAX(version) FROM rosters WHERE party = r.party)",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(KeptRoster {
            party: r.get(0)?,
            version: r.get::<i64>(1)? as u64,
            note: r.get(2)?,
            log_index: r.get::<i64>(3)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
