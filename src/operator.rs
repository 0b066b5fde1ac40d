//! The `hotline.v1.Operator` service: what duty officers call through the
//! CLI. Handlers check the operator role, then hand over to the node.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::clock;
use crate::gate::{Gate, Reader};
use crate::node::{Actor, Answer, Node, NodeError};
use crate::proto::operator_server::Operator;
use crate::proto::{
    AmendmentStepResponse, ApproveAmendmentRequest, ClockFigures, CommCheckRequest, CommCheckResponse, Event,
    GetNoticeRequest, GetRosterRequest, GetRosterResponse, ListAmendmentsRequest, ListAmendmentsResponse,
    ListNoticesRequest, ListNoticesResponse, NoticeThread, PeerStatus, PendingAmendment, ProposeAmendmentRequest,
    PublishRosterRequest, PublishRosterResponse, RejectAmendmentRequest, Rejection, RespondRequest, RespondResponse,
    ResponseStatus, RunningDeadline, SendNoticeOutcome, SendNoticeRequest, SendNoticeResponse, StatusRequest,
    StatusResponse, WatchEventsRequest, send_notice_outcome,
};
use crate::state;
use crate::tls::Role;

/// The most running deadlines `Status` lists (the soonest due); it counts them all.
const STATUS_DEADLINES: u32 = 100;

/// Serves local operators.
pub struct OperatorService {
    gate: Gate,
    node: Arc<Node>,
}

impl OperatorService {
    /// Serves `node` to the operators (and, for reads, auditors) `gate` knows.
    pub fn new(gate: Gate, node: Arc<Node>) -> Self {
        Self { gate, node }
    }

    /// An operator certificate that may act: its name in hotline.toml (what
    /// its limits count by) and the roster contact who acts with it.
    /// Also returns the certificate's SHA-256, which a stream checks again for each message.
    fn operator<T>(&self, req: &Request<T>) -> Result<(String, String, [u8; 32]), Status> {
        self.node.started()?;
        let (name, fingerprint) = self.gate.local(req, &[Role::Operator])?;
        let contact = self.node.acting_contact(&name, &fingerprint)?;
        Ok((name, contact, fingerprint))
    }

    /// An operator call that writes: counted against the operator's limits;
    /// returns the roster contact who acts, also recorded on the call's span.
    fn writer<T>(&self, req: &Request<T>) -> Result<(String, crate::limits::Admitted), Status> {
        let (name, contact, _) = self.operator(req)?;
        tracing::Span::current().record("operator", contact.as_str());
        let admitted = self.gate.admit_local(&name)?;
        Ok((contact, admitted))
    }

    /// A read-only call: operators and auditors, counted against the same limits as writes.
    fn reader<T>(&self, req: &Request<T>) -> Result<(Reader, crate::limits::Admitted), Status> {
        self.node.started()?;
        self.gate.local_reader(req)
    }
}

