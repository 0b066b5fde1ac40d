//! Shared test helpers: parties with real keys and agreements built from them.
#![allow(dead_code)]

use hotline::agreement::SignedAgreement;
use hotline::keys::IdentityKey;

/// Norms as the brief writes them.
pub const NORMS: &str = hotline::setup::DEFAULT_NORMS;

/// A party id with a freshly generated identity key.
pub struct TestParty {
    pub id: String,
    pub key: IdentityKey,
}

/// Parties named by `ids`, each with a fresh key named `hotline.example/<id>`.
pub fn parties(ids: &[&str]) -> Vec<TestParty> {
    ids.iter()
        .map(|id| TestParty {
            id: id.to_string(),
            key: IdentityKey::generate(&format!("hotline.example/{id}")).unwrap(),
        })
        .collect()
}

/// The TOML table of one party, with `extra_keys` appended verbatim after its key.
pub fn party_toml(p: &TestParty, port: u16, key_extra: &str) -> String {
    format!(
        "[[party]]\nid = \"{id}\"\nname = \"{id} CSIRT\"\nendpoint = \"https://127.0.0.1:{port}\"\ntls_cert_sha256 = \"{fp}\"\n[[party.key]]\nvkey = \"{vkey}\"\n{key_extra}\n",
        id = p.id,
        fp = "ab".repeat(32),
        vkey = p.key.verifier()
    )
}

/// Agreement text listing `parties`, with `header` lines (such as a quorum) on top.
pub fn agreement_text(parties: &[TestParty], header: &str) -> String {
    let mut text = format!("version = 1\ntitle = \"Test hotline\"\n{header}\n{NORMS}\n");
    for (i, p) in parties.iter().enumerate() {
        text += &party_toml(p, 7000 + i as u16, "");
    }
    text
}

/// The agreement for `parties`, signed by each of `signers`.
pub fn signed_agreement(parties: &[TestParty], header: &str, signers: &[&TestParty]) -> SignedAgreement {
    let mut a = SignedAgreement::parse(agreement_text(parties, header).as_bytes()).unwrap();
    for s in signers {
        a.sign(&s.key).unwrap();
    }
    a
}

/// A log entry as the node writes one: an operator action with `detail`.
pub fn entry(detail: &str) -> hotline::log::entry::Entry {
    hotline::log::entry::encode(
        hotline::clock::now(),
        hotline::proto::log_entry::Body::OperatorAction(hotline::proto::OperatorAction {
            operator: "test".into(),
            action: "note".into(),
            detail: detail.into(),
        }),
    )
}

/// The entry a node writes for an envelope it sent to CHL: a commitment
/// and the message's metadata, the envelope kept beside it.
pub fn sent_entry(envelope: &hotline::proto::Envelope) -> hotline::log::entry::Entry {
    let meta = hotline::message::meta::of_envelope(envelope, None);
    hotline::log::entry::sent(hotline::clock::now(), envelope, meta, vec!["CHL".into()])
}

/// The entry an earlier release wrote for an envelope it sent to CHL: the
/// envelope inline, no metadata.
pub fn inline_sent_entry(envelope: &hotline::proto::Envelope) -> hotline::log::entry::Entry {
    hotline::log::entry::encode(
        hotline::clock::now(),
        hotline::proto::log_entry::Body::Sent(hotline::proto::EnvelopeSent {
            envelope: Some(envelope.clone()),
            to: vec!["CHL".into()],
            ..Default::default()
        }),
    )
}

/// The PostgreSQL server the suite runs against, when it runs on that
/// engine: `HOTLINE_TEST_POSTGRES` holds an admin URL (`.ci/postgres` prints one).
pub fn test_postgres() -> Option<String> {
    std::env::var("HOTLINE_TEST_POSTGRES").ok().filter(|u| !u.is_empty())
}

