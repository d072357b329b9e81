//! Token buckets for per-client and per-listener rate limits.
//!
//! Per-client buckets live in a fixed table indexed by a hash of the client
//! address, updated with compare-and-swap, so the hot path takes no lock and
//! memory does not grow with the number of clients. Two clients that hash
//! to the same slot share a bucket, which can only make the limit stricter.
//!
//! A limiter is cheap to clone, and clones share their buckets: listeners
//! given clones of one limiter are limited together.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const CLIENT_SLOTS: usize = 1 << 16;
/// Tokens are kept in thousandths so slow rates refill smoothly.
const SCALE: u64 = 1_000;

/// One token bucket packed into a u64: milli-tokens (high 32 bits) and the
/// millisecond of the last refill (low 32 bits).
struct Bucket(AtomicU64);

impl Bucket {
    fn new() -> Self {
        Self(AtomicU64::new(u64::MAX))
    }

    fn take(&self, now_ms: u32, rate: u32, burst: u32) -> bool {
        let capacity = u64::from(burst) * SCALE;
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let (tokens, last) =
                if current == u64::MAX { (capacity, now_ms) } else { ((current >> 32).min(capacity), current as u32) };
            let elapsed = u64::from(now_ms.wrapping_sub(last));
            let refilled = (tokens + elapsed * u64::from(rate)).min(capacity);
            let (allowed, left) = if refilled >= SCALE { (true, refilled - SCALE) } else { (false, refilled) };
            let next = (left << 32) | u64::from(now_ms);
            match self.0.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return allowed,
                Err(actual) => current = actual,
            }
        }
    }
}

/// A rate limit shared by every worker (and by every clone).
#[derive(Clone)]
pub(crate) struct RateLimiter {
    started: Instant,
    rate: u32,
    burst: u32,
    /// Clients are keyed by their network of these lengths (IPv4, IPv6).
    prefixes: (u8, u8),
    buckets: Arc<[Bucket]>,
}

impl RateLimiter {
    /// `rate` packets per second per key, with bursts up to `burst`.
    pub(crate) fn per_client(rate: u32, burst: u32) -> Self {
        // Clients of one IPv6 /64 count as one, as they usually are one host or network.
        Self::with_slots(rate, burst, CLIENT_SLOTS).prefixes(32, 64)
    }

    /// `rate` packets per second per client network (an IPv4 /`v4` or
    /// IPv6 /`v6`), with bursts up to `burst`: response rate limiting
    /// counts a network, since spoofed floods vary the low bits.
    pub(crate) fn per_network(rate: u32, burst: u32, v4: u8, v6: u8) -> Self {
        Self::with_slots(rate, burst, CLIENT_SLOTS).prefixes(v4.min(32), v6.min(128))
    }

    fn prefixes(mut self, v4: u8, v6: u8) -> Self {
        self.prefixes = (v4, v6);
        self
    }

    /// A single bucket (a listener-wide cap).
    pub(crate) fn single(rate: u32) -> Self {
        Self::with_slots(rate, rate.max(1), 1)
    }

    fn with_slots(rate: u32, burst: u32, slots: usize) -> Self {
        Self {
            started: Instant::now(),
            rate: rate.max(1),
            burst: burst.max(1),
            prefixes: (32, 128),
            buckets: (0..slots).map(|_| Bucket::new()).collect(),
        }
    }

    fn now_ms(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.started).as_millis() as u32
    }

    /// Whether a packet from `client` is within the limit.
    pub(crate) fn allow(&self, client: IpAddr, now: Instant) -> bool {
        let slot = slot_for(client, self.prefixes, self.buckets.len());
        self.buckets.get(slot).is_none_or(|bucket| bucket.take(self.now_ms(now), self.rate, self.burst))
    }

    /// Whether one more packet is within a single-bucket limit.
    pub(crate) fn allow_one(&self, now: Instant) -> bool {
        self.buckets.first().is_none_or(|bucket| bucket.take(self.now_ms(now), self.rate, self.burst))
    }
}

fn slot_for(client: IpAddr, (v4, v6): (u8, u8), slots: usize) -> usize {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut feed = |bytes: &[u8]| {
        for &byte in bytes {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    match client {
        IpAddr::V4(address) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(v4)).unwrap_or(0);
            feed(&(u32::from(address) & mask).to_be_bytes());
        }
        IpAddr::V6(address) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(v6)).unwrap_or(0);
            feed(&(u128::from(address) & mask).to_be_bytes());
        }
    }
    (hash as usize) % slots.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_over_the_rate_are_cut_and_refill_over_time() {
        let limiter = RateLimiter::per_client(1024, 1024);
        let client: IpAddr = "192.0.2.1".parse().expect("addr");
        let other: IpAddr = "192.0.2.2".parse().expect("addr");
        let now = Instant::now();
        let allowed = (0..2000).filter(|_| limiter.allow(client, now)).count();
        assert_eq!(allowed, 1024);
        assert!(limiter.allow(other, now), "another client has its own bucket");
        let later = now + Duration::from_millis(500);
        let refilled = (0..2000).filter(|_| limiter.allow(client, later)).count();
        assert!((500..=530).contains(&refilled), "{refilled}");
    }

    #[test]
    fn a_network_limit_counts_every_address_of_the_network_together() {
        let limiter = RateLimiter::per_network(10, 10, 24, 56);
        let now = Instant::now();
        let allowed = (0..=255u8).filter(|host| limiter.allow(IpAddr::from([198, 51, 100, *host]), now)).count();
        assert_eq!(allowed, 10, "one bucket for 198.51.100.0/24");
        assert!(limiter.allow("198.51.101.1".parse().expect("addr"), now), "the next /24 has its own");
        let v6 = |text: &str| text.parse::<IpAddr>().expect("addr");
        let allowed = (0..50).filter(|i| limiter.allow(v6(&format!("2001:db8:0:{i:x}::1")), now)).count();
        assert_eq!(allowed, 10, "2001:db8:0:0::/56 holds the first 256 /64s");
        assert!(limiter.allow(v6("2001:db8:0:100::1"), now), "the next /56 has its own");
    }

    #[test]
    fn a_single_bucket_caps_a_listener() {
        let limiter = RateLimiter::single(10);
        let now = Instant::now();
        assert_eq!((0..100).filter(|_| limiter.allow_one(now)).count(), 10);
    }

    #[test]
    fn clones_share_their_buckets() {
        let limiter = RateLimiter::single(10);
        let clone = limiter.clone();
        let now = Instant::now();
        assert_eq!((0..6).filter(|_| limiter.allow_one(now)).count(), 6);
        assert_eq!((0..10).filter(|_| clone.allow_one(now)).count(), 4, "the clone takes what is left");
        assert!(!limiter.allow_one(now));
    }
}