/// Signs, logs and queues one notice for `who`.
async fn send_one(node: &Node, who: &str, req: SendNoticeRequest) -> Result<SendNoticeResponse, Status> {
    let notice = req
        .notice
        .ok_or_else(|| Status::invalid_argument("field notice is required"))?;
    let sent = node.send_notice(notice, Actor::Operator(who)).await?;
    Ok(SendNoticeResponse {
        id: sent.id,
        log_index: sent.log_index,
    })
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

/// How many notices of one `SendNotices` stream are signed and logged at
/// once; the stream reads no further until the oldest is answered.
const STREAM_IN_FLIGHT: usize = 256;

#[tonic::async_trait]
impl Operator for OperatorService {
    #[tracing::instrument(name = "Operator.SendNotice", skip_all, fields(operator))]
    async fn send_notice(&self, req: Request<SendNoticeRequest>) -> Result<Response<SendNoticeResponse>, Status> {
        let (who, _admitted) = self.writer(&req)?;
        Ok(Response::new(send_one(&self.node, &who, req.into_inner()).await?))
    }

    type SendNoticesStream = Pin<Box<dyn Stream<Item = Result<SendNoticeOutcome, Status>> + Send>>;

    #[tracing::instrument(name = "Operator.SendNotices", skip_all, fields(operator))]
    async fn send_notices(
        &self,
        req: Request<Streaming<SendNoticeRequest>>,
    ) -> Result<Response<Self::SendNoticesStream>, Status> {
        let (name, who, fingerprint) = self.operator(&req)?;
        tracing::Span::current().record("operator", who.as_str());
        let mut incoming = req.into_inner();
        // Each notice runs as its own task; the handles queue in arrival
        // order, so outcomes leave in that order whichever finishes first.
        let (pending_tx, mut pending) = mpsc::channel(STREAM_IN_FLIGHT);
        let (out_tx, out) = mpsc::channel(STREAM_IN_FLIGHT);
        let (node, gate) = (self.node.clone(), self.gate.clone());
        self.node.tasks().spawn(
            async move {
                loop {
                    let next = match incoming.message().await {
                        Ok(Some(r)) => {
                            let (node, gate, name) = (node.clone(), gate.clone(), name.clone());
                            // Boxed, so that tokio does not copy the kilobytes of its state.
                            Ok(tokio::spawn(
                                Box::pin(async move {
                                    let _admitted = gate.admit_local(&name)?;
                                    // Who acts is asked again for each message, of the roster
                                    // in force as it is taken: a roster that removed this
                                    // operator since the stream opened refuses the rest.
                                    let who = node.acting_contact(&name, &fingerprint)?;
                                    send_one(&node, &who, r).await
                                })
                                .in_current_span(),
                            ))
                        }
                        Ok(None) => break,
                        Err(status) => Err(status),
                    };
                    let failed = next.is_err();
                    if pending_tx.send(next).await.is_err() || failed {
                        break;
                    }
                }
            }
            .in_current_span(),
        );
        self.node.tasks().spawn(async move {
            while let Some(next) = pending.recv().await {
                let item = match next {
                    Ok(task) => Ok(SendNoticeOutcome {
                        result: Some(match task.await {
                            Ok(Ok(sent)) => send_notice_outcome::Result::Sent(sent),
                            Ok(Err(status)) => send_notice_outcome::Result::Refused(status.into()),
                            Err(e) => send_notice_outcome::Result::Refused(
                                crate::status::internal(&format!("send task failed: {e}")).into(),
                            ),
                        }),
                    }),
                    Err(status) => Err(status),
                };
                // A caller that hung up gets nothing more; what it sent is still sent.
                if out_tx.send(item).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    #[tracing::instrument(name = "Operator.Respond", skip_all, fields(operator))]
    async fn respond(&self, req: Request<RespondRequest>) -> Result<Response<RespondResponse>, Status> {
        let (who, _admitted) = self.writer(&req)?;
        let r = req.into_inner();
        let status = ResponseStatus::try_from(r.status)
            .ok()
            .filter(|s| *s != ResponseStatus::Unspecified)
            .ok_or_else(|| Status::invalid_argument(format!("field status: {} is not a response status", r.status)))?;
        let notice_id = self.node.message_id(&r.notice_id).await?;
        let sent = self
            .node
            .respond(
                &notice_id,
                Answer {
                    status,
                    reason: r.reason(),
                    text: &r.text,
                    promised_by: r.promised_by.as_ref().and_then(clock::from_proto),
                },
                Actor::Operator(&who),
            )
            .await?;
        Ok(Response::new(RespondResponse {
            id: sent.id,
            log_index: sent.log_index,
        }))
    }

    #[tracing::instrument(name = "Operator.ListNotices", skip_all)]
    async fn list_notices(&self, req: Request<ListNoticesRequest>) -> Result<Response<ListNoticesResponse>, Status> {
        let (reader, _admitted) = self.reader(&req)?;
        let limit = match req.into_inner().limit {
            0 => 100,
            n => n.min(10_000),
        };
        let mut notices = self
            .node
            .query({
                let opener = self.node.opener().clone();
                move |c| state::views::notice_summaries(c, limit, &opener)
            })
            .await?;
        // A notice above the reader's clearance is listed by what its log entry says of it.
        for s in &mut notices {
            if let Some(n) = s.notice.as_mut().filter(|n| !reader.may_read(n.tlp())) {
                *n = crate::message::meta::redacted(n);
            }
        }
        Ok(Response::new(ListNoticesResponse { notices }))
    }

    #[tracing::instrument(name = "Operator.GetNotice", skip_all)]
    async fn get_notice(&self, req: Request<GetNoticeRequest>) -> Result<Response<NoticeThread>, Status> {
        let (reader, _admitted) = self.reader(&req)?;
        let id = self.node.message_id(&req.into_inner().id).await?;
        let asked = id.clone();
        let opener = self.node.opener().clone();
        let thread = self
            .node
            .query(move |c| state::views::notice_thread(c, &asked, &opener))
            .await?;
        let (authors, thread) = thread.ok_or_else(|| Status::not_found(format!("no notice with id {id}")))?;
        let notice = thread
            .notice
            .as_ref()
            .and_then(|env| crate::message::decode_notice(&env.payload).ok());
        let label = notice.as_ref().map_or(crate::proto::Tlp::Red, |n| n.tlp());
        reader.require(label, &format!("notice {id}"))?;
        let people = self.node.people(authors.iter().map(|(p, n)| (p.as_str(), n.as_str())));
        let links = notice
            .filter(|n| n.from == self.node.party())
            .map(|n| n.to)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| Some(self.node.links().get(p)?.to_proto(p, false)))
            .collect();
        Ok(Response::new(NoticeThread {
            people,
            links,
            ..thread
        }))
    }

    type WatchEventsStream = EventStream;

    #[tracing::instrument(name = "Operator.WatchEvents", skip_all)]
    async fn watch_events(&self, req: Request<WatchEventsRequest>) -> Result<Response<EventStream>, Status> {
        let (reader, _admitted) = self.reader(&req)?;
        // A reader below RED sees notices up to its clearance; responses (labelled by the
        // notice they answer, not looked up here) only at RED.
        let stream = BroadcastStream::new(self.node.subscribe()).filter_map(move |item| match item {
            Ok(event) if readable_event(&event, &reader) => Some(Ok(event)),
            _ => None,
        });
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(name = "Operator.Status", skip_all)]
    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let _admitted = self.reader(&req)?;
        let node = &self.node;
        // Bounded whatever the peers send: counts, and the soonest deadlines only.
        let in_force = node.in_force();
        let others: Vec<_> = in_force
            .agreement()
            .parties
            .iter()
            .filter(|p| p.id != node.party())
            .collect();
        let ids: Vec<String> = others.iter().map(|p| p.id.clone()).collect();
        let version = in_force.version();
        let figures = node
            .query(move |c| state::views::status_figures(c, &ids, STATUS_DEADLINES, version))
            .await?;
        let state::views::StatusFigures {
            outbox,
            comm_checks: checks,
            deadlines,
            running,
            events,
            peers: witnessed,
            compliance,
            amendments_pending,
        } = figures;
        // Each figure by party first: with 192 peers, finding each peer's in
        // every list cost more than the queries.
        let outbox: HashMap<String, u64> = outbox.into_iter().collect();
        let checks: HashMap<String, i64> = checks.into_iter().collect();
        let mut clocks: HashMap<String, Vec<ClockFigures>> = HashMap::new();
        for (party, deadline, met, missed) in compliance {
            clocks.entry(party).or_default().push(ClockFigures {
                deadline: deadline as i32,
                met,
                missed,
            });
        }
        let peers = others
            .iter()
            .zip(witnessed)
            .map(|(p, (witnessed_size, human_check_ms))| {
                let clocks = clocks.remove(&p.id).unwrap_or_default();
                PeerStatus {
                    human_check_ms,
                    party: p.id.clone(),
                    endpoint: p.endpoint.clone(),
                    outbox: outbox.get(&p.id).copied().unwrap_or(0),
                    last_comm_check_ok: checks.get(&p.id).and_then(|ms| clock::ms_to_proto(*ms)),
                    witnessed_size,
                    roster_version: node.rosters().version(&p.id),
                    link: node.links().get(&p.id).map(|l| l.to_proto(&p.id, false)),
                    agreement_version: node.agreements().version_of(&p.id),
                    deadlines_met: clocks.iter().map(|c| c.met).sum(),
                    deadlines_missed: clocks.iter().map(|c| c.missed).sum(),
                    clocks,
                }
            })
            .collect();
        Ok(Response::new(StatusResponse {
            roster_version: node.rosters().version(node.party()),
            agreement_version: in_force.version(),
            amendments_pending: amendments_pending as u64,
            party: node.party().to_owned(),
            log_size: node.log().head().size,
            deadlines_running: running,
            peers,
            deadlines: deadlines
                .into_iter()
                .map(|d| RunningDeadline {
                    party: d.party,
                    message_id: d.message_id,
                    deadline: d.kind as i32,
                    due_at: clock::ms_to_proto(d.due_ms),
                })
                .collect(),
            recent_norm_events: events,
        }))
    }

    #[tracing::instrument(name = "Operator.CommCheck", skip_all)]
    async fn comm_check(&self, req: Request<CommCheckRequest>) -> Result<Response<CommCheckResponse>, Status> {
        let (who, _admitted) = self.writer(&req)?;
        let r = req.into_inner();
        let party = r.party;
        let notice_ids = self
            .node
            .comm_check(
                (!party.is_empty()).then_some(party.as_str()),
                r.human,
                Actor::Operator(&who),
            )
            .await?;
        Ok(Response::new(CommCheckResponse { notice_ids }))
    }

    #[tracing::instrument(name = "Operator.ProposeAmendment", skip_all, fields(operator))]
    async fn propose_amendment(
        &self,
        req: Request<ProposeAmendmentRequest>,
    ) -> Result<Response<AmendmentStepResponse>, Status> {
        let (who, _admitted) = self.writer(&req)?;
        let r = req.into_inner();
        let sent = self
            .node
            .propose(&r.signed_note, &r.reason, Actor::Operator(&who))
            .await?;
        Ok(Response::new(self.step(sent)))
    }

    #[tracing::instrument(name = "Operator.ApproveAmendment", skip_all, fields(operator))]
    async fn approve_amendment(
        &self,
        req: Request<ApproveAmendmentRequest>,
    ) -> Result<Response<AmendmentStepResponse>, Status> {
        let (who, _admitted) = self.writer(&req)?;
        let r = req.into_inner();
        let extra = (!r.signatures.is_empty()).then_some(r.signatures.as_slice());
        let sent = self
            .node
            .approve(r.version, &r.text_sha256, extra, Actor::Operator(&who))
            .await?;
        Ok(Response::new(self.step(sent)))
    }

    #[tracing::instrument(name = "Operator.RejectAmendment", skip_all, fields(operator))]
    async fn reject_amendment(
        &self,
        req: Request<RejectAmendmentRequest>,
    ) -> Result<Response<AmendmentStepResponse>, Status> {
        let (who, _admitted) = self.writer(&req)?;
        let r = req.into_inner();
        let sent = self
            .node
            .reject(r.version, &r.text_sha256, &r.reason, Actor::Operator(&who))
            .await?;
        Ok(Response::new(self.step(sent)))
    }

    #[tracing::instrument(name = "Operator.ListAmendments", skip_all)]
    async fn list_amendments(
        &self,
        req: Request<ListAmendmentsRequest>,
    ) -> Result<Response<ListAmendmentsResponse>, Status> {
        let (reader, _admitted) = self.reader(&req)?;
        // Pending texts are among the parties: GREEN, as their log entries say.
        reader.require(crate::proto::Tlp::Green, "a pending amendment")?;
        let in_force = self.node.in_force();
        let pending = self
            .node
            .pending()
            .await?
            .into_iter()
            .map(|p| PendingAmendment {
                version: p.proposal.version,
                text_sha256: p.proposal.sha256,
                signed_note: p.proposal.note,
                proposed_by: p.proposal.proposed_by,
                proposed_at: clock::ms_to_proto(p.proposal.proposed_ms),
                approved_by: p.approved_by,
                needs: p.needs,
                rejections: p
                    .rejections
                    .into_iter()
                    .map(|(party, reason)| Rejection { party, reason })
                    .collect(),
            })
            .collect();
        Ok(Response::new(ListAmendmentsResponse {
            version: in_force.version(),
            text_sha256: in_force.text_sha256.to_vec(),
            signed_note: in_force.signed.to_bytes(),
            pending,
        }))
    }

    #[tracing::instrument(name = "Operator.PublishRoster", skip_all, fields(operator))]
    async fn publish_roster(
        &self,
        req: Request<PublishRosterRequest>,
    ) -> Result<Response<PublishRosterResponse>, Status> {
        // The roster's signature by our identity key is the authority here, not the roster in force:
        // a certificate no contact names yet may publish the roster that names it.
        let (name, fingerprint) = self.gate.local(&req, &[Role::Operator])?;
        let _admitted = self.gate.admit_local(&name)?;
        let who = self.node.acting_contact(&name, &fingerprint).unwrap_or(name);
        tracing::Span::current().record("operator", who.as_str());
        let (sent, version) = self
            .node
            .publish_roster(&req.into_inner().signed_roster, Actor::Operator(&who))
            .await?;
        Ok(Response::new(PublishRosterResponse {
            id: sent.id,
            log_index: sent.log_index,
            version,
        }))
    }

    #[tracing::instrument(name = "Operator.GetRoster", skip_all)]
    async fn get_roster(&self, req: Request<GetRosterRequest>) -> Result<Response<GetRosterResponse>, Status> {
        let (reader, _admitted) = self.reader(&req)?;
        // A roster names people and their numbers: AMBER, as its log entry says.
        reader.require(crate::proto::Tlp::Amber, "a roster")?;
        let party = match req.into_inner().party {
            p if p.is_empty() => self.node.party().to_owned(),
            p => p,
        };
        let held = self.node.rosters().get(&party).ok_or(NodeError::NoRoster(party))?;
        Ok(Response::new(GetRosterResponse {
            signed_roster: held.signed.to_bytes(),
            log_index: held.log_index,
        }))
    }
}

/// Whether `reader` may see `event` as it stands.
fn readable_event(event: &Event, reader: &Reader) -> bool {
    use crate::proto::event::Body;
    match &event.body {
        Some(Body::NoticeReceived(n)) => reader.may_read(n.tlp()),
        Some(Body::ResponseReceived(_)) => reader.may_read(crate::proto::Tlp::Red),
        _ => true,
    }
}

impl OperatorService {
    /// The answer to an amendment step: the message, and the version in force after it.
    fn step(&self, sent: crate::node::Sent) -> AmendmentStepResponse {
        AmendmentStepResponse {
            id: sent.id,
            log_index: sent.log_index,
            version_in_force: self.node.in_force().version(),
        }
    }
}
