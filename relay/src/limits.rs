//! Limits that keep one client from flooding the relay: token buckets for messages and bytes per
//! device and per account, connection caps, quota and timeouts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota};

/// Tunable limits (defaults suit a personal relay; tests shorten the timeouts).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Upgrade plus handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A connection silent for this long is closed (agents ping every 20 s).
    pub idle_timeout: Duration,
    /// Connections still in their handshake, in total.
    pub max_unauthenticated: usize,
    /// Connections still in their handshake, per IP.
    pub max_unauthenticated_per_ip: usize,
    /// Connections per account.
    pub max_connections_per_account: usize,
    /// Messages per second per device (burst: the same).
    pub messages_per_second: u32,
    /// Bytes per second per account (burst: the same).
    pub bytes_per_second: u32,
    /// Stored bytes per account.
    pub quota_bytes: u64,
    /// Outgoing messages queued per connection before a non-reading client is dropped.
    pub outgoing_queue: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_unauthenticated: 1024,
            max_unauthenticated_per_ip: 64,
            max_connections_per_account: 64,
            messages_per_second: 2000,
            bytes_per_second: 256 * 1024 * 1024,
            quota_bytes: 100 * 1024 * 1024 * 1024,
            outgoing_queue: 1024,
        }
    }
}

/// Shared rate limiters and connection counters.
pub struct Gate {
    /// The limits.
    pub limits: Limits,
    messages: DefaultKeyedRateLimiter<[u8; 32]>,
    bytes: DefaultKeyedRateLimiter<String>,
    unauthenticated: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Gate {
    /// Limiters for `limits`.
    pub fn new(limits: Limits) -> Gate {
        let per_second = |n: u32| NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        Gate {
            messages: DefaultKeyedRateLimiter::keyed(Quota::per_second(per_second(
                limits.messages_per_second,
            ))),
            bytes: DefaultKeyedRateLimiter::keyed(Quota::per_second(per_second(
                limits.bytes_per_second,
            ))),
            unauthenticated: Mutex::new((0, HashMap::new())),
            limits,
        }
    }

    /// Waits until `device` may send another message and its account `n` more bytes: a client
    /// over its rate is slowed down, not served faster than its share.
    pub async fn throttle(&self, device: &[u8; 32], user: &str, n: usize) {
        self.messages.until_key_ready(device).await;
        let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        if let Some(n) = NonZeroU32::new(n) {
            // A message larger than the burst can never pass; the frame limit keeps it far below.
            let _ = self.bytes.until_key_n_ready(&user.to_owned(), n).await;
        }
    }

    /// Admits a connection into its handshake, or refuses it when the caps are reached.
    pub fn admit(&self, ip: IpAddr) -> Option<Admission<'_>> {
        let mut guard = self.unauthenticated.lock().ok()?;
        let (total, per_ip) = &mut *guard;
        let mine = per_ip.entry(ip).or_insert(0);
        if *total >= self.limits.max_unauthenticated
            || *mine >= self.limits.max_unauthenticated_per_ip
        {
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(Admission { gate: self, ip })
    }
}

/// A connection counted against the handshake caps until dropped.
pub struct Admission<'a> {
    gate: &'a Gate,
    ip: IpAddr,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.gate.unauthenticated.lock() {
            let (total, per_ip) = &mut *guard;
            *total = total.saturating_sub(1);
            if let Some(count) = per_ip.get_mut(&self.ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
    }
}
