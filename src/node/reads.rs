//! What the node reads from its store, and where: synchronous reads for
//! work already off the async workers, reads on the blocking pool for call
//! handlers and background tasks, and the figures a metrics scrape takes.

use super::{Node, NodeError};
use crate::log::LogError;
use crate::state;

impl Node {
    /// Runs `f` on a read connection, on the calling thread; a database
    /// error is an internal one. For synchronous work already off the async
    /// workers (checks on the CPU pool, startup) and tests; async code uses
    /// [`Node::query`].
    pub fn read<T>(&self, f: impl FnOnce(&crate::db::Connection) -> crate::db::Result<T>) -> Result<T, NodeError> {
        Ok(self
            .log
            .reader()
            .read(|c| f(c).map_err(|e| LogError::Refused(e.into())))?)
    }

    /// Runs `f` on a read connection on the blocking pool, off the async
    /// workers: what a call handler reads goes through here.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::db::Connection) -> crate::db::Result<T> + Send + 'static,
    ) -> Result<T, NodeError> {
        let log = self.log.clone();
        let read = move || log.reader().read(|c| f(c).map_err(|e| LogError::Refused(e.into())));
        Ok(crate::db::on_blocking_pool(read)
            .await
            .map_err(|e| NodeError::Internal(format!("a read task failed: {e}")))??)
    }

    /// The message with this id, sent or received, if we hold it.
    pub(crate) async fn message(&self, id: &str) -> Result<Option<state::StoredMessage>, NodeError> {
        let id = id.to_owned();
        self.query(move |c| state::message(c, &id)).await
    }

    /// The notice with this id, sent or received, if we hold it.
    pub(crate) async fn held_notice(&self, id: &str) -> Result<Option<crate::proto::Notice>, NodeError> {
        if id.is_empty() {
            return Ok(None);
        }
        Ok(self.message(id).await?.and_then(|m| m.notice(self.opener())))
    }

    /// The figures a metrics scrape reads from the database: every peer's
    /// outbox and every kind of clock, zero included, so none goes stale.
    pub fn figures(&self) -> Result<crate::metrics::Figures, NodeError> {
        let (outbox, running, compliance) = self.read(|c| {
            Ok((
                state::outbox_counts(c)?,
                state::running_by_kind(c)?,
                state::compliance(c)?,
            ))
        })?;
        let in_force = self.in_force();
        let peers = in_force
            .agreement()
            .parties
            .iter()
            .filter(|p| p.id != self.party)
            .map(|p| {
                let n = outbox.iter().find(|(party, _)| *party == p.id).map_or(0, |(_, n)| *n);
                (p.id.clone(), n)
            });
        let kinds = || (1..).map_while(|k| crate::proto::Deadline::try_from(k).ok());
        Ok(crate::metrics::Figures {
            outbox: peers.collect(),
            running: kinds()
                .map(|k| (k, running.iter().find(|(kind, _)| *kind == k).map_or(0, |(_, n)| *n)))
                .collect(),
            missed: kinds()
                .map(|k| (k, compliance.iter().filter(|c| c.1 == k).map(|c| c.3).sum()))
                .collect(),
            log_size: self.log.head().size,
        })
    }
}

impl Node {
    /// The message an operator means by `typed`: its id, or the start of
    /// exactly one message's id (at least 4 hex digits and hyphens), as git
    /// takes a commit's. Several matches are refused with the ids; none leaves
    /// `typed` as it is, for the caller's own "not found".
    pub async fn message_id(&self, typed: &str) -> Result<String, NodeError> {
        const SHOWN: usize = 5;
        if typed.len() < 4 || !typed.chars().all(|ch| ch.is_ascii_hexdigit() || ch == '-') {
            return Ok(typed.to_owned());
        }
        let prefix = typed.to_owned();
        let ids = self
            .query(move |c| match state::message(c, &prefix)? {
                Some(_) => Ok(vec![prefix]),
                None => state::message_ids_starting(c, &prefix, SHOWN + 1),
            })
            .await?;
        match ids.len() {
            0 => Ok(typed.to_owned()),
            1 => Ok(ids.into_iter().next().unwrap_or_default()),
            _ => Err(NodeError::AmbiguousId {
                prefix: typed.to_owned(),
                ids: ids.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ")
                    + if ids.len() > SHOWN { ", …" } else { "" },
            }),
        }
    }
}
