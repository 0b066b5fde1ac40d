//! A failure repeated many times is logged once per interval, with a count
//! of those held back, not once each.

use std::time::{Duration, Instant};

use hotline::repeats::Repeats;

#[test]
fn an_identical_failure_is_logged_once_per_interval_with_the_count_held_back() {
    let repeats = Repeats::new(Duration::from_secs(60));
    let t0 = Instant::now();
    assert_eq!(repeats.check("CHL: Unavailable", t0), Some(0), "the first is logged");
    for i in 1..=500 {
        assert_eq!(
            repeats.check("CHL: Unavailable", t0 + Duration::from_millis(i * 100)),
            None
        );
    }
    assert_eq!(
        repeats.check("ARG: Unavailable", t0),
        Some(0),
        "another kind is logged at once"
    );
    assert_eq!(
        repeats.check("CHL: Unavailable", t0 + Duration::from_secs(61)),
        Some(500),
        "a minute later: one line saying how many were held back"
    );
}
