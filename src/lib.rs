//! hotline: a signed hotline between nations' cyber points of contact.
#![forbid(unsafe_code)]

pub mod proto;
