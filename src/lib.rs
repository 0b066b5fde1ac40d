//! hotline: a signed hotline between nations' cyber points of contact.
//!
//! Modules in reading order: the wire types ([`proto`]), time ([`clock`]),
//! keys and the two signature formats ([`keys`], [`note`], [`envelope`]), the
//! agreement parties sign ([`agreement`]) and the rules messages must meet
//! ([`message`]), then storage ([`store`]) and the audit log ([`log`]).
#![forbid(unsafe_code)]

pub mod proto;

pub mod clock;

pub mod keys;

pub mod note;

pub mod envelope;

pub mod agreement;

pub mod message;

pub mod store;

pub mod log;

pub mod tls;

pub mod status;

pub mod transport;

pub mod audit;

pub mod config;

pub mod setup;

pub mod state;

pub mod events;

pub mod peers;

pub mod tasks;

pub mod norm_event;

pub mod node;

pub mod witness;

pub mod federation;

pub mod operator;

pub mod delivery;

pub mod norms;

pub mod server;

pub mod limits;
