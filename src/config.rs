//! A node's configuration file (`hotline.toml`): where its keys,
//! certificates, agreement and database are, which local certificates have
//! which role, and how the CLI reaches the node. Paths are relative to the
//! file's folder.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::clock;
use crate::proto::Tlp;
use crate::tls::{self, CertKey, LocalCert, Role};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The configuration is not valid; each problem names its field, and
    /// every problem found is listed at once.
    #[error("{}: {}", path.display(), problems.join("; "))]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong, one entry per field.
        problems: Vec<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    party: String,
    listen: SocketAddr,
    #[serde(default = "dot")]
    data: PathBuf,
    database: Option<String>,
    agreement: PathBuf,
    #[serde(default = "identity_key")]
    identity_key: PathBuf,
    #[serde(default = "next_key")]
    next_identity_key: PathBuf,
    pkcs11: Option<RawPkcs11>,
    #[serde(default = "encryption_key")]
    encryption_key: PathBuf,
    roster: Option<PathBuf>,
    tls_ca: PathBuf,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    #[serde(default)]
    local: Vec<RawLocal>,
    client: RawClient,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    limits: RawLimits,
    metrics: Option<RawMetrics>,
    taxii: Option<RawMetrics>,
    alerts: Option<crate::alerts::AlertConfig>,
    log: Option<String>,
}

/// `[pkcs11]`: the identity key on a token instead of in `identity_key`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPkcs11 {
    module: PathBuf,
    token: String,
    key: String,
    /// A rotation's next key: its label, on this token or on `next_token`.
    next_key: Option<String>,
    next_token: Option<String>,
    pin_file: Option<PathBuf>,
    pin_env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<SocketAddr>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    requests_per_second: Option<f64>,
    burst: Option<f64>,
    in_flight: Option<usize>,
    concurrent_streams: Option<u32>,
    connections_per_address: Option<usize>,
    connections: Option<usize>,
    handshake_timeout: Option<String>,
    call_timeout: Option<String>,
    startup_check_timeout: Option<String>,
    peer_calls_in_flight: Option<usize>,
    local_calls_in_flight: Option<usize>,
}

fn dot() -> PathBuf {
    PathBuf::from(".")
}

fn identity_key() -> PathBuf {
    PathBuf::from("identity.key")
}

fn next_key() -> PathBuf {
    PathBuf::from("identity.next.key")
}

