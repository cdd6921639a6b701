//! Per-source-address rate limiting (token buckets), for enrollment
//! attempts: a guessing or flooding client is slowed down without touching
//! anyone else.
//!
//! Memory is bounded: at most [`MAX_SOURCES`] addresses are tracked; when
//! full, buckets that have refilled completely are forgotten first, and if
//! none has, the new address shares the refusal (fails closed).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at once.
const MAX_SOURCES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    /// When `tokens` was last brought up to date.
    refilled_at: Instant,
}

#[derive(Debug)]
pub struct SourceRateLimiter {
    burst: u32,
    refill_every: Duration,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl SourceRateLimiter {
    /// Each address may make `burst` attempts at once, then one more per `refill_every`.
    pub fn new(burst: u32, refill_every: Duration) -> Self {
        Self {
            burst: burst.max(1),
            refill_every: refill_every.max(Duration::from_millis(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt from `source`'s bucket; false when it is empty.
    pub fn allow(&self, source: IpAddr, now: Instant) -> bool {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !buckets.contains_key(&source) && buckets.len() >= MAX_SOURCES {
            let full_after = self.refill_every * self.burst;
            buckets
                .retain(|_, bucket| now.saturating_duration_since(bucket.refilled_at) < full_after);
            if buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let bucket = buckets.entry(source).or_insert(Bucket {
            tokens: self.burst,
            refilled_at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled_at);
        let earned = (elapsed.as_nanos() / self.refill_every.as_nanos()) as u64;
        if earned > 0 {
            bucket.tokens = (u64::from(bucket.tokens) + earned).min(u64::from(self.burst)) as u32;
            bucket.refilled_at += self.refill_every * earned.min(u64::from(u32::MAX)) as u32;
            if bucket.tokens == self.burst {
                bucket.refilled_at = now;
            }
        }
        if bucket.tokens == 0 {
            return false;
        }
        bucket.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_period_per_address() {
        let limiter = SourceRateLimiter::new(3, Duration::from_secs(10));
        let start = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!((0..3).all(|_| limiter.allow(a, start)));
        assert!(!limiter.allow(a, start));
        assert!(limiter.allow(b, start), "other addresses are not affected");
        assert!(!limiter.allow(a, start + Duration::from_secs(9)));
        assert!(limiter.allow(a, start + Duration::from_secs(10)));
        assert!(!limiter.allow(a, start + Duration::from_secs(11)));
        let later = start + Duration::from_secs(1000);
        assert!(
            (0..3).all(|_| limiter.allow(a, later)),
            "refills to the burst only"
        );
        assert!(!limiter.allow(a, later));
    }
}