/// A loopback port free at the time of asking, for a process to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A PostgreSQL server for a test that needs one whatever engine the suite
/// runs on: `HOTLINE_TEST_POSTGRES`, or one started here with `.ci/postgres`
/// (stopped when the guard drops). `None`, said why, where there is none; a
/// failure under `CI=true`.
pub fn postgres_server(why: &str) -> Option<(String, Option<PostgresGuard>)> {
    if let Some(url) = test_postgres() {
        return Some((url, None));
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/postgres");
    let out = std::process::Command::new("bash").arg(&script).output().unwrap();
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "PostgreSQL is needed ({why}) under CI: {said}"
        );
        eprintln!("skipped: PostgreSQL is needed ({why}) and could not be started: {said}");
        return None;
    }
    let stop = String::from_utf8_lossy(&out.stderr)
        .split("stop with: ")
        .nth(1)
        .map(|s| s.trim().to_owned());
    Some((
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Some(PostgresGuard(stop)),
    ))
}

/// Stops the PostgreSQL server a test started.
pub struct PostgresGuard(Option<String>);

impl Drop for PostgresGuard {
    fn drop(&mut self) {
        if let Some(stop) = &self.0 {
            let _ = std::process::Command::new("sh").arg("-c").arg(stop).output();
        }
    }
}

/// Whether the suite runs on SQLite; on PostgreSQL, says why the calling
/// test (one about the SQLite file itself) does not apply.
pub fn on_sqlite(what: &str) -> bool {
    let sqlite = test_postgres().is_none();
    if !sqlite {
        eprintln!("not run on PostgreSQL: {what} is about the SQLite file");
    }
    sqlite
}

/// A new, empty PostgreSQL database on the test server, as a URL.
pub fn fresh_database(admin: &str) -> String {
    let name = format!("hotline_{}", uuid::Uuid::new_v4().simple());
    hotline::store::create_database(admin, &name).expect("creating a test database")
}

/// Binds a fresh data directory to a new PostgreSQL database when the
/// suite runs on that engine; a no-op on SQLite. Returns the URL bound.
pub fn bind_test_store(dir: &std::path::Path) -> Option<String> {
    let url = fresh_database(&test_postgres()?);
    hotline::store::bind(dir, Some(&url)).unwrap();
    Some(url)
}

/// A fresh log in a temporary directory, with its signing key.
pub fn temp_log() -> (tempfile::TempDir, hotline::log::Log, IdentityKey) {
    let dir = tempfile::tempdir().unwrap();
    bind_test_store(dir.path());
    let key = IdentityKey::generate("hotline.example/TST").unwrap();
    let log = hotline::log::Log::open(dir.path(), key.clone()).unwrap();
    (dir, log, key)
}

/// Runs the `hotline` binary with `args`.
pub fn hotline(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `hotline --json ARGS` and parses its output, whatever the exit code.
pub fn hotline_json(args: &[&str]) -> (bool, serde_json::Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = hotline(&all);
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{args:?}: not JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), value)
}

/// A closed log of `n` entries in a temporary data directory, appended in
/// batches of `batch`, with the node's `identity.pub` beside it.
pub fn filled_log(n: usize, batch: usize) -> (tempfile::TempDir, IdentityKey) {
    let (dir, log, key) = temp_log();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for start in (0..n).step_by(batch) {
            let entries = (start..(start + batch).min(n))
                .map(|i| entry(&format!("entry {i}")))
                .collect();
            log.append(entries).await.unwrap();
        }
    });
    log.close();
    std::fs::write(dir.path().join("identity.pub"), format!("{}\n", key.verifier())).unwrap();
    (dir, key)
}

/// A party with a TLS CA and a node certificate issued by it, as `hotline init` makes.
pub struct TlsParty {
    pub id: String,
    pub key: IdentityKey,
    pub ca: hotline::tls::CertKey,
    pub node: hotline::tls::CertKey,
}

/// TLS parties for `ids`, each node certificate valid for 127.0.0.1 and localhost.
pub fn tls_parties(ids: &[&str]) -> Vec<TlsParty> {
    use hotline::tls::{Usage, issue, new_ca};
    parties(ids)
        .into_iter()
        .map(|p| {
            let ca = new_ca(&p.id).unwrap();
            let node = issue(
                &p.id,
                &ca,
                &p.id,
                &["127.0.0.1".into(), "localhost".into()],
                Usage::Node,
            )
            .unwrap();
            TlsParty {
                id: p.id,
                key: p.key,
                ca,
                node,
            }
        })
        .collect()
}