fn encryption_key() -> PathBuf {
    PathBuf::from("encryption.key")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocal {
    name: String,
    role: Role,
    cert: PathBuf,
    /// An auditor's clearance: "clear" (the default), "green", "amber", "amber+strict" or "red".
    max_tlp: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    node: String,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    retry_base: Option<String>,
    retry_max: Option<String>,
    source_address: Option<std::net::IpAddr>,
}

/// A loaded node configuration, paths made absolute.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Our party id.
    pub party: String,
    /// Where the node listens.
    pub listen: SocketAddr,
    /// The data directory (the SQLite database, or the binding to PostgreSQL).
    pub data: PathBuf,
    /// `postgresql://…`: the log and state live in this PostgreSQL database
    /// instead of SQLite in `data`; a party's standby nodes share it.
    pub database: Option<String>,
    /// The signed agreement file.
    pub agreement: PathBuf,
    /// Our identity key file (unused when the key is on a token).
    pub identity_key: PathBuf,
    /// Where the identity keys are: files, or a PKCS#11 token.
    pub keys: crate::own_keys::KeySource,
    /// Where a rotation's new identity key is put (need not exist): read
    /// when an adopted agreement lists a key of ours the node does not hold.
    pub next_identity_key: PathBuf,
    /// The node's encryption key (X25519), which message bodies sealed to
    /// this party open with; `encryption.key` beside the configuration.
    pub encryption_key: PathBuf,
    /// Our roster as a signed note, published at start when its version is
    /// above the one logged (later versions go through `hotline roster`).
    pub roster: Option<PathBuf>,
    /// Our CA certificate (PEM).
    pub tls_ca: PathBuf,
    /// The node's certificate and key (PEM).
    pub tls_cert: PathBuf,
    /// See [`Config::tls_cert`].
    pub tls_key: PathBuf,
    /// Local certificates: name, role, certificate file.
    pub locals: Vec<(LocalCert, PathBuf)>,
    /// The command run for each alerted event, and how long it may take, if `[alerts]` is set.
    pub alerts: Option<(crate::alerts::AlertConfig, Duration)>,
    /// What `serve` logs, as `RUST_LOG` writes it (`info`, `hotline=debug,warn`); `RUST_LOG`, when
    /// set, wins at start; a reload applies a changed one.
    pub log: Option<String>,
    /// Where TAXII 2.1 is served (HTTPS, this party's certificates), if `[taxii]` is set.
    pub taxii: Option<SocketAddr>,
    /// Where Prometheus metrics are served (plain HTTP), if `[metrics]` is set.
    pub metrics: Option<SocketAddr>,
    /// The node address the CLI calls.
    pub client_node: String,
    /// The CLI's certificate and key.
    pub client_cert: PathBuf,
    /// See [`Config::client_cert`].
    pub client_key: PathBuf,
    /// First retry delay of a failed delivery.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// The local address connections to peers leave from (a node with
    /// several interfaces, a peer whose firewall admits one address); the
    /// system's choice if `None`.
    pub source_address: Option<std::net::IpAddr>,
    /// Per-caller request limits.
    pub limits: crate::limits::LimitConfig,
    /// HTTP/2 streams at once per connection.
    pub concurrent_streams: u32,
    /// TCP connections at once per remote address.
    pub connections_per_address: usize,
    /// TCP connections at once in all.
    pub connections: usize,
    /// How long a connection has to complete its TLS handshake.
    pub handshake_timeout: Duration,
    /// How long a call may take before its answer starts (a request body
    /// that trickles in, a stuck handler); it is then cancelled and its slot freed.
    pub call_timeout: Duration,
    /// How long a starting node waits for each peer's answer to "what have
    /// you witnessed of my log?" before starting without it.
    pub startup_check_timeout: Duration,
    /// Calls in flight at once from each peer node, counted before their bodies are read.
    pub peer_calls_in_flight: usize,
    /// Calls in flight at once from each local operator or auditor.
    pub local_calls_in_flight: usize,
    /// Which log entries to re-hash at start: not in the file, set by
    /// `hotline serve --recheck-all-entries`.
    pub recheck_log: crate::log::Recheck,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })
}

