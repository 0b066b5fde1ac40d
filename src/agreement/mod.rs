//! The agreement: the parties, their keys and TLS identities, and the norms
//! they accepted, as a TOML document stored as a signed note.
//!
//! A node runs only on an agreement signed by every party it lists (or by the
//! quorum it names). Validation names the exact field or party at fault.
//!
//! The schema is in `schema.rs`, the norms in `norms.rs`, the signed form and
//! its quorum and the chain rule (version n+1 names the hash of version n and
//! is signed by the quorum of version n and by every party it adds) in
//! `signed.rs`, what changes from one version to the next in `diff.rs`, and
//! refusals in `error.rs`.

mod diff;
mod error;
mod norms;
mod schema;
mod signed;

pub use diff::diff;
pub use error::AgreementError;
pub use norms::{MAX_NOTICE_BYTES_LIMIT, Norms};
pub use schema::{Agreement, EncryptionKey, Observer, Party, TlsIdentity, is_valid_party_id};
pub use signed::{SignedAgreement, verify_chain};