/// An agreement naming each party's CA as its TLS identity.
pub fn tls_agreement(parties: &[TlsParty]) -> hotline::agreement::Agreement {
    let mut text = format!("version = 1\n{NORMS}\n");
    for (i, p) in parties.iter().enumerate() {
        text += &format!(
            "[[party]]\nid = \"{id}\"\nname = \"{id}\"\nendpoint = \"https://127.0.0.1:{port}\"\ntls_ca = \"\"\"\n{ca}\"\"\"\n[[party.key]]\nvkey = \"{vkey}\"\n\n",
            id = p.id,
            port = i + 1,
            ca = p.ca.cert,
            vkey = p.key.verifier()
        );
    }
    hotline::agreement::Agreement::parse(&text).unwrap()
}

/// Norms compressed to seconds.
pub const FAST_NORMS: &str = hotline::setup::DEMO_NORMS;

/// Request limits a test can run into: one a second, bursts of three.
pub const TIGHT_LIMITS: hotline::limits::LimitConfig = hotline::limits::LimitConfig {
    requests_per_second: 1.0,
    burst: 3.0,
    in_flight: 100,
};

/// The longest retry delay of a cluster's nodes: advancing the clock by it
/// makes every failed delivery due again.
pub const RETRY_MAX: std::time::Duration = std::time::Duration::from_millis(500);

/// Parties on loopback, each a real node over mutual TLS with its own SQLite
/// file, all reading one manual clock: time stands still until a test
/// advances it, so deadlines, retries and scheduled checks fire only then.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub configs: Vec<hotline::config::Config>,
    pub nodes: Vec<Option<hotline::server::Running>>,
    pub clock: hotline::clock::Clock,
    /// The impairing proxies some parties are reached through, by party.
    pub proxies: Vec<(String, hotline::impair::Proxy)>,
}

/// A test whose nodes' background tasks panicked fails, even if its own
/// assertions passed.
impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        for n in self.nodes.iter().flatten() {
            if let Some(panic) = n.node.tasks().panicked() {
                panic!("a background task of {} panicked: {panic}", n.node.party());
            }
        }
    }
}

impl Cluster {
    /// Starts every party of `ids` with `norms`.
    pub async fn start(ids: &[&str], norms: &str) -> Cluster {
        Self::start_with(ids, norms, |_| {}).await
    }

