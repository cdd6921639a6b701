//! Per-source-address rate limiting: a token bucket per IP address.
//!
//! Used for failed API logins and for enrollment attempts. Memory is bounded: at most
//! [`MAX_SOURCES`] addresses are tracked; buckets that have refilled are
//! forgotten first, and when every slot holds a bucket still draining, a
//! new address is refused until one refills (a flood from many addresses
//! is throttled as a whole rather than growing the map).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at once.
const MAX_SOURCES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Attempts left now.
    tokens: u32,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

#[derive(Debug)]
pub struct SourceRateLimiter {
    burst: u32,
    refill_every: Duration,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl SourceRateLimiter {
    /// `burst` attempts at once per address, then one more per `refill_every`.
    pub fn new(burst: u32, refill_every: Duration) -> Self {
        Self {
            burst: burst.max(1),
            refill_every: refill_every.max(Duration::from_millis(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt from `source`'s bucket; false if it is empty.
    pub fn allow(&self, source: IpAddr, now: Instant) -> bool {
        let source = bucket_key(source);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !buckets.contains_key(&source) && buckets.len() >= MAX_SOURCES {
            buckets.retain(|_, bucket| self.refilled(*bucket, now).tokens < self.burst);
            if buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let bucket = buckets.entry(source).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        *bucket = self.refilled(*bucket, now);
        if bucket.tokens == 0 {
            return false;
        }
        bucket.tokens -= 1;
        true
    }

    /// `bucket` with the attempts earned since it was updated.
    fn refilled(&self, bucket: Bucket, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(bucket.updated);
        let earned = elapsed.as_nanos() / self.refill_every.as_nanos();
        if earned == 0 {
            return bucket;
        }
        let tokens = (u128::from(bucket.tokens) + earned).min(u128::from(self.burst)) as u32;
        let updated = if tokens == self.burst {
            now
        } else {
            // Keep the fraction of a period already earned.
            bucket.updated + self.refill_every * (earned as u32)
        };
        Bucket { tokens, updated }
    }
}

/// The address a bucket belongs to: one host has a whole IPv6 /64 to hand
/// out, so an IPv6 address counts by its /64 (else one host could take every
/// slot of the map and lock newcomers out); IPv4 addresses count singly.
pub(crate) fn bucket_key(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(_) => source,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_counts_once_for_its_whole_64() {
        let limiter = SourceRateLimiter::new(2, Duration::from_secs(60));
        let now = Instant::now();
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.allow(first, now));
        assert!(limiter.allow(same_64, now));
        assert!(!limiter.allow(first, now), "the /64 shares one bucket");
        assert!(limiter.allow(other_64, now));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limiter.allow(mapped, now));
        assert!(limiter.allow(v4, now));
        assert!(
            !limiter.allow(v4, now),
            "a mapped IPv4 address is that address"
        );
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_burst_is_allowed_then_one_attempt_per_period_per_address() {
        let limiter = SourceRateLimiter::new(3, Duration::from_secs(10));
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.allow(ip(1), start));
        }
        assert!(!limiter.allow(ip(1), start), "burst used up");
        assert!(limiter.allow(ip(2), start), "other addresses are separate");
        assert!(!limiter.allow(ip(1), start + Duration::from_secs(9)));
        assert!(limiter.allow(ip(1), start + Duration::from_secs(10)));
        assert!(!limiter.allow(ip(1), start + Duration::from_secs(11)));
        // A long pause refills up to the burst, no further.
        let later = start + Duration::from_secs(1000);
        for _ in 0..3 {
            assert!(limiter.allow(ip(1), later));
        }
        assert!(!limiter.allow(ip(1), later));
    }

    #[test]
    fn the_map_is_bounded_and_forgets_refilled_addresses_first() {
        let limiter = SourceRateLimiter::new(1, Duration::from_secs(60));
        let start = Instant::now();
        for n in 0..MAX_SOURCES as u32 {
            assert!(limiter.allow(IpAddr::from(n.to_be_bytes()), start));
        }
        let newcomer = IpAddr::from([203, 0, 113, 1]);
        assert!(
            !limiter.allow(newcomer, start),
            "full of draining buckets: refused"
        );
        let later = start + Duration::from_secs(60);
        assert!(limiter.allow(newcomer, later), "refilled buckets make room");
        assert!(limiter.buckets.lock().unwrap().len() <= MAX_SOURCES);
    }
}