impl Config {
    /// Loads and checks a configuration file, reporting every problem found
    /// at once: each field rule, and each named file that cannot be read.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_checking(path, true)
    }

    /// Like [`Config::load`], for a party that has no agreement file yet
    /// (it is joining and fetches the agreement with its node certificate).
    pub fn load_before_agreement(path: &Path) -> Result<Self, ConfigError> {
        Self::load_checking(path, false)
    }

    fn load_checking(path: &Path, agreement: bool) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(&read(path)?).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            problems: vec![e.to_string().trim_end().to_owned()],
        })?;
        let mut problems = Vec::new();
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let abs = |p: &Path| if p.is_absolute() { p.to_owned() } else { base.join(p) };
        if !crate::agreement::is_valid_party_id(&raw.party) {
            problems.push(format!("party {:?} is not a party id", raw.party));
        }
        if let Some(url) = &raw.database
            && !(url.starts_with("postgresql://") || url.starts_with("postgres://"))
        {
            problems.push("database: a postgresql:// URL (leave it out to keep the log in SQLite)".into());
        }
        let mut duration = |field: &str, v: &Option<String>, default: u64| match v {
            None => Duration::from_millis(default),
            Some(s) => clock::parse_duration(s).filter(|d| !d.is_zero()).unwrap_or_else(|| {
                problems.push(format!("{field}: {s:?} is not a duration such as \"200ms\""));
                Duration::from_millis(default)
            }),
        };
        let alerts = raw.alerts.clone().map(|a| {
            let timeout = duration("alerts.timeout", &Some(a.timeout.clone()), 10_000);
            (a, timeout)
        });
        let retry_base = duration("delivery.retry_base", &raw.delivery.retry_base, 200);
        let retry_max = duration("delivery.retry_max", &raw.delivery.retry_max, 30_000);
        let handshake_timeout = duration("limits.handshake_timeout", &raw.limits.handshake_timeout, 10_000);
        let call_timeout = duration("limits.call_timeout", &raw.limits.call_timeout, 60_000);
        let startup_check_timeout = duration(
            "limits.startup_check_timeout",
            &raw.limits.startup_check_timeout,
            10_000,
        );
        let d = crate::limits::LimitConfig::default();
        let limits = crate::limits::LimitConfig {
            requests_per_second: raw.limits.requests_per_second.unwrap_or(d.requests_per_second),
            burst: raw.limits.burst.unwrap_or(d.burst),
            in_flight: raw.limits.in_flight.unwrap_or(d.in_flight),
        };
        if let Some((a, _)) = &alerts {
            if a.command.first().is_none_or(|p| p.is_empty()) {
                problems.push("alerts.command: give the program to run, then its arguments".into());
            }
            if a.per_minute == 0 {
                problems.push("alerts.per_minute: at least 1".into());
            }
        }
        // Each local certificate with what it may read: an operator RED, an auditor its max_tlp (CLEAR if none).
        let mut locals = Vec::with_capacity(raw.local.len());
        for l in &raw.local {
            let clearance = match (l.role, l.max_tlp.as_deref()) {
                (Role::Operator, None) => Tlp::Red,
                (Role::Auditor, None) => Tlp::Clear,
                (Role::Operator, Some(_)) => {
                    problems.push(format!(
                        "local {:?}: max_tlp is for auditors; an operator reads what its party sent and received",
                        l.name
                    ));
                    continue;
                }
                (Role::Auditor, Some(t)) => match crate::message::parse_tlp(t) {
                    Some(tlp) => tlp,
                    None => {
                        problems.push(format!(
                            "local {:?}: max_tlp {t:?} is not one of clear, green, amber, amber+strict, red",
                            l.name
                        ));
                        continue;
                    }
                },
            };
            let local = LocalCert {
                name: l.name.clone(),
                role: l.role,
                clearance,
            };
            locals.push((local, abs(&l.cert)));
        }
        if !(limits.requests_per_second > 0.0 && limits.burst >= 1.0 && limits.in_flight >= 1) {
            problems.push("limits: requests_per_second must be > 0, burst >= 1, in_flight >= 1".into());
        }
        let keys = match &raw.pkcs11 {
            None => crate::own_keys::KeySource::Files {
                current: abs(&raw.identity_key),
                next: abs(&raw.next_identity_key),
            },
            Some(t) => {
                let pin = match (&t.pin_file, &t.pin_env) {
                    (Some(file), None) => crate::pkcs11::PinSource::File(abs(file)),
                    (None, Some(var)) => crate::pkcs11::PinSource::Env(var.clone()),
                    _ => {
                        problems.push("pkcs11: give exactly one of pin_file and pin_env (never the PIN itself)".into());
                        crate::pkcs11::PinSource::Env(String::new())
                    }
                };
                let on_token = |token: &str, key: &str| crate::pkcs11::TokenRef {
                    module: t.module.clone(),
                    token: token.to_owned(),
                    key: key.to_owned(),
                    pin: pin.clone(),
                };
                crate::own_keys::KeySource::Token {
                    public: base.join("identity.pub"),
                    current: on_token(&t.token, &t.key),
                    next: t
                        .next_key
                        .as_deref()
                        .map(|key| on_token(t.next_token.as_deref().unwrap_or(&t.token), key)),
                }
            }
        };
        let config = Self {
            path: path.to_owned(),
            keys,
            party: raw.party,
            listen: raw.listen,
            data: abs(&raw.data),
            database: raw.database,
            agreement: abs(&raw.agreement),
            identity_key: abs(&raw.identity_key),
            next_identity_key: abs(&raw.next_identity_key),
            encryption_key: abs(&raw.encryption_key),
            roster: raw.roster.as_deref().map(abs),
            tls_ca: abs(&raw.tls_ca),
            tls_cert: abs(&raw.tls_cert),
            tls_key: abs(&raw.tls_key),
            locals,
            alerts,
            log: raw.log.clone(),
            taxii: raw
                .taxii
                .map(|t| t.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9443)))),
            metrics: raw
                .metrics
                .map(|m| m.listen.unwrap_or_else(crate::metrics::default_address)),
            client_node: raw.client.node,
            client_cert: abs(&raw.client.cert),
            client_key: abs(&raw.client.key),
            retry_base,
            retry_max,
            source_address: raw.delivery.source_address,
            limits,
            concurrent_streams: raw.limits.concurrent_streams.unwrap_or(1024).max(1),
            connections_per_address: raw.limits.connections_per_address.unwrap_or(64).max(1),
            connections: raw.limits.connections.unwrap_or(4096).max(1),
            peer_calls_in_flight: raw.limits.peer_calls_in_flight.unwrap_or(8).max(1),
            local_calls_in_flight: raw.limits.local_calls_in_flight.unwrap_or(256).max(1),
            handshake_timeout,
            call_timeout,
            startup_check_timeout,
            recheck_log: crate::log::Recheck::default(),
        };
        let key_file = match &config.keys {
            crate::own_keys::KeySource::Files { current, .. } => ("identity_key", current),
            crate::own_keys::KeySource::Token { public, .. } => ("identity.pub", public),
        };
        let files = [
            ("agreement", &config.agreement),
            key_file,
            ("tls_ca", &config.tls_ca),
            ("tls_cert", &config.tls_cert),
            ("tls_key", &config.tls_key),
            ("client.cert", &config.client_cert),
            ("client.key", &config.client_key),
        ];
        let locals = config.locals.iter().map(|(local, cert)| (local.name.as_str(), cert));
        for (field, file) in files
            .into_iter()
            .filter(|(f, _)| agreement || *f != "agreement")
            .chain(locals)
        {
            if let Err(e) = std::fs::metadata(file) {
                problems.push(format!("{field}: {}: {e}", file.display()));
            }
        }
        match problems.is_empty() {
            true => Ok(config),
            false => Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            }),
        }
    }

    /// The address to listen on.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The node's certificate and key; a key others may read is refused.
    pub fn node_cert(&self) -> Result<CertKey, ConfigError> {
        crate::keys::check_private(&self.tls_key).map_err(|e| ConfigError::Invalid {
            path: self.tls_key.clone(),
            problems: vec![e.to_string()],
        })?;
        Ok(CertKey {
            cert: read(&self.tls_cert)?,
            key: read(&self.tls_key)?,
        })
    }

    /// Our CA certificate, PEM.
    pub fn ca_pem(&self) -> Result<String, ConfigError> {
        read(&self.tls_ca)
    }

    /// The CLI's client certificate and key.
    pub fn client_cert(&self) -> Result<CertKey, ConfigError> {
        Ok(CertKey {
            cert: read(&self.client_cert)?,
            key: read(&self.client_key)?,
        })
    }

    /// Local certificates by SHA-256 fingerprint, with their names and roles.
    pub fn local_fingerprints(&self) -> Result<HashMap<[u8; 32], LocalCert>, ConfigError> {
        let mut map = HashMap::new();
        for (local, file) in &self.locals {
            let pem = read(file)?;
            let certs = tls::certs_from_pem(&file.display().to_string(), &pem).map_err(|e| ConfigError::Invalid {
                path: file.clone(),
                problems: vec![e.to_string()],
            })?;
            map.insert(tls::fingerprint(&certs[0]), local.clone());
        }
        Ok(map)
    }
}