    /// Like [`Cluster::start`], with each configuration adjusted by `tweak` first.
    pub async fn start_with(ids: &[&str], norms: &str, tweak: impl Fn(&mut hotline::config::Config)) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let made = hotline::setup::local_cluster(dir.path(), ids, norms).await.unwrap();
        Self::start_made(dir, made, tweak).await
    }

    /// Starts the parties `local_cluster` made in `dir`, each configuration adjusted by `tweak`.
    pub async fn start_made(
        dir: tempfile::TempDir,
        made: Vec<(hotline::config::Config, tokio::net::TcpListener)>,
        tweak: impl Fn(&mut hotline::config::Config),
    ) -> Cluster {
        if std::env::var_os("RUST_LOG").is_some() {
            // RUST_LOG=warn shows what the nodes of a failing test said.
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let clock = hotline::clock::Clock::manual(hotline::clock::now());
        let mut configs = Vec::new();
        let mut listeners = Vec::new();
        for (mut config, listener) in made {
            config.retry_base = std::time::Duration::from_millis(50);
            config.retry_max = RETRY_MAX;
            if let Some(admin) = test_postgres() {
                let url = fresh_database(&admin);
                // The file too, for the commands a test runs on it.
                let text = std::fs::read_to_string(&config.path).unwrap();
                std::fs::write(&config.path, format!("database = {url:?}\n{text}")).unwrap();
                config.database = Some(url);
            }
            tweak(&mut config);
            configs.push(config);
            listeners.push(listener);
        }
        // All at once, as a hotline starts: each node asks the others what
        // they witnessed of its log before it writes, so they must be answering.
        let starts = configs
            .iter()
            .zip(listeners)
            .map(|(config, listener)| hotline::server::start(config, Some(listener), clock.clone()));
        let nodes = futures_util::future::join_all(starts)
            .await
            .into_iter()
            .map(|n| Some(n.unwrap()))
            .collect();
        let cluster = Cluster {
            dir,
            configs,
            nodes,
            clock,
            proxies: Vec::new(),
        };
        cluster.rosters_exchanged().await;
        cluster
    }

    /// Like [`Cluster::start`], with each party of `behind` reached through
    /// an impairing proxy at the endpoint the agreement publishes for it
    /// (its node listening behind, on a port of its own): the link into
    /// that party, which starts clear. [`Cluster::link`] changes it.
    pub async fn start_behind_proxies(ids: &[&str], norms: &str, behind: &[&str]) -> Cluster {
        Self::start_behind_proxies_with(ids, norms, behind, |_| {}).await
    }

    /// Like [`Cluster::start_behind_proxies`], each configuration adjusted by `tweak`.
    pub async fn start_behind_proxies_with(
        ids: &[&str],
        norms: &str,
        behind: &[&str],
        tweak: impl Fn(&mut hotline::config::Config),
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let made = hotline::setup::local_cluster(dir.path(), ids, norms).await.unwrap();
        let mut proxies = Vec::new();
        let mut rebound = Vec::new();
        for (mut config, published) in made {
            if behind.contains(&config.party.as_str()) {
                let own = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = own.local_addr().unwrap();
                config.listen = addr;
                hotline::setup::move_behind(&config.path, addr, None).unwrap();
                let proxy = hotline::impair::Proxy::start(published, addr, Default::default()).unwrap();
                proxies.push((config.party.clone(), proxy));
                rebound.push((config, own));
            } else {
                rebound.push((config, published));
            }
        }
        let mut cluster = Self::start_made(dir, rebound, tweak).await;
        cluster.proxies = proxies;
        cluster
    }

    /// The proxy `party` is reached through.
    pub fn link(&self, party: &str) -> &hotline::impair::Proxy {
        &self
            .proxies
            .iter()
            .find(|(p, _)| p == party)
            .expect("a party behind a proxy")
            .1
    }

    /// Waits until each node holds every other's first roster (published
    /// at start) and has its own receipted, so a test starts from quiet logs.
    pub async fn rosters_exchanged(&self) {
        let parties: Vec<String> = self.configs.iter().map(|c| c.party.clone()).collect();
        awaited("every node's first roster delivered and receipted", || async {
            let quiet = self.nodes.iter().flatten().all(|n| {
                parties.iter().all(|p| n.node.rosters().version(p) >= 1)
                    && n.node
                        .read(hotline::state::outbox_counts)
                        .is_ok_and(|o| o.iter().all(|(_, n)| *n == 0))
            });
            quiet.then_some(())
        })
        .await
    }

    /// The running node `i`.
    pub fn node(&self, i: usize) -> &std::sync::Arc<hotline::node::Node> {
        &self.nodes[i].as_ref().expect("node is stopped").node
    }

    /// Stops node `i` gracefully.
    pub async fn stop(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.stop().await.expect("no background task panicked");
        }
    }

    /// Restarts node `i` on the address it had.
    pub async fn restart(&mut self, i: usize) {
        let listener = tokio::net::TcpListener::bind(self.configs[i].listen_addr())
            .await
            .unwrap();
        self.nodes[i] = Some(
            hotline::server::start(&self.configs[i], Some(listener), self.clock.clone())
                .await
                .unwrap(),
        );
    }

    /// A Federation client for node `to`, presenting node `from`'s node certificate.
    pub fn peer_client(
        &self,
        from: usize,
        to: usize,
    ) -> hotline::proto::federation_client::FederationClient<tonic::transport::Channel> {
        let endpoint = format!("https://{}", self.nodes[to].as_ref().unwrap().addr);
        let channel = hotline::transport::channel(
            &endpoint,
            &self.configs[to].ca_pem().unwrap(),
            &self.configs[from].node_cert().unwrap(),
        )
        .unwrap();
        hotline::proto::federation_client::FederationClient::new(channel)
    }

    /// An Operator client for node `i` with its operator certificate.
    pub fn operator(&self, i: usize) -> hotline::proto::operator_client::OperatorClient<tonic::transport::Channel> {
        let c = &self.configs[i];
        let channel =
            hotline::transport::channel(&c.client_node, &c.ca_pem().unwrap(), &c.client_cert().unwrap()).unwrap();
        hotline::proto::operator_client::OperatorClient::new(channel)
    }

    /// Node `i`'s `Status`, as its operator sees it.
    pub async fn status(&self, i: usize) -> hotline::proto::StatusResponse {
        self.operator(i)
            .status(hotline::proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    /// Sends `notice` through node `i`'s operator and returns its id.
    pub async fn send(&self, i: usize, notice: hotline::proto::Notice) -> String {
        self.operator(i)
            .send_notice(hotline::proto::SendNoticeRequest { notice: Some(notice) })
            .await
            .unwrap()
            .into_inner()
            .id
    }

    /// Sends `notices` through node `i`'s operator over one `SendNotices`
    /// stream and returns every outcome, in the order they came.
    pub async fn send_stream(
        &self,
        i: usize,
        notices: Vec<hotline::proto::Notice>,
    ) -> Vec<hotline::proto::send_notice_outcome::Result> {
        let requests = notices
            .into_iter()
            .map(|n| hotline::proto::SendNoticeRequest { notice: Some(n) });
        let mut outcomes = self
            .operator(i)
            .send_notices(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let mut answered = Vec::new();
        while let Some(o) = outcomes.message().await.unwrap() {
            answered.push(o.result.expect("every outcome says what happened"));
        }
        answered
    }

    /// Waits until node `i` holds message `id`: delivered, checked and logged.
    pub async fn until_held(&self, i: usize, id: &str) {
        self.eventually(10, &format!("node {i} holds message {id}"), |c| {
            c.node(i).read(|db| hotline::state::message(db, id)).unwrap().is_some()
        })
        .await
    }

    /// Waits until node `i` has logged `n` receipts for its message `id`.
    pub async fn until_receipts(&self, i: usize, id: &str, n: usize) {
        self.eventually(10, &format!("node {i} logs {n} receipt(s) for {id}"), |c| {
            c.node(i).read(|db| hotline::state::receipts(db, id)).unwrap().len() == n
        })
        .await
    }

    /// Node `i`'s operator answers notice `id` with `status` and `text`.
    pub async fn respond(
        &self,
        i: usize,
        id: &str,
        status: hotline::proto::ResponseStatus,
        text: &str,
    ) -> hotline::proto::RespondResponse {
        self.operator(i)
            .respond(hotline::proto::RespondRequest {
                notice_id: id.to_owned(),
                status: status as i32,
                text: text.to_owned(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits up to `secs` of real time for `check` to hold; the nodes' clock stands still.
    pub async fn eventually(&self, secs: u64, what: &str, check: impl FnMut(&Cluster) -> bool) {
        self.eventually_advancing(secs, std::time::Duration::ZERO, what, check)
            .await
    }

    /// Like [`Cluster::eventually`], moving the nodes' clock by `step` before
    /// each look: retries and backoff run as fast as the nodes can go.
    pub async fn eventually_advancing(
        &self,
        secs: u64,
        step: std::time::Duration,
        what: &str,
        check: impl FnMut(&Cluster) -> bool,
    ) {
        self.eventually_advancing_at_most(secs, step, std::time::Duration::MAX, what, check)
            .await
    }

    /// Like [`Cluster::eventually_advancing`], moving the nodes' clock by
    /// `limit` at most in all; then it stands still while the look goes on,
    /// so what must happen within `limit` of the nodes' time is told apart.
    pub async fn eventually_advancing_at_most(
        &self,
        secs: u64,
        step: std::time::Duration,
        limit: std::time::Duration,
        what: &str,
        mut check: impl FnMut(&Cluster) -> bool,
    ) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let mut advanced = std::time::Duration::ZERO;
        loop {
            if advanced.saturating_add(step) <= limit {
                self.clock.advance(step);
                advanced += step;
            }
            if check(self) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Decoded log entries of node `i` (running or not).
    pub fn log_entries(&self, i: usize) -> Vec<hotline::proto::LogEntry> {
        use prost::Message;
        let reader = hotline::log::LogReader::open(&self.configs[i].data).unwrap();
        reader
            .entries(0, u64::MAX >> 1, 1_000_000)
            .unwrap()
            .into_iter()
            .map(|(_, e)| hotline::proto::LogEntry::decode(&e.data[..]).unwrap())
            .collect()
    }

    /// How many times node `i` logged message `id` as received: once is
    /// right, however often it was delivered.
    pub fn times_received(&self, i: usize, id: &str) -> usize {
        use hotline::proto::log_entry::Body;
        self.log_entries(i)
            .iter()
            .filter(|e| matches!(&e.body, Some(Body::Received(r)) if r.meta.as_ref().is_some_and(|m| m.id == id)))
            .count()
    }

    /// Creates party `id`'s files under the cluster's folder, with a bound
    /// listener, as `hotline init` would: a party about to join.
    pub async fn new_party(&self, id: &str) -> (hotline::setup::Created, tokio::net::TcpListener) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (origin, name, endpoint) = (
            format!("hotline.example/{id}"),
            format!("{id} national CSIRT"),
            format!("https://{addr}"),
        );
        let plan = hotline::setup::Plan::local(id, &origin, &name, addr, &endpoint);
        let created = hotline::setup::create(&self.dir.path().join(id), &plan).unwrap();
        (created, listener)
    }

    /// Starts a party made by [`Cluster::new_party`] on `agreement` (a
    /// signed note) and returns its index.
    pub async fn join(
        &mut self,
        created: &hotline::setup::Created,
        listener: tokio::net::TcpListener,
        agreement: &[u8],
    ) -> usize {
        std::fs::write(created.config.with_file_name("agreement.toml"), agreement).unwrap();
        let mut config = hotline::config::Config::load(&created.config).unwrap();
        config.retry_base = std::time::Duration::from_millis(50);
        config.retry_max = RETRY_MAX;
        self.nodes.push(Some(
            hotline::server::start(&config, Some(listener), self.clock.clone())
                .await
                .unwrap(),
        ));
        self.configs.push(config);
        self.nodes.len() - 1
    }

    /// Node `i`'s identity key.
    pub fn key(&self, i: usize) -> hotline::keys::IdentityKey {
        hotline::keys::IdentityKey::load(&self.configs[i].identity_key).unwrap()
    }

    /// The agreement version in force at node `i`.
    pub fn version(&self, i: usize) -> u64 {
        self.node(i).in_force().version()
    }

    /// Every entry of node `i`, described.
    pub fn log_lines(&self, i: usize) -> Vec<String> {
        self.log_entries(i).iter().map(hotline::log::entry::describe).collect()
    }
}

/// A notice from the operator, ready for SendNotice.
pub fn notice(to: &[&str], title: &str) -> hotline::proto::Notice {
    use hotline::proto::*;
    Notice {
        to: to.iter().map(|s| s.to_string()).collect(),
        kind: NoticeKind::Notification as i32,
        severity: Severity::High as i32,
        category: Category::MaliciousCode as i32,
        tlp: Tlp::Amber as i32,
        title: title.into(),
        summary: "Wiper malware on the grid operator's SCADA historians.".into(),
        ..Default::default()
    }
}

/// Awaits `check` (an async look, such as an RPC) until it gives a value,
/// for up to 10 s of real time; the nodes' clock stands still meanwhile.
pub async fn awaited<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// An outside program a test checks our output with (a Python validator,
/// say), looked for in `$HOTLINE_VENV/bin` (where `.ci/run` installs them),
/// then on the PATH. Missing, the test says it is skipped and why; under
/// `CI=true` a missing one fails the test.
pub fn outside_tool(name: &str, why: &str) -> Option<std::path::PathBuf> {
    let in_venv = std::env::var_os("HOTLINE_VENV").map(|v| std::path::Path::new(&v).join("bin").join(name));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    if let Some(found) = in_venv.into_iter().chain(on_path).find(|p| p.is_file()) {
        return Some(found);
    }
    let message = format!("{name} not found in $HOTLINE_VENV/bin or on PATH; it is needed to {why}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message} (CI=true: .ci/run installs it)");
    }
    eprintln!("SKIPPED: {message} (bash .ci/run installs it)");
    None
}

/// Where Debian's golang-golang-x-mod-dev keeps Go's sumdb code (a GOPATH).
const GO_PATH: &str = "/usr/share/gocode";

/// Checks the tlog-tiles export in `dir` with Go's own `sumdb/note` and
/// `sumdb/tlog` (`tests/go/tlogcheck.go`: the checkpoint opened with `vkey`,
/// every entry proved against its root): `Some((passed, what it printed))`,
/// or `None` where Go or the module is missing (skipped; a failure under `CI=true`).
pub fn go_tlogcheck(dir: &std::path::Path, vkey: &str) -> Option<(bool, String)> {
    let go = outside_tool("go", "check the export with Go's sumdb/tlog (Debian: golang-go)")?;
    if !std::path::Path::new(GO_PATH)
        .join("src/golang.org/x/mod/sumdb/tlog")
        .is_dir()
    {
        let message = format!(
            "{GO_PATH} lacks golang.org/x/mod (Debian: golang-golang-x-mod-dev); it is needed to check the export with Go's sumdb/tlog"
        );
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{message} (CI=true: .ci/run installs it)"
        );
        eprintln!("SKIPPED: {message} (bash .ci/run installs it)");
        return None;
    }
    let program = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/tlogcheck.go");
    let cache = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/go-cache");
    let out = std::process::Command::new(go)
        .arg("run")
        .arg(program)
        .arg(dir)
        .arg(vkey)
        .env("GO111MODULE", "off")
        .env("GOPATH", GO_PATH)
        .env("GOCACHE", cache)
        .env("GOFLAGS", "")
        .output()
        .expect("go runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), said))
}

/// A Python that can import `module` (`$HOTLINE_VENV/bin/python`, else
/// `python3` on the PATH), for a test that drives an outside Python tool;
/// skipped, or failed under `CI=true`, as [`outside_tool`] says.
pub fn python_with(module: &str, why: &str) -> Option<std::path::PathBuf> {
    let venv = std::env::var_os("HOTLINE_VENV").map(|v| std::path::Path::new(&v).join("bin/python"));
    let found = venv
        .into_iter()
        .chain([std::path::PathBuf::from("python3")])
        .find(|python| {
            std::process::Command::new(python)
                .args(["-c", &format!("import {module}")])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if found.is_none() {
        let message = format!("no Python with {module} ($HOTLINE_VENV/bin/python or python3); it is needed to {why}");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message} (CI=true: .ci/run installs it)");
        }
        eprintln!("SKIPPED: {message} (bash .ci/run installs it)");
    }
    found
}

/// What headless Chromium made of an HTML file: the DOM after loading, the
/// console messages it logged, and a screenshot saved at `screenshot`.
pub struct Rendered {
    pub dom: String,
    pub console: Vec<String>,
}

/// Loads `page` in headless Chromium (Debian's package), as a person would
/// open the file, saving a screenshot; `None` (skipped) where there is none.
pub fn chromium(page: &std::path::Path, screenshot: &std::path::Path) -> Option<Rendered> {
    let chromium = outside_tool("chromium", "render the HTML report in a real browser")?;
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    // The flags the machine's notes give for a closed network, as root.
    let run = |extra: &[&str]| {
        std::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1200,3000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium runs")
    };
    let dumped = run(&["--dump-dom"]);
    assert!(dumped.status.success(), "{}", String::from_utf8_lossy(&dumped.stderr));
    let shot = run(&[&format!("--screenshot={}", screenshot.display())]);
    assert!(
        shot.status.success() && screenshot.is_file(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let console = [&dumped.stderr, &shot.stderr]
        .iter()
        .flat_map(|e| {
            String::from_utf8_lossy(e)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|l| l.contains("CONSOLE") || l.contains("Refused to"))
        .collect();
    Some(Rendered {
        dom: String::from_utf8_lossy(&dumped.stdout).into_owned(),
        console,
    })
}

/// Node 0's notices as `hotline export stix --max-tlp <max_tlp>` writes them: the file and the bundle.
pub fn export_stix(c: &Cluster, max_tlp: &str) -> (std::path::PathBuf, serde_json::Value) {
    let file = c.dir.path().join(format!("stix-{max_tlp}.json"));
    let config = c.configs[0].path.to_string_lossy().into_owned();
    let args = [
        "export",
        "stix",
        "--config",
        &config,
        "--max-tlp",
        max_tlp,
        "--out",
        &file.to_string_lossy(),
    ];
    let (ok, v) = hotline_json(&args);
    assert!(ok, "{v}");
    let bundle = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    (file, bundle)
}

/// A sealed body that lies: it commits to (so its sender signs) `signed`,
/// but decrypts for `party` under `key` to `shown`, every key and tag
/// consistent, exactly as `hotline::seal::seal` wraps a content key (what a
/// ciphertext made to decrypt under two keys would show one reader).
pub fn lying_seal(
    signed: &[u8],
    shown: &[u8],
    party: &str,
    key: &hotline::seal::SealPublicKey,
) -> hotline::proto::Sealed {
    use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
    use hpke::{Deserializable as _, Serializable as _};
    use sha2::Digest as _;
    let salt = [7u8; 32];
    let commitment = sha2::Sha256::digest([&salt[..], signed].concat()).to_vec();
    let cipher = |key: &[u8; 32], msg: &[u8]| {
        chacha20poly1305::ChaCha20Poly1305::new(key.into())
            .encrypt(&Default::default(), Payload { msg, aad: &commitment })
            .unwrap()
    };
    let content_key = [9u8; 32];
    let ciphertext = cipher(&content_key, &[&salt[..], shown].concat());
    let pk = <hpke::kem::X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(
        &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key.encode()).unwrap(),
    )
    .unwrap();
    let (enc, ctx) = hpke::setup_sender::<
        hpke::aead::ChaCha20Poly1305,
        hpke::kdf::HkdfSha256,
        hpke::kem::X25519HkdfSha256,
        _,
    >(&hpke::OpModeS::Base, &pk, b"hotline seal v1", &mut rand_core::OsRng)
    .unwrap();
    let mut wrapping = [0u8; 32];
    ctx.export(&[&b"content key "[..], &commitment].concat(), &mut wrapping)
        .unwrap();
    hotline::proto::Sealed {
        ciphertext,
        keys: vec![hotline::proto::SealedKey {
            party: party.into(),
            key_id: key.key_id(),
            enc: enc.to_bytes().to_vec(),
            sealed_key: cipher(&wrapping, &content_key),
        }],
        commitment,
    }
}

/// An observer's CA and a client certificate it issued, and the agreement's `[[observer]]` table for it.
pub fn observer(id: &str) -> (hotline::tls::CertKey, hotline::tls::CertKey, String) {
    let ca = hotline::tls::new_ca(id).unwrap();
    let cert = hotline::tls::issue(id, &ca, &format!("{id} reader"), &[], hotline::tls::Usage::Client).unwrap();
    let table = format!(
        "\n[[observer]]\nid = \"{id}\"\nname = \"{id} Secretariat\"\ntls_ca = \"\"\"\n{}\"\"\"\n",
        ca.cert
    );
    (ca, cert, table)
}

/// A child process killed (and reaped) when dropped: a test that fails
/// leaves no `hotline serve` running behind it.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `f` holds, for up to `secs` seconds of real time, asking
/// again every 100 ms: for tests that drive `hotline` processes.
pub fn until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(std::time::Instant::now() < end, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
