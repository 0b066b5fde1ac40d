//! Caps on each caller's calls in flight, counted before a body is read, and
//! the one place a refused call is logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::Status;

use super::rate::Limits;
use crate::repeats::Repeats;

/// Caps the calls each caller has in flight, counted when a call's headers
/// arrive and before its body is read or decoded: a peer that opens dozens of
/// large calls at once gets `RESOURCE_EXHAUSTED` for those over its share
/// while the bytes of the refused ones stay on the wire, held back by HTTP/2
/// flow control. A tower layer on the whole server.
#[derive(Clone)]
pub struct CallLimitLayer {
    identifier: Arc<crate::tls::Identifier>,
    limits: Limits,
    per_peer: usize,
    per_local: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
    refusals: Arc<Repeats>,
    metrics: Arc<crate::metrics::Metrics>,
    call_timeout: Duration,
}

/// The calls that carry envelopes from a peer: given the time their bytes
/// take over the slowest link a delivery is made for (the server's own
/// timeout, set from the largest batch), where every other call has
/// `call_timeout`.
const DELIVERIES: [&str; 2] = ["/hotline.v1.Federation/DeliverBatch", "/hotline.v1.Federation/Deliver"];

impl CallLimitLayer {
    /// At most `per_peer` calls in flight from each peer node, `per_local`
    /// from each local operator or auditor; a caller whose rate in `limits`
    /// is spent is refused at once. Refusals are counted in `metrics` by code.
    /// Each call but a delivery is cancelled if its answer has not started
    /// within `call_timeout`.
    pub fn new(
        identifier: Arc<crate::tls::Identifier>,
        limits: Limits,
        (per_peer, per_local): (usize, usize),
        metrics: Arc<crate::metrics::Metrics>,
        call_timeout: Duration,
    ) -> Self {
        Self {
            identifier,
            limits,
            per_peer,
            per_local,
            open: Arc::default(),
            refusals: Arc::new(Repeats::new(Duration::from_secs(60))),
            metrics,
            call_timeout,
        }
    }

    /// Takes a slot for the caller of `extensions`, or says why not. The
    /// caller, once identified, is kept in the extensions, so the service
    /// does not identify it again (`gate::Gate::caller`). A caller with no
    /// certificate we know is left to the services to refuse.
    fn enter(&self, extensions: &mut http::Extensions) -> Result<Option<CallSlot>, Status> {
        use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
        let Some(certs) = extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|info| info.peer_certs())
        else {
            return Ok(None);
        };
        let Some(identified) = self.identifier.identify(&certs) else {
            return Ok(None);
        };
        extensions.insert(identified.clone());
        // The same names the services count the rate under.
        let (caller, rate_key, cap) = match identified {
            crate::tls::Caller::Party(p) => (format!("party {p}"), p, self.per_peer),
            crate::tls::Caller::Local { name, .. } => {
                (format!("local {name}"), format!("operator {name}"), self.per_local)
            }
            crate::tls::Caller::Observer(o) => (format!("observer {o}"), format!("observer {o}"), self.per_local),
            crate::tls::Caller::PartyNonNode(_) => return Ok(None),
        };
        if let Some(refusal) = self.limits.spent(&rate_key) {
            return Err(refusal);
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(caller.clone()).or_insert(0);
        if *n >= cap {
            return Err(Status::resource_exhausted(format!(
                "{caller} has {cap} calls in flight, the limit; retry when some complete"
            )));
        }
        *n += 1;
        Ok(Some(CallSlot {
            caller,
            open: self.open.clone(),
        }))
    }
}

/// A call in flight; its slot is freed when the call's response is ready.
struct CallSlot {
    caller: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

impl<S> tower::Layer<S> for CallLimitLayer {
    type Service = CallLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLimit {
            inner,
            limits: self.clone(),
        }
    }
}

