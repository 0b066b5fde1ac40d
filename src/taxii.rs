//! TAXII 2.1, read only, for CERT tools (OpenCTI, MISP, …) that pull the
//! notices a node may share: discovery, one API root, a collection per TLP
//! level, objects (the same STIX 2.1 objects `hotline export stix` writes)
//! and their manifest, paged by log index. Served over HTTPS on its own
//! address to the party's own certificates only: the TLS layer accepts
//! only this party's CA, and a certificate must be a local operator or
//! auditor of `hotline.toml`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::node::Node;
use crate::proto::Tlp;
use crate::stix;

/// The TAXII 2.1 media type of every answer.
pub const MEDIA_TYPE: &str = "application/taxii+json;version=2.1";

/// The STIX media type of the objects collections hold.
const STIX_MEDIA_TYPE: &str = "application/stix+json;version=2.1";

/// The most objects one page holds, whatever `limit` asks.
const MAX_PAGE: usize = 1_000;

/// How many notices a page reads from the log at most.
const NOTICES_PER_READ: u32 = 200;

/// A collection: the notices up to one TLP level.
struct Collection {
    id: &'static str,
    title: &'static str,
    most: Tlp,
}

const COLLECTIONS: [Collection; 4] = [
    Collection {
        id: "8f6b6d2c-7a4e-4f0e-9c4a-1c2a6e1d0001",
        title: "TLP:CLEAR notices",
        most: Tlp::Clear,
    },
    Collection {
        id: "8f6b6d2c-7a4e-4f0e-9c4a-1c2a6e1d0002",
        title: "TLP:CLEAR and TLP:GREEN notices",
        most: Tlp::Green,
    },
    Collection {
        id: "8f6b6d2c-7a4e-4f0e-9c4a-1c2a6e1d0003",
        title: "Notices up to TLP:AMBER",
        most: Tlp::Amber,
    },
    Collection {
        id: "8f6b6d2c-7a4e-4f0e-9c4a-1c2a6e1d0004",
        title: "Notices up to TLP:AMBER+STRICT (this organization only)",
        most: Tlp::AmberStrict,
    },
];

/// What every handler of one connection shares.
struct Ctx {
    node: Arc<Node>,
    /// The local certificate's name and clearance, or `None` for anyone else (refused).
    caller: Option<crate::gate::Reader>,
}

/// Why a request is refused: a TAXII error message with its HTTP status.
struct Refusal {
    status: StatusCode,
    title: &'static str,
    description: String,
}

fn error(status: StatusCode, title: &'static str, description: String) -> Refusal {
    Refusal {
        status,
        title,
        description,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({"title": self.title, "description": self.description,
                          "http_status": self.status.as_u16().to_string()});
        taxii(self.status, body)
    }
}

fn taxii(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, MEDIA_TYPE)], body.to_string()).into_response()
}

/// Refuses a caller that is not a local certificate, or one that accepts no TAXII 2.1.
fn admit(ctx: &Ctx, headers: &HeaderMap) -> Result<(), Refusal> {
    if ctx.caller.is_none() {
        return Err(error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "only this party's operator and auditor certificates (hotline.toml [[local]]) may read".into(),
        ));
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    if !(accept.contains("application/taxii+json") || accept.contains("*/*")) {
        return Err(error(
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable",
            format!("this server answers {MEDIA_TYPE}"),
        ));
    }
    Ok(())
}

/// Whether the caller of `ctx` is cleared for every notice collection `c` holds.
fn can_read(ctx: &Ctx, c: &Collection) -> bool {
    ctx.caller.as_ref().is_some_and(|r| r.may_read(c.most))
}

fn collection_json(c: &Collection, can_read: bool) -> Value {
    json!({"id": c.id, "title": c.title, "can_read": can_read, "can_write": false, "media_types": [STIX_MEDIA_TYPE],
           "description": "Notices this node may share, as STIX 2.1; exercises, communication checks and TLP:RED are never here."})
}

fn collection(id: &str) -> Result<&'static Collection, Refusal> {
    COLLECTIONS.iter().find(|c| c.id == id).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "Not Found",
            format!("no collection {id:?}; GET /api1/collections/ lists them"),
        )
    })
}

/// One page of a collection: its objects with the date each was added, and
/// where the next page starts.
struct Page {
    objects: Vec<(Value, String)>,
    next: Option<u64>,
}

