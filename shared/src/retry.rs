//! The one retry policy: exponential backoff with jitter (`backon`) for a call that failed for a
//! passing reason. The jitter spreads out the instances that failed together, so they do not
//! come back together and fail again.

use std::time::Duration;

use backon::ExponentialBuilder;

/// Pauses doubling from `first` to `ceiling`, each stretched by a random 0–100 %, with no limit
/// on the number of tries: each caller bounds its own (tries, total pause or a deadline).
pub fn backoff(first: Duration, ceiling: Duration) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_factor(2.0)
        .with_min_delay(first)
        .with_max_delay(ceiling)
        .with_jitter()
        .without_max_times()
}

/// For a call made while a request waits: the first pause about one BigQuery metadata call long
/// (250 ms), the longest 8 s, so that several tries fit in the functions' 60 s request deadline.
pub fn within_request() -> ExponentialBuilder {
    backoff(Duration::from_millis(250), Duration::from_secs(8))
}
