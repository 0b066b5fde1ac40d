//! Time on the wire and in files: RFC 3339 instants, protobuf timestamps and
//! the short durations (`"5m"`, `"24h"`) the norms are written in.

use std::time::Duration;

use prost_types::Timestamp;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The current instant, in UTC.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Formats an instant as RFC 3339, for people and JSON output.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// Parses an RFC 3339 instant such as `2026-01-01T00:00:00Z`.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Converts an instant to a protobuf timestamp.
pub fn to_proto(at: OffsetDateTime) -> Timestamp {
    Timestamp {
        seconds: at.unix_timestamp(),
        nanos: at.nanosecond() as i32,
    }
}

/// Converts a protobuf timestamp to an instant; `None` if it is out of range.
pub fn from_proto(ts: &Timestamp) -> Option<OffsetDateTime> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return None;
    }
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// Parses a duration written as a whole number and a unit: `ms`, `s`, `m`,
/// `h` or `d` (for example `"5m"`, `"24h"`, `"500ms"`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().ok()?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms).map(Duration::from_millis)
}

/// Formats a duration in the largest unit up to hours that divides it, as the
/// brief writes norms; the inverse of [`parse_duration`].
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Milliseconds since the Unix epoch, as deadlines are stored.
pub fn now_ms() -> i64 {
    to_ms(now())
}

/// `at` in milliseconds since the Unix epoch, as deadlines are stored.
pub fn to_ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Where a node reads the time and waits for it: the system clock, or a
/// manual clock that tests advance by hand, so deadlines, retries and
/// scheduled checks run without waiting on the wall clock.
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<std::sync::Arc<Manual>>);

/// A manual clock's time, and a signal to its sleepers when it moves.
#[derive(Debug)]
struct Manual {
    now: std::sync::Mutex<OffsetDateTime>,
    moved: tokio::sync::watch::Sender<()>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock that stands at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: OffsetDateTime) -> Self {
        Self(Some(std::sync::Arc::new(Manual {
            now: std::sync::Mutex::new(start),
            moved: tokio::sync::watch::channel(()).0,
        })))
    }

    /// The current instant.
    pub fn now(&self) -> OffsetDateTime {
        match &self.0 {
            None => now(),
            Some(m) => *m.now.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Milliseconds since the Unix epoch, as deadlines are stored.
    pub fn now_ms(&self) -> i64 {
        to_ms(self.now())
    }

    /// Waits until `d` has passed on this clock.
    pub async fn sleep(&self, d: Duration) {
        let Some(m) = &self.0 else {
            return tokio::time::sleep(d).await;
        };
        let until = self.now() + d;
        let mut moved = m.moved.subscribe();
        while self.now() < until {
            if moved.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits until the instant `ms` (ms since the epoch) on this clock.
    pub async fn sleep_until_ms(&self, ms: i64) {
        let wait = ms - self.now_ms();
        if wait > 0 {
            self.sleep(Duration::from_millis(wait as u64)).await;
        }
    }

    /// Moves a manual clock forward by `d` and wakes whoever waits on it; the
    /// system clock cannot be moved, so this does nothing there.
    pub fn advance(&self, d: Duration) {
        if let Some(m) = &self.0 {
            *m.now.lock().unwrap_or_else(|e| e.into_inner()) += d;
            m.moved.send_replace(());
        }
    }
}

/// Converts ms since the epoch, as deadlines are stored, to a protobuf timestamp.
pub fn ms_to_proto(ms: i64) -> Option<Timestamp> {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .map(to_proto)
}