/// Reads objects of `c` after log index `after`, added after `added_after`, at most `limit`.
fn page(
    node: &Node,
    c: &Collection,
    mut after: Option<u64>,
    added_after: Option<i64>,
    limit: usize,
) -> Result<Page, Refusal> {
    let internal = |e: crate::node::NodeError| {
        tracing::warn!(error = %e, "taxii: cannot read the notices");
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            "the node could not read its notices".into(),
        )
    };
    let agreement = node.in_force().agreement().clone();
    let mut objects: Vec<(Value, String)> = Vec::new();
    // The ids on the page so far: each object once, whatever attachments repeat.
    let mut ids = std::collections::HashSet::new();
    loop {
        let (notices, last) = node
            .read(|db| stix::shareable(db, after, NOTICES_PER_READ, c.most, node.opener()))
            .map_err(internal)?;
        let Some(last) = last else {
            return Ok(Page { objects, next: None });
        };
        for logged in notices {
            let added_ms = logged.logged_ms;
            if added_after.is_some_and(|t| added_ms <= t) {
                continue;
            }
            let added = crate::clock::ms_to_proto(added_ms)
                .as_ref()
                .and_then(crate::clock::from_proto)
                .map(stix::timestamp)
                .unwrap_or_default();
            let held = logged.held(node.party());
            let mut found = vec![stix::identity(&agreement, &logged.notice.from)];
            found.extend(stix::tlp_marking(logged.notice.tlp()));
            found.extend(stix::objects(&held));
            let mut fresh = std::collections::HashSet::new();
            found.retain(|o| {
                let id = o["id"].as_str().unwrap_or_default();
                !ids.contains(id) && fresh.insert(id.to_owned())
            });
            if !objects.is_empty() && objects.len() + found.len() > limit {
                return Ok(Page { objects, next: after });
            }
            ids.extend(fresh);
            objects.extend(found.into_iter().map(|o| (o, added.clone())));
            after = Some(logged.log_index);
        }
        after = after.max(Some(last));
    }
}

/// The paging and filters of a GET objects or manifest request.
fn query(q: &HashMap<String, String>) -> Result<(Option<u64>, Option<i64>, usize), Refusal> {
    let bad = |what: &str, v: &str| {
        error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!("{what} {v:?} is not valid"),
        )
    };
    let after = match q.get("next") {
        Some(n) => Some(n.parse::<u64>().map_err(|_| bad("next", n))?),
        None => None,
    };
    let added_after = match q.get("added_after") {
        Some(t) => Some(
            crate::clock::parse_rfc3339(t)
                .map(crate::clock::to_ms)
                .ok_or_else(|| bad("added_after", t))?,
        ),
        None => None,
    };
    let limit = match q.get("limit") {
        Some(l) => l.parse::<usize>().map_err(|_| bad("limit", l))?.clamp(1, MAX_PAGE),
        None => MAX_PAGE,
    };
    Ok((after, added_after, limit))
}

/// Keeps the objects `match[type]` and `match[id]` ask for.
fn matching(objects: Vec<(Value, String)>, q: &HashMap<String, String>) -> Vec<(Value, String)> {
    let wanted = |key: &str, value: &Value| {
        q.get(key)
            .is_none_or(|list| list.split(',').any(|w| Some(w) == value.as_str()))
    };
    objects
        .into_iter()
        .filter(|(o, _)| wanted("match[type]", &o["type"]) && wanted("match[id]", &o["id"]))
        .collect()
}

/// A page of an envelope or manifest: its `items`, whether more follow and
/// from where, and the first and last date added of `objects` in headers.
fn paged(next: Option<u64>, items: Vec<Value>, objects: &[(Value, String)]) -> Response {
    let mut body = json!({"more": next.is_some(), "objects": items});
    if let Some(next) = next {
        body["next"] = json!(next.to_string());
    }
    let mut response = taxii(StatusCode::OK, body);
    let headers = response.headers_mut();
    for (name, at) in [
        ("X-TAXII-Date-Added-First", objects.first()),
        ("X-TAXII-Date-Added-Last", objects.last()),
    ] {
        if let Some(value) = at.and_then(|(_, added)| HeaderValue::from_str(added).ok()) {
            headers.insert(name, value);
        }
    }
    response
}

async fn discovery(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    if let Err(r) = admit(&ctx, &headers) {
        return r.into_response();
    }
    taxii(
        StatusCode::OK,
        json!({"title": format!("hotline node of {}", ctx.node.party()),
               "description": "The notices this node may share, as STIX 2.1, read only.",
               "default": "/api1/", "api_roots": ["/api1/"]}),
    )
}

async fn api_root(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    if let Err(r) = admit(&ctx, &headers) {
        return r.into_response();
    }
    taxii(
        StatusCode::OK,
        json!({"title": format!("{}'s shareable notices", ctx.node.party()), "versions": [MEDIA_TYPE],
               "max_content_length": 0}),
    )
}

