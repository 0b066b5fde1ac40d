//! What the operator's read calls show, each read in a fixed number of
//! queries whatever the log holds: the latest notices with who receipted
//! them and how many answers they have, a notice's whole thread, and the
//! figures of `Status`. The handlers only turn these into replies.

use crate::db::Connection;
use crate::message::Kind;
use crate::opener::Opener;
use crate::proto::{NormEvent, NoticeSummary, NoticeThread};

use super::{Running, StoredMessage, message_fields, message_from, row_to_message};

/// The latest `limit` notices, newest first, each with the parties that
/// receipted it and its number of responses: one query.
pub fn notice_summaries(c: &Connection, limit: u32, opener: &Opener) -> crate::db::Result<Vec<NoticeSummary>> {
    const SQL: &str = concat!(
        "SELECT ",
        message_fields!(),
        ", (SELECT COUNT(*) FROM messages x WHERE x.thread = m.id AND x.kind = 'response'), r.party ",
        message_from!(),
        " LEFT JOIN receipts r ON r.message_id = m.id \
         WHERE m.id IN (SELECT id FROM messages WHERE kind = 'notice' ORDER BY created_ms DESC, id DESC LIMIT ?1) \
         ORDER BY m.created_ms DESC, m.id DESC, r.log_index"
    );
    let mut rows: Vec<(StoredMessage, i64, Option<String>)> = c
        .prepare_cached(SQL)?
        .query_map([limit], |r| Ok((row_to_message(r)?, r.get(11)?, r.get(12)?)))?
        .collect::<crate::db::Result<_>>()?;
    let mut out: Vec<NoticeSummary> = Vec::new();
    let mut last_id = String::new();
    for (m, responses, party) in rows.drain(..) {
        if m.id != last_id {
            last_id = m.id.clone();
            out.push(NoticeSummary {
                notice: m.notice(opener),
                direction: m.direction.as_str().to_owned(),
                receipted_by: Vec::new(),
                responses: responses as u32,
            });
        }
        if let (Some(party), Some(summary)) = (party, out.last_mut()) {
            summary.receipted_by.push(party);
        }
    }
    Ok(out)
}

/// Who wrote each message of a thread: (party, author as the message says).
pub type Authors = Vec<(String, String)>;

/// The thread of notice `id` (the notice, its responses, every receipt of
/// them, its norm events), with the (party, author) of each message for
/// naming people; none if there is no such notice.
pub fn notice_thread(c: &Connection, id: &str, opener: &Opener) -> crate::db::Result<Option<(Authors, NoticeThread)>> {
    let Some(notice) = super::message(c, id)?.filter(|m| m.kind == Kind::Notice) else {
        return Ok(None);
    };
    let responses: Vec<StoredMessage> = super::thread(c, id)?
        .into_iter()
        .filter(|m| m.kind == Kind::Response)
        .collect();
    let mut receipts: Vec<_> = super::receipts(c, id)?.into_iter().map(|(_, e)| e).collect();
    for m in &responses {
        receipts.extend(super::receipts(c, &m.id)?.into_iter().map(|(_, e)| e));
    }
    // Our operators read the thread opened: each sealed message's body, with the
    // signatures over its sealed form (the log keeps it sealed). Each is opened
    // once; the author is read from those that open.
    let mut authors = Vec::new();
    let mut thread = std::iter::once(notice)
        .chain(responses)
        .map(|m| match opener.open(&m.envelope) {
            Ok(env) => {
                authors.extend(m.author_in(&env).map(|a| (m.sender.clone(), a)));
                env
            }
            Err(_) => m.envelope,
        });
    let notice = thread.next();
    let responses = thread.collect();
    Ok(Some((
        authors,
        NoticeThread {
            notice,
            receipts,
            responses,
            norm_events: super::norm_events(c, Some(id), 100)?,
            people: Vec::new(),
            links: Vec::new(),
        },
    )))
}

/// What `Status` shows from the database, bounded whatever peers send.
#[derive(Debug, Default)]
pub struct StatusFigures {
    /// Deliveries queued per peer.
    pub outbox: Vec<(String, u64)>,
    /// Each peer's last successful communication check, ms.
    pub comm_checks: Vec<(String, i64)>,
    /// The soonest running clocks.
    pub deadlines: Vec<Running>,
    /// How many clocks run.
    pub running: u64,
    /// The latest norm events.
    pub events: Vec<NormEvent>,
    /// Per peer asked: the size witnessed last, and its latest human check round trips.
    pub peers: Vec<(u64, Vec<u64>)>,
    /// Met and missed clocks per party and kind.
    pub compliance: Vec<(String, crate::proto::Deadline, u64, u64)>,
    /// Proposals pending after the version in force.
    pub amendments_pending: usize,
}

/// The figures of `Status` for `peers`, with `deadlines` soonest clocks and
/// proposals counted after version `adopted`.
pub fn status_figures(
    c: &Connection,
    peers: &[String],
    deadlines: u32,
    adopted: u64,
) -> crate::db::Result<StatusFigures> {
    Ok(StatusFigures {
        outbox: super::outbox_counts(c)?,
        comm_checks: super::comm_checks(c)?,
        deadlines: super::running_deadlines(c, i64::MAX, deadlines)?,
        running: super::running_deadline_count(c)?,
        events: super::norm_events(c, None, 20)?,
        peers: {
            let mut human = super::human_checks_by_party(c, 5)?;
            peers
                .iter()
                .map(|p| {
                    let witnessed = super::last_witnessed(c, p)?.map_or(0, |(size, _)| size);
                    Ok((witnessed, human.remove(p).unwrap_or_default()))
                })
                .collect::<crate::db::Result<_>>()?
        },
        compliance: super::compliance(c)?,
        amendments_pending: super::pending_count(c, adopted)?,
    })
}
