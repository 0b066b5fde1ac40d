//! Mutual TLS: the certificates a party makes for itself, and how a peer's
//! client certificate is mapped to a party of the agreement or to a local
//! operator or auditor.
//!
//! Each party runs its own CA (published in the agreement as `tls_ca`). The
//! CA issues the node's certificate, used both to serve and to call peers,
//! and its operators' and auditors' client certificates.

use std::collections::HashMap;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use sha2::{Digest, Sha256};

use crate::agreement::{Agreement, TlsIdentity};

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen failed to generate or sign.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM input holds no usable certificate.
    #[error("{what}: {reason}")]
    Pem {
        /// What is wrong.
        what: String,
        /// Why it is wrong.
        reason: String,
    },
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug, PartialEq)]
pub struct CertKey {
    /// The certificate, PEM.
    pub cert: String,
    /// The PKCS#8 private key, PEM; keep it secret.
    pub key: String,
}

impl CertKey {
    /// The certificate chain and key decoded, for a TLS configuration that
    /// presents them; `what` names the certificate in an error.
    pub fn decoded(
        &self,
        what: &str,
    ) -> Result<(Vec<CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>), TlsError> {
        use rustls::pki_types::pem::PemObject;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key.as_bytes()).map_err(|e| TlsError::Pem {
            what: format!("{what} key"),
            reason: e.to_string(),
        })?;
        Ok((certs_from_pem(what, &self.cert)?, key))
    }
}