async fn collections(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    if let Err(r) = admit(&ctx, &headers) {
        return r.into_response();
    }
    taxii(
        StatusCode::OK,
        json!({"collections": COLLECTIONS.iter().map(|c| collection_json(c, can_read(&ctx, c))).collect::<Vec<_>>()}),
    )
}

async fn one_collection(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = admit(&ctx, &headers) {
        return r.into_response();
    }
    match collection(&id) {
        Ok(c) => taxii(StatusCode::OK, collection_json(c, can_read(&ctx, c))),
        Err(r) => r.into_response(),
    }
}

/// Reads a page of a collection for a GET objects or manifest request.
async fn read_page(
    ctx: Arc<Ctx>,
    headers: HeaderMap,
    id: String,
    q: HashMap<String, String>,
) -> Result<(Page, Vec<(Value, String)>), Refusal> {
    admit(&ctx, &headers)?;
    let c = collection(&id)?;
    if !can_read(&ctx, c) {
        let reader = ctx.caller.as_ref().map_or("", |r| r.name.as_str());
        return Err(error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{}: {reader} is not cleared for it (its max_tlp in hotline.toml)",
                c.title
            ),
        ));
    }
    let (after, added_after, limit) = query(&q)?;
    let node = ctx.node.clone();
    let read = crate::db::on_blocking_pool(move || page(&node, c, after, added_after, limit))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", e.to_string()))??;
    let objects = matching(read.objects.clone(), &q);
    Ok((read, objects))
}

async fn objects(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    page_of(ctx, headers, id, q, |o, _| o.clone()).await
}

async fn manifest(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    page_of(ctx, headers, id, q, |o, added| {
        let version = o["modified"].as_str().or(o["created"].as_str()).unwrap_or_default();
        json!({"id": o["id"], "date_added": added, "version": version, "media_type": STIX_MEDIA_TYPE})
    })
    .await
}

/// A page of a collection's objects, each written by `item` (the object
/// itself, or its manifest entry) with the date it was added.
async fn page_of(
    ctx: Arc<Ctx>,
    headers: HeaderMap,
    id: String,
    q: HashMap<String, String>,
    item: fn(&Value, &str) -> Value,
) -> Response {
    match read_page(ctx, headers, id, q).await {
        Ok((read, objects)) => {
            let items = objects.iter().map(|(o, added)| item(o, added)).collect();
            paged(read.next, items, &objects)
        }
        Err(r) => r.into_response(),
    }
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "Not Found",
        "no such TAXII endpoint; start at /taxii2/".into(),
    )
    .into_response()
}

fn router(ctx: Arc<Ctx>) -> axum::Router {
    axum::Router::new()
        .route("/taxii2/", get(discovery))
        .route("/api1/", get(api_root))
        .route("/api1/collections/", get(collections))
        .route("/api1/collections/{id}/", get(one_collection))
        .route("/api1/collections/{id}/objects/", get(objects))
        .route("/api1/collections/{id}/manifest/", get(manifest))
        .fallback(not_found)
        .with_state(ctx)
}

/// Serves TAXII on `listener` with `tls` (client certificates required)
/// until `stop` resolves. Each connection is identified by its certificate
/// once, then served HTTP/1.1.
pub async fn serve(
    listener: tokio::net::TcpListener,
    limit: crate::limits::ConnectionLimit,
    node: Arc<Node>,
    tls: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use tokio_stream::StreamExt;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    // The same caps and handshake timeout as the gRPC listener's.
    let (accept_loop, mut incoming) =
        crate::transport::tls_incoming(listener, limit, move || acceptor.clone(), handshake_timeout);
    node.tasks().spawn(accept_loop);
    tokio::pin!(stop);
    loop {
        let tls = tokio::select! {
            next = incoming.next() => match next {
                Some(Ok(tls)) => tls,
                Some(Err(_)) => continue,
                None => return,
            },
            _ = &mut stop => return,
        };
        let addr = tls.get_ref().0.peer_addr();
        let node = node.clone();
        node.clone().tasks().spawn(async move {
            let caller = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| node.gate().identifier().identify(chain))
                .and_then(|c| match c {
                    crate::tls::Caller::Local { name, clearance, .. } => Some(crate::gate::Reader { name, clearance }),
                    _ => None,
                });
            let service = hyper_util::service::TowerToHyperService::new(router(Arc::new(Ctx {
                node: node.clone(),
                caller,
            })));
            let io = hyper_util::rt::TokioIo::new(tls);
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
            tokio::select! {
                done = connection => if let Err(e) = done {
                    tracing::debug!(peer = ?addr, error = %e, "taxii: connection ended");
                },
                _ = node.tasks().stopping() => {}
            }
        });
    }
}
