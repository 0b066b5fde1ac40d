//! hotline: a signed hotline between nations' cyber points of contact.
//!
//! Every module, in reading order.
//!
//! **Formats**, the evidence others verify: the wire types ([`proto`]), time
//! and the node's clock ([`clock`]), keys and the two signature formats
//! ([`keys`], a node's own keys in files or on a PKCS#11 token through
//! [`own_keys`] and [`pkcs11`]; [`note`], [`envelope`]), message bodies sealed to their
//! readers with HPKE ([`seal`]) and opened by them ([`opener`]), the agreement parties sign
//! ([`agreement`]), each party's roster of people ([`roster`]), the rules a
//! message must meet ([`message`]), and notices as STIX 2.1 for CERT tools
//! ([`stix`]).
//!
//! **Storage**: where a node keeps its data, SQLite or PostgreSQL, and the
//! schema ([`store`]), reached through one connection type over both engines
//! ([`db`]); the append-only audit
//! log ([`log`]: its writer, reader, RFC 6962 tree, checkpoints, entries,
//! offline verification and tlog-tiles export); the node's state tables,
//! written inside log transactions ([`state`]).
//!
//! **A node**, following a message:
//! - a peer's call arrives over mutual TLS ([`transport`], [`tls`]), is
//!   admitted by the per-caller limits ([`limits`]) and handled by a thin
//!   service ([`federation`], [`operator`], [`audit`]), each holding the
//!   gate its callers pass ([`gate`]: who calls, within which limits) and
//!   only the handles it serves from; domain errors become gRPC statuses in
//!   one place ([`status`]);
//! - one message, disclosed to an arbiter with its proofs and nothing else,
//!   is checked with public keys only ([`disclosure`]); many parties' public
//!   exports are reconciled into one account, each contradiction with its
//!   signed proof ([`reconcile`]);
//! - the node ([`node`]) checks and logs what peers deliver and receipts it
//!   (`node/inbound.rs`), signs, logs and queues what operators send
//!   (`node/outbound.rs`), and checks and logs the receipts peers sign for
//!   ours (`node/receipts.rs`);
//! - the delivery worker ([`delivery`]) takes queued messages from its own
//!   queue ([`deliveries`], which the node holds and fills) and hands them to one courier per peer
//!   ([`peers`], of the agreement in force: [`in_force`]), which sends them
//!   in batches and hands the receipts that come back to the node; each
//!   call's fate tells the peer's link state ([`links`]);
//! - every checkpoint a peer shows is verified and proven consistent by the
//!   witness ([`witness`]); missed deadlines and scheduled communication
//!   checks are the norms worker's ([`norms`]); both log norm events one way
//!   ([`norm_event`]) and announce them on the event stream ([`events`]);
//!   operations teams scrape what the node counts ([`metrics`]) and are
//!   paged by a command run for each alerted event ([`alerts`]); CERT tools
//!   pull notices as STIX over TAXII 2.1 ([`taxii`]); auditors read a
//!   compliance report drawn from the log ([`report`]);
//! - repeated identical failures are logged once, then summarised ([`repeats`]);
//! - background work is owned by the node's task set ([`tasks`]) and started
//!   and stopped with the server ([`server`]), which reads its configuration
//!   ([`config`]); [`setup`] creates a party's files and demo clusters;
//!   [`impair`] makes bad networks on loopback for the tests and drills.

pub mod proto;

pub mod clock;

pub mod keys;
pub mod own_keys;
pub mod pkcs11;

pub mod note;

pub mod envelope;
pub mod opener;
pub mod seal;

pub mod agreement;

pub mod roster;

pub mod message;

/// The storage seam: one connection type over SQLite and PostgreSQL.
pub mod db;
pub mod store;

pub mod log;

pub mod state;

pub mod tls;

pub mod transport;

pub mod limits;

pub mod status;

pub mod federation;
pub mod gate;

pub mod operator;

pub mod audit;
pub mod disclosure;
pub mod reconcile;

pub mod stix;

pub mod taxii;

pub mod report;

pub mod node;

pub mod deliveries;
pub mod delivery;
pub mod links;

pub mod peers;

pub mod in_force;

pub mod witness;

pub mod norms;

pub mod norm_event;

pub mod events;

pub mod metrics;

pub mod alerts;

pub mod tasks;

pub mod repeats;

pub mod server;

pub mod config;

pub mod setup;

pub mod impair;
