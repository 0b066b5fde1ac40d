//! Per-caller limits on what the network may ask of a node. `rate.rs` holds
//! each caller's request rate (token bucket) and requests in flight; a caller
//! over a limit gets `RESOURCE_EXHAUSTED` and a log line, and nobody else is
//! slowed down. Around them: `connections.rs` caps TCP connections before TLS,
//! `calls.rs` caps each caller's calls before their bodies are read and
//! logs refusals, and `cpu.rs` runs expensive checks off the async workers
//! within a share per caller.

mod calls;
mod connections;
mod cpu;
mod rate;

pub use calls::{CallLimit, CallLimitLayer, OVER_LIMIT_DELAY};
pub use connections::{ConnectionLimit, Counted, LimitedListener};
pub use cpu::{CpuShare, JobFailed};
pub use rate::{Admitted, LimitConfig, Limits};
