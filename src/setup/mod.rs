//! Creating a party's files, as `hotline init` and `hotline demo` do: the
//! identity key, a CA with node, operator and auditor certificates, the node
//! configuration, its first roster of points of contact, and the party's
//! entry for the agreement.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::keys::{IdentityKey, KeyError};
use crate::tls::{self, CertKey, TlsError, Usage};

mod texts;
pub use texts::*;

/// Why a party's files could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The identity key exists already or could not be written.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Certificates could not be made.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The first roster could not be made.
    #[error(transparent)]
    Roster(#[from] crate::roster::RosterError),
    /// A file could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The folder already holds a party.
    #[error("{} already exists; refusing to overwrite an existing party's keys", path.display())]
    Exists {
        /// The file at fault.
        path: PathBuf,
    },
}

/// What `create` made.
#[derive(Clone, Debug)]
pub struct Created {
    /// The configuration file.
    pub config: PathBuf,
    /// The party's `[[party]]` table for the agreement.
    pub party_entry: String,
    /// The public identity key.
    pub vkey: String,
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), SetupError> {
    let io = |source| SetupError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if private { 0o600 } else { 0o644 });
    let mut f = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

fn write_pair(dir: &Path, name: &str, ck: &CertKey) -> Result<(), SetupError> {
    write(&dir.join(format!("tls/{name}.pem")), &ck.cert, false)?;
    write(&dir.join(format!("tls/{name}.key")), &ck.key, true)
}

/// What `create` makes a party's files for.
pub struct Plan<'a> {
    /// The party id.
    pub party: &'a str,
    /// Its log origin, the name of its identity key.
    pub origin: &'a str,
    /// Its display name in the agreement.
    pub name: &'a str,
    /// Where its node listens.
    pub listen: SocketAddr,
    /// Where peers reach it, `https://host:port`.
    pub endpoint: &'a str,
    /// The party's own PKI: that folder's `ca.pem` and its node, operator
    /// and auditor certificates and keys, used instead of minting.
    pub own_tls: Option<&'a Path>,
    /// The identity key on a PKCS#11 token instead of a new key file.
    pub token: Option<&'a crate::pkcs11::TokenRef>,
}

impl<'a> Plan<'a> {
    /// A party on its own PKI and a key file, named as the demo and tests name them.
    pub fn local(party: &'a str, origin: &'a str, name: &'a str, listen: SocketAddr, endpoint: &'a str) -> Self {
        Self {
            party,
            origin,
            name,
            listen,
            endpoint,
            own_tls: None,
            token: None,
        }
    }
}