/// The service [`CallLimitLayer`] wraps around the server's routes.
#[derive(Clone)]
pub struct CallLimit<S> {
    inner: S,
    limits: CallLimitLayer,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for CallLimit<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let entered = self.limits.enter(req.extensions_mut());
        let refused = Refused {
            caller: req.extensions().get::<crate::tls::Caller>().cloned(),
            method: req.uri().path().to_owned(),
            repeats: self.limits.refusals.clone(),
            metrics: self.limits.metrics.clone(),
        };
        match entered {
            Err(status) => {
                refused.log(&status);
                Box::pin(async move {
                    tokio::time::sleep(OVER_LIMIT_DELAY).await;
                    Ok(status.into_http())
                })
            }
            Ok(slot) => {
                let timeout = (!DELIVERIES.contains(&refused.method.as_str())).then_some(self.limits.call_timeout);
                let call = self.inner.call(req);
                Box::pin(async move {
                    let mut response = match timeout {
                        None => call.await,
                        Some(limit) => match tokio::time::timeout(limit, call).await {
                            Ok(response) => response,
                            Err(_) => Ok(Status::cancelled(format!(
                                "the answer did not start within the call timeout ({})",
                                crate::clock::format_duration(limit)
                            ))
                            .into_http()),
                        },
                    };
                    if let Ok(r) = response.as_mut() {
                        undecodable_is_invalid_argument(r.headers_mut());
                        let failed = r.headers().get("grpc-status").is_some_and(|v| v != "0");
                        if let Some(status) = failed.then(|| Status::from_header_map(r.headers())).flatten() {
                            refused.log(&status);
                            if status.code() == tonic::Code::ResourceExhausted {
                                // Still holding its slot, so that the caller's next calls wait too.
                                tokio::time::sleep(OVER_LIMIT_DELAY).await;
                            }
                        }
                    }
                    drop(slot);
                    response
                })
            }
        }
    }
}

/// How long a call refused for a limit waits before its refusal is sent. A
/// caller over its limits that retries at once would otherwise turn each
/// refusal into another request sent, read and discarded, thousands a
/// second; held back, its refusals come no faster than its calls in flight
/// allow. A caller within its limits never waits.
pub const OVER_LIMIT_DELAY: Duration = Duration::from_millis(100);

/// Who made a call and which, for the one line a refused call logs.
struct Refused {
    caller: Option<crate::tls::Caller>,
    method: String,
    repeats: Arc<Repeats>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Refused {
    /// Logs a refused call once: a caller's mistake or a limit at WARN, a
    /// failure of ours at ERROR (those `status::internal` answered are logged
    /// there, with their cause). The same refusal of the same caller repeated
    /// gives one line a minute, with how many were held back.
    fn log(&self, status: &Status) {
        self.metrics.refused(status.code());
        // tonic answers INTERNAL when a caller hangs up before its request's
        // message arrived, or in the middle of it (a peer's timeout under
        // load): the caller's doing, not ours.
        let hung_up = matches!(
            status.message(),
            "Missing request message." | "Unexpected EOF decoding stream."
        );
        let ours = status.code() == tonic::Code::Internal && !hung_up;
        if ours && status.message().starts_with("internal error ") {
            return;
        }
        let caller = match &self.caller {
            Some(crate::tls::Caller::Party(p)) => format!("party {p}"),
            Some(crate::tls::Caller::PartyNonNode(p)) => format!("a certificate of {p} that is not its node's"),
            Some(crate::tls::Caller::Local { name, .. }) => format!("local {name}"),
            Some(crate::tls::Caller::Observer(o)) => format!("observer {o}"),
            None => "an unidentified caller".into(),
        };
        let key = format!("{caller} {} {:?} {}", self.method, status.code(), status.message());
        let Some(held_back) = self.repeats.check(&key, Instant::now()) else {
            return;
        };
        let (method, code, message) = (&self.method, status.code(), status.message());
        if ours {
            tracing::error!(caller, method, ?code, ?message, held_back, "call failed");
        } else {
            tracing::warn!(caller, method, ?code, ?message, held_back, "call refused");
        }
    }
}

/// A request body that is not the protobuf message a call takes, or that
/// ends in the middle of its message, is the caller's mistake: tonic
/// answers it `INTERNAL`, which says the node failed;
/// this answers `INVALID_ARGUMENT` with tonic's text, which names what did
/// not decode. Only the status of an answer that failed before any message
/// was sent (trailers-only) is in its headers, and only that is rewritten.
fn undecodable_is_invalid_argument(headers: &mut http::HeaderMap) {
    let internal = headers.get("grpc-status").is_some_and(|v| v == "13");
    let undecodable = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| {
            m.starts_with("failed%20to%20decode")
                || m.starts_with("failed to decode")
                || m.starts_with("Unexpected%20EOF")
                || m.starts_with("Unexpected EOF")
        });
    if internal && undecodable {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
}