fn ca_params(party: &str) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("hotline CA {party}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Makes a fresh CA for `party`.
pub fn new_ca(party: &str) -> Result<CertKey, TlsError> {
    let key = KeyPair::generate()?;
    let cert = ca_params(party)?.self_signed(&key)?;
    Ok(CertKey {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// What a certificate is for.
#[derive(Clone, Copy, Debug)]
pub enum Usage {
    /// A node: serves TLS and calls peers.
    Node,
    /// A person or tool calling its own node.
    Client,
}

/// Issues a certificate named `common_name` from `party`'s CA; a node
/// certificate also covers `hosts` (DNS names or IP addresses).
pub fn issue(
    party: &str,
    ca: &CertKey,
    common_name: &str,
    hosts: &[String],
    usage: Usage,
) -> Result<CertKey, TlsError> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::new(ca_params(party)?, ca_key);
    let mut params = CertificateParams::new(match usage {
        Usage::Node => hosts.to_vec(),
        Usage::Client => Vec::new(),
    })?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    // RFC 5280 wants it, and strict verifiers (OpenSSL's X509_STRICT, as Python's urllib3 uses) refuse a leaf without it.
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match usage {
        Usage::Node => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertKey {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Checks that `node_pem` (leaf first) is a node certificate of the CA
/// `ca_pem` for `endpoint`: it chains to the CA and is valid for server
/// authentication at the endpoint's host, as peers will check it.
pub fn check_node_certificate(ca_pem: &str, node_pem: &str, endpoint: &str) -> Result<(), TlsError> {
    let bad = |reason: String| TlsError::Pem {
        what: "node certificate".into(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(roots_of("CA certificate", ca_pem)?, provider)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let host = endpoint_host(endpoint).ok_or_else(|| bad(format!("{endpoint:?} names no host")))?;
    let chain = certs_from_pem("node certificate", node_pem)?;
    let (leaf, intermediates) = chain.split_first().ok_or_else(|| bad("no certificate".into()))?;
    verifier
        .verify_server_cert(leaf, intermediates, &host, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| bad(format!("not a node certificate of this CA for {host:?}: {e}")))
}

/// Decodes every certificate in a PEM text.
pub fn certs_from_pem(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: what.to_owned(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// SHA-256 of a certificate's DER: how the agreement or a config pins one.
pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 32] {
    Sha256::digest(cert.as_ref()).into()
}

/// What a local client certificate may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Duty officers: send, respond, watch, check.
    Operator,
    /// Read-only access to the audit log.
    Auditor,
}

/// Who is calling, as proven by the TLS client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A party of the agreement (a peer node).
    Party(String),
    /// A certificate of a party's CA that is not its node's (an operator's
    /// or auditor's, say): it may not act as the party's node.
    PartyNonNode(String),
    /// An observer the agreement names: it may read the public tier of the
    /// log over the Audit service, and nothing else.
    Observer(String),
    /// A local operator or auditor, by name.
    Local {
        /// The name the config gives the certificate.
        name: String,
        /// What it may do.
        role: Role,
        /// The SHA-256 of its certificate, which the party's roster names.
        fingerprint: [u8; 32],
        /// The most restricted TLP it may read (an operator: RED).
        clearance: crate::proto::Tlp,
    },
}

/// A local certificate the configuration names: who holds it, what it may
/// do, and up to which TLP it may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalCert {
    /// The name the configuration gives it (what its limits count by).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The most restricted TLP it may read: an operator RED (it reads what
    /// its party sent and received), an auditor its `max_tlp`.
    pub clearance: crate::proto::Tlp,
}

enum PartyCheck {
    /// Issued by the party's CA, and a node certificate: valid for server
    /// authentication at the host of the party's endpoint.
    Ca {
        client: Arc<dyn ClientCertVerifier>,
        node: Arc<dyn ServerCertVerifier>,
        host: ServerName<'static>,
    },
    Pinned([u8; 32]),
    /// Issued by an observer's CA.
    Observer(Arc<dyn ClientCertVerifier>),
}

/// Maps a verified client certificate to a caller: local certificates by
/// fingerprint, peers by the CA (or pinned certificate) the agreement lists.
pub struct Identifier {
    locals: HashMap<[u8; 32], LocalCert>,
    /// How each party of the agreement in force is recognised; replaced on adoption.
    parties: std::sync::RwLock<Arc<Vec<(String, PartyCheck)>>>,
    /// Peers already identified, by certificate fingerprint: chain checks cost an ECDSA verification.
    known: std::sync::Mutex<HashMap<[u8; 32], Caller>>,
}

impl Identifier {
    /// Builds the mapping from the agreement and the local certificates.
    pub fn new(agreement: &Agreement, locals: HashMap<[u8; 32], LocalCert>) -> Result<Self, TlsError> {
        Ok(Self {
            locals,
            parties: std::sync::RwLock::new(Arc::new(party_checks(agreement)?)),
            known: Default::default(),
        })
    }

    /// Recognises the parties of a newly adopted agreement from now on: a
    /// party no longer listed is no one, and nobody is remembered from before.
    pub fn set_agreement(&self, agreement: &Agreement) -> Result<(), TlsError> {
        let checks = Arc::new(party_checks(agreement)?);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        *self.parties.write().unwrap_or_else(|e| e.into_inner()) = checks;
        known.clear();
        Ok(())
    }

    /// Identifies the holder of `chain` (leaf first), or `None` if it is no one we know.
    pub fn identify(&self, chain: &[CertificateDer<'static>]) -> Option<Caller> {
        let (leaf, intermediates) = chain.split_first()?;
        let fp = fingerprint(leaf);
        if let Some(local) = self.locals.get(&fp) {
            return Some(Caller::Local {
                name: local.name.clone(),
                role: local.role,
                fingerprint: fp,
                clearance: local.clearance,
            });
        }
        if let Some(caller) = self.known.lock().ok().and_then(|k| k.get(&fp).cloned()) {
            return Some(caller);
        }
        let now = UnixTime::now();
        let parties = self.parties.read().unwrap_or_else(|e| e.into_inner()).clone();
        let caller = parties.iter().find_map(|(party, check)| match check {
            PartyCheck::Pinned(pin) => (*pin == fp).then(|| Caller::Party(party.clone())),
            PartyCheck::Observer(client) => client
                .verify_client_cert(leaf, intermediates, now)
                .ok()
                .map(|_| Caller::Observer(party.clone())),
            PartyCheck::Ca { client, node, host } => {
                client.verify_client_cert(leaf, intermediates, now).ok()?;
                let is_node = node.verify_server_cert(leaf, intermediates, host, &[], now).is_ok();
                Some(match is_node {
                    true => Caller::Party(party.clone()),
                    false => Caller::PartyNonNode(party.clone()),
                })
            }
        })?;
        // Remembered only if no new agreement came in meanwhile (set_agreement holds this lock).
        if let Ok(mut known) = self.known.lock()
            && Arc::ptr_eq(&parties, &self.parties.read().unwrap_or_else(|e| e.into_inner()))
        {
            known.insert(fp, caller.clone());
        }
        Some(caller)
    }
}

/// The roots of a CA certificate (PEM) that `what` names, such as "party PER tls_ca".
pub fn roots_of(what: &str, pem: &str) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs_from_pem(what, pem)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// How each party's certificates are recognised, from its `tls_ca` or pin,
/// and each observer's, from its `tls_ca`.
fn party_checks(agreement: &Agreement) -> Result<Vec<(String, PartyCheck)>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut parties = Vec::new();
    for o in &agreement.observers {
        let what = format!("observer {} tls_ca", o.id);
        let client = WebPkiClientVerifier::builder_with_provider(roots_of(&what, &o.tls_ca)?, provider.clone())
            .build()
            .map_err(|e| TlsError::Pem {
                what,
                reason: e.to_string(),
            })?;
        parties.push((o.id.clone(), PartyCheck::Observer(client)));
    }
    for p in &agreement.parties {
        let check = match &p.tls {
            TlsIdentity::CertSha256(fp) => PartyCheck::Pinned(*fp),
            TlsIdentity::Ca(pem) => {
                let bad = |reason: String| TlsError::Pem {
                    what: format!("party {} tls_ca", p.id),
                    reason,
                };
                let roots = roots_of(&format!("party {} tls_ca", p.id), pem)?;
                let client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                let node = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                let host = endpoint_host(&p.endpoint).ok_or_else(|| TlsError::Pem {
                    what: format!("party {} endpoint", p.id),
                    reason: format!("{:?} names no host a certificate can be checked for", p.endpoint),
                })?;
                PartyCheck::Ca { client, node, host }
            }
        };
        parties.push((p.id.clone(), check));
    }
    Ok(parties)
}

/// The host of an `https://host:port` endpoint, as a certificate names it.
fn endpoint_host(endpoint: &str) -> Option<ServerName<'static>> {
    let rest = endpoint.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    ServerName::try_from(host.to_owned()).ok()
}