/// Creates a party's files in `dir` as `plan` says.
pub fn create(dir: &Path, plan: &Plan<'_>) -> Result<Created, SetupError> {
    let Plan {
        party,
        origin,
        name,
        listen,
        endpoint,
        own_tls,
        token,
    } = *plan;
    let key_path = dir.join("identity.key");
    for taken in [key_path.clone(), dir.join("identity.pub")] {
        if taken.exists() {
            return Err(SetupError::Exists { path: taken });
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| SetupError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let host = endpoint
        .trim_start_matches("https://")
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_owned())
        .unwrap_or_else(|| "localhost".into());
    let mut hosts = vec![host, "localhost".to_owned(), "127.0.0.1".to_owned()];
    hosts.dedup();
    let ca_pem = match own_tls {
        Some(src) => {
            let read = |name: &str| {
                let path = src.join(name);
                std::fs::read_to_string(&path).map_err(|source| SetupError::Io { path, source })
            };

            let ca = read("ca.pem")?;
            let pair = |name: &str| -> Result<CertKey, SetupError> {
                Ok(CertKey {
                    cert: read(&format!("{name}.pem"))?,
                    key: read(&format!("{name}.key"))?,
                })
            };
            let node = pair("node")?;
            tls::check_node_certificate(&ca, &node.cert, endpoint)?;
            write(&dir.join("tls/ca.pem"), &ca, false)?;
            write_pair(dir, "node", &node)?;
            write_pair(dir, "operator", &pair("operator")?)?;
            write_pair(dir, "auditor", &pair("auditor")?)?;
            ca
        }
        None => {
            let ca = tls::new_ca(party)?;
            write_pair(dir, "ca", &ca)?;
            write_pair(dir, "node", &tls::issue(party, &ca, party, &hosts, Usage::Node)?)?;
            write_pair(
                dir,
                "operator",
                &tls::issue(party, &ca, &format!("{party} operator"), &[], Usage::Client)?,
            )?;
            write_pair(
                dir,
                "auditor",
                &tls::issue(party, &ca, &format!("{party} auditor"), &[], Usage::Client)?,
            )?;
            ca.cert
        }
    };
    let key = match token {
        // The key stays on the token; only its public half is written.
        Some(t) => IdentityKey::open_token(origin, t)?,
        None => {
            let key = IdentityKey::generate(origin)?;
            key.save(&key_path)?;
            key
        }
    };
    let vkey = key.verifier().to_string();
    write(&dir.join("identity.pub"), &format!("{vkey}\n"), false)?;
    // The key message bodies will be sealed to, published in the party's entry.
    let sealing = crate::seal::SealKey::generate();
    sealing.save(&dir.join("encryption.key"))?;
    // The first roster: one duty officer, both roles, with the operator certificate.
    let operator_pem = std::fs::read_to_string(dir.join("tls/operator.pem")).map_err(|source| SetupError::Io {
        path: dir.join("tls/operator.pem"),
        source,
    })?;
    let operator_fp = tls::certs_from_pem("tls/operator.pem", &operator_pem)?
        .first()
        .map(tls::fingerprint)
        .unwrap_or_default();
    let roster = crate::roster::initial(party, &format!("{party} duty officer"), &operator_fp);
    write(&dir.join("roster.toml"), &roster, false)?;
    let signed = crate::roster::SignedRoster::sign(&roster, &key)?;
    write(
        &dir.join("roster.signed"),
        &String::from_utf8_lossy(&signed.to_bytes()),
        false,
    )?;

    let config = dir.join("hotline.toml");
    write(
        &config,
        &format!(
            r#"# hotline node configuration for party {party}, written by `hotline init`.
# Paths are relative to this file.

party = "{party}"
# Address the node listens on (Federation, Operator and Audit services, mutual TLS).
listen = "{listen}"
# Folder of the database (hotline.db).
data = "."
# Keep the log and state in PostgreSQL instead, shared with this party's standby nodes:
# database = "postgresql://hotline@db.example:5432/hotline?sslmode=require&sslrootcert=/etc/hotline/db-ca.pem"
# The agreement, signed by every party (see `hotline agreement`).
agreement = "agreement.toml"
{identity}
# This party's roster of points of contact, signed by the identity key: published to every peer
# at start if newer than the one logged. Only certificates a contact lists may act.
roster = "roster.signed"
# What serve logs, in RUST_LOG's syntax ("info", "hotline=debug,warn"); RUST_LOG, when set, wins at
# start; `systemctl reload` (SIGHUP) applies a change.
# log = "info"
# This party's CA (published in the agreement as tls_ca) and the node's certificate.
tls_ca = "tls/ca.pem"
tls_cert = "tls/node.pem"
tls_key = "tls/node.key"

# Local client certificates, issued by this party's CA, and what they may do.
[[local]]
name = "operator"
role = "operator"
cert = "tls/operator.pem"

[[local]]
name = "auditor"
role = "auditor"
cert = "tls/auditor.pem"
# What this auditor may read: messages labelled up to this TLP (clear, green, amber, amber+strict,
# red). Above it, it gets each message's commitment and what its log entry says (who, when, how
# severe), never the text; the Audit service's proofs still verify. Left out: clear.
max_tlp = "clear"

# TAXII 2.1, read only, over HTTPS for this party's own certificates ([[local]] operators and
# auditors): CERT tools pull the notices the node may share; uncomment to serve it.
# [taxii]
# listen = "127.0.0.1:9443"

# Prometheus metrics, plain HTTP on their own address (GET /metrics); uncomment to serve them.
# [metrics]
# listen = "127.0.0.1:9464"

# Alerts: this command runs for each missed deadline, checkpoint fork, failed communication check
# and agreement change, with the event as one JSON line on its standard input; uncomment to page someone.
# [alerts]
# command = ["/usr/local/bin/page-duty-officer", "--team", "cert"]
# kinds = ["deadline_missed", "checkpoint_fork", "comm_check_failed", "agreement_changed"]
# per_minute = 6
# timeout = "10s"

{pkcs11}# How the hotline CLI reaches this node.
[client]
node = "https://127.0.0.1:{port}"
cert = "tls/operator.pem"
key = "tls/operator.key"

# Delivery retries: exponential backoff with jitter between these bounds.
[delivery]
retry_base = "200ms"
retry_max = "30s"
# The local address connections to peers leave from (the system chooses if unset).
# source_address = "192.0.2.10"

# Per-caller limits (each peer node, each operator); over them: RESOURCE_EXHAUSTED.
[limits]
requests_per_second = 20000
burst = 5000
in_flight = 2048
# HTTP/2 streams at once per connection; TCP connections at once per caller (a remote address
# until its client certificate is verified, that certificate after) and in all, on every
# listener; how long a connection has to complete its TLS handshake.
concurrent_streams = 1024
connections_per_address = 64
connections = 4096
handshake_timeout = "10s"
# How long a call may take before its answer starts (a streamed answer may then run on); a
# peer's delivery has this plus the time its largest batch takes over a 32 kbit/s link.
call_timeout = "60s"
# At start, how long to wait for each peer's answer to "what have you witnessed of my log?"
# (a node restored from an old copy refuses to serve); a peer that does not answer is passed over.
startup_check_timeout = "10s"
# Calls in flight at once from each peer node and each local certificate, before bodies are read
# (8 full batches of 256 envelopes are in_flight's 2048, so a peer over it is refused unread).
# A call refused for a limit is answered after 100 ms, so a caller cannot turn refusals into a flood.
peer_calls_in_flight = 8
local_calls_in_flight = 256
"#,
            port = listen.port(),
            identity = match token {
                None => "identity_key = \"identity.key\"",
                Some(_) =>
                    "# The identity key is on a PKCS#11 token: see [pkcs11] below. identity.pub is its public half.",
            },
            pkcs11 = token.map(pkcs11_table).unwrap_or_default(),
        ),
        false,
    )?;
    let party_entry = format!(
        "[[party]]\nid = \"{party}\"\nname = \"{name}\"\nendpoint = \"{endpoint}\"\ntls_ca = \"\"\"\n{ca}\"\"\"\n\
         [[party.encryption_key]]\nkey = \"{sealing}\"\n[[party.key]]\nvkey = \"{vkey}\"\n",
        ca = ca_pem,
        sealing = sealing.public().encode()
    );
    write(&dir.join("party.toml"), &party_entry, false)?;
    Ok(Created {
        config,
        party_entry,
        vkey,
    })
}

/// The `[pkcs11]` table of a configuration whose identity key is on `t`.
fn pkcs11_table(t: &crate::pkcs11::TokenRef) -> String {
    let pin = match &t.pin {
        crate::pkcs11::PinSource::File(f) => format!("pin_file = {:?}", f.display().to_string()),
        crate::pkcs11::PinSource::Env(v) => format!("pin_env = {v:?}"),
    };
    format!(
        "# The identity key on a PKCS#11 token: it signs there and never leaves it. The PIN comes from\n\
         # a file (0600) or an environment variable, never the command line. A rotation's next key: next_key.\n\
         [pkcs11]\nmodule = {:?}\ntoken = {:?}\nkey = {:?}\n{pin}\n\n",
        t.module.display().to_string(),
        t.token,
        t.key
    )
}

/// The most signatures one signed note holds: C2SP signed-note, as Go's
/// `sumdb/note` and the `signed_note` crate read it.
pub const MAX_SIGNERS: usize = 100;

/// Sets up parties `ids` on loopback under `root`, each in `root/<id>`: binds
/// a listener per party on 127.0.0.1 port 0, creates its files, writes an
/// agreement with `norms` signed by every party into each folder, and returns
/// each party's configuration with its bound listener.
pub async fn local_cluster(
    root: &Path,
    ids: &[&str],
    norms: &str,
) -> Result<Vec<(crate::config::Config, tokio::net::TcpListener)>, SetupError> {
    local_cluster_with(root, ids, norms, "").await
}

/// Like [`local_cluster`], the agreement text ending with `extra` (its
/// `[[observer]]` tables, say).
pub async fn local_cluster_with(
    root: &Path,
    ids: &[&str],
    norms: &str,
    extra: &str,
) -> Result<Vec<(crate::config::Config, tokio::net::TcpListener)>, SetupError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SetupError::Io { path, source }
    };
    let mut made = Vec::new();
    for id in ids {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(io(root))?;
        let addr = listener.local_addr().map_err(io(root))?;
        let dir = root.join(id);
        let (origin, name, endpoint) = (
            format!("hotline.example/{id}"),
            format!("{id} national CSIRT"),
            format!("https://{addr}"),
        );
        let created = create(&dir, &Plan::local(id, &origin, &name, addr, &endpoint))?;
        made.push((dir, created, listener));
    }
    let entries: Vec<String> = made.iter().map(|(_, c, _)| c.party_entry.clone()).collect();
    // A signed note holds at most 100 signatures (C2SP signed-note as Go's
    // implementation has it): a larger hotline is signed by a quorum of 100.
    let quorum = (made.len() > MAX_SIGNERS).then_some(MAX_SIGNERS);
    let mut text = agreement_text(None, "hotline on loopback", norms, &entries) + extra;
    if let Some(q) = quorum {
        text = text.replacen("title = ", &format!("quorum = {q}\ntitle = "), 1);
    }
    let mut signed = crate::agreement::SignedAgreement::parse(text.as_bytes()).map_err(|e| SetupError::Io {
        path: root.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    for (dir, _, _) in made.iter().take(MAX_SIGNERS) {
        let key = IdentityKey::load(&dir.join("identity.key"))?;
        signed.sign(&key).map_err(|e| SetupError::Io {
            path: dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    let bytes = signed.to_bytes();
    let mut out = Vec::new();
    for (dir, created, listener) in made {
        let path = dir.join("agreement.toml");
        std::fs::write(&path, &bytes).map_err(io(&path))?;
        let config = crate::config::Config::load(&created.config).map_err(|e| SetupError::Io {
            path: created.config.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        out.push((config, listener));
    }
    Ok(out)
}

/// Moves the node of the configuration at `path` to listen on `listen`
/// (its CLI following), leaving the endpoint the agreement publishes to
/// whatever now answers there (an impairing proxy, in drills and tests),
/// and has it dial its peers from `source` if given.
pub fn move_behind(path: &Path, listen: SocketAddr, source: Option<std::net::IpAddr>) -> Result<(), SetupError> {
    let text = std::fs::read_to_string(path).map_err(|source| SetupError::Io {
        path: path.to_owned(),
        source,
    })?;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("listen = ") {
                format!("listen = \"{listen}\"")
            } else if l.starts_with("node = \"https://") {
                format!("node = \"https://{listen}\"")
            } else if let (Some(ip), true) = (source, l.starts_with("# source_address = ")) {
                format!("source_address = \"{ip}\"")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").map_err(|source| SetupError::Io {
        path: path.to_owned(),
        source,
    })
}
