//! Protection under load: per-token request and byte rates (429 with `Retry-After`), and
//! bounds on requests and queries in flight (503 with `Retry-After`).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Settings of the limits.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Requests per second per token (0: no limit).
    pub requests_per_second: u32,
    /// Bytes of request bodies per second per token (0: no limit).
    pub bytes_per_second: u64,
    /// Requests being served at once.
    pub max_concurrent_requests: usize,
    /// Queries running at once.
    pub max_concurrent_queries: usize,
    /// The largest body a request may carry (a burst of the byte rate fits one).
    pub max_body_bytes: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            requests_per_second: 0,
            bytes_per_second: 0,
            max_concurrent_requests: 1024,
            max_concurrent_queries: 8,
            max_body_bytes: 16 << 20,
        }
    }
}

/// The limiters of a running server.
#[derive(Debug, Clone)]
pub struct Limits {
    requests: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    /// Counts KiB.
    bytes: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    in_flight: Arc<Semaphore>,
    queries: Arc<Semaphore>,
    pub settings: LimitSettings,
}

/// A limit was hit; retry after this long.
#[derive(Debug, Clone, Copy)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for the `Retry-After` header (at least 1).
    pub fn seconds(self) -> u64 {
        self.0.as_secs_f64().ceil().max(1.0) as u64
    }
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Self {
        let requests = NonZeroU32::new(settings.requests_per_second)
            .map(|rate| Arc::new(RateLimiter::keyed(Quota::per_second(rate))));
        let bytes = NonZeroU32::new(kib(settings.bytes_per_second)).map(|rate| {
            // The burst holds at least one largest body, so that no request is impossible.
            let burst = NonZeroU32::new(kib(settings.max_body_bytes as u64).max(rate.get())).expect("non-zero");
            Arc::new(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
        });
        Self {
            requests,
            bytes,
            in_flight: Arc::new(Semaphore::new(settings.max_concurrent_requests.max(1))),
            queries: Arc::new(Semaphore::new(settings.max_concurrent_queries.max(1))),
            settings,
        }
    }

    /// One more request of `token`.
    pub fn check_request(&self, token: &str) -> Result<(), RetryAfter> {
        let Some(limiter) = &self.requests else { return Ok(()) };
        limiter
            .check_key(&token.to_owned())
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(DefaultClock::default().now())))
    }

    /// `len` more body bytes of `token`.
    pub fn check_bytes(&self, token: &str, len: usize) -> Result<(), RetryAfter> {
        let Some(limiter) = &self.bytes else { return Ok(()) };
        let Some(n) = NonZeroU32::new(kib(len as u64).max(1)) else { return Ok(()) };
        match limiter.check_key_n(&token.to_owned(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(RetryAfter(not_until.wait_time_from(DefaultClock::default().now()))),
            // Larger than the burst: only possible above max_body_bytes, which is refused anyway.
            Err(_) => Ok(()),
        }
    }

    /// A slot for a request in flight, if one is free.
    pub fn request_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }

    /// A slot for a running query, if one is free.
    pub fn query_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.queries.clone().try_acquire_owned().ok()
    }
}

fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_rate_per_token() {
        let l = Limits::new(LimitSettings { requests_per_second: 2, ..LimitSettings::default() });
        assert!(l.check_request("a").is_ok());
        assert!(l.check_request("a").is_ok());
        let retry = l.check_request("a").unwrap_err();
        assert!(retry.seconds() >= 1);
        assert!(l.check_request("b").is_ok(), "another token has its own budget");
    }

    #[test]
    fn byte_rate_with_a_burst_of_one_largest_body() {
        let l = Limits::new(LimitSettings {
            bytes_per_second: 1024 * 1024,
            max_body_bytes: 4 << 20,
            ..LimitSettings::default()
        });
        assert!(l.check_bytes("a", 4 << 20).is_ok());
        assert!(l.check_bytes("a", 1 << 20).is_err());
    }

    #[test]
    fn slots_run_out_and_come_back() {
        let l = Limits::new(LimitSettings { max_concurrent_queries: 1, ..LimitSettings::default() });
        let slot = l.query_slot().unwrap();
        assert!(l.query_slot().is_none());
        drop(slot);
        assert!(l.query_slot().is_some());
    }
}
