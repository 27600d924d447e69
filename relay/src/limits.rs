//! Limits that keep one client from flooding the relay: token buckets for messages and bytes per
//! device and per account, connection caps, quota and timeouts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota};

/// Tunable limits (defaults suit a personal relay; tests shorten the timeouts).
#[derive(Clone, Debug)]
pub struct Limits {
    /// A request head (HTTP, after TLS) must arrive within this, and an idle keep-alive
    /// connection waiting for its next head is closed after it.
    pub head_timeout: Duration,
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
    /// Free bytes the data directory's file system keeps: blobs that would take it below this
    /// are refused ("relay storage full"), leaving room for document changes and the database.
    pub min_free_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            head_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_unauthenticated: 1024,
            max_unauthenticated_per_ip: 64,
            max_connections_per_account: 64,
            messages_per_second: 2000,
            bytes_per_second: 256 * 1024 * 1024,
            quota_bytes: 100 * 1024 * 1024 * 1024,
            outgoing_queue: 1024,
            min_free_bytes: DEFAULT_MIN_FREE_MIB << 20,
        }
    }
}

/// The default free-space reserve, in MiB (`--min-free-mib`).
pub const DEFAULT_MIN_FREE_MIB: u64 = 1024;

/// Bytes a blob piece is charged at least. Uploads are bounded by the byte budget, not the
/// message budget: a folder of 100,000 small files is 100,000 pieces, which 2,000 messages a
/// second held to 50 s; a flood of tiny pieces still costs this much each (64k a second at the
/// default byte rate).
pub const MIN_PIECE_CHARGE: usize = 4096;

/// Shared rate limiters and connection counters.
pub struct Gate {
    /// The limits.
    pub limits: Limits,
    messages: DefaultKeyedRateLimiter<[u8; 32]>,
    bytes: DefaultKeyedRateLimiter<String>,
    unauthenticated: Arc<Mutex<Counts>>,
}

/// Connections not yet authenticated: in total and per address.
type Counts = (usize, HashMap<IpAddr, usize>);

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
            unauthenticated: Arc::new(Mutex::new((0, HashMap::new()))),
            limits,
        }
    }

    /// Waits until `device` may send another message and its account `n` more bytes: a client
    /// over its rate is slowed down, not served faster than its share. A blob piece counts
    /// against the byte budget only, at no less than [`MIN_PIECE_CHARGE`] bytes.
    pub async fn throttle(&self, device: &[u8; 32], user: &str, n: usize, blob_piece: bool) {
        let n = if blob_piece {
            n.max(MIN_PIECE_CHARGE)
        } else {
            self.messages.until_key_ready(device).await;
            n
        };
        let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        if let Some(n) = NonZeroU32::new(n) {
            // A message larger than the burst can never pass; the frame limit keeps it far below.
            let _ = self.bytes.until_key_n_ready(&user.to_owned(), n).await;
        }
    }

    /// Admits a connection (from its accept to the end of its handshake), or refuses it when
    /// the caps are reached.
    pub fn admit(&self, ip: IpAddr) -> Option<Admission> {
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
        Some(Admission {
            counts: self.unauthenticated.clone(),
            ip,
        })
    }
}

/// A connection counted against the caps on unauthenticated connections until dropped.
#[derive(Debug)]
pub struct Admission {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.counts.lock() {
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn gate(messages_per_second: u32, bytes_per_second: u32) -> Gate {
        Gate::new(Limits {
            messages_per_second,
            bytes_per_second,
            ..Limits::default()
        })
    }

    #[tokio::test]
    async fn blob_pieces_are_held_by_bytes_not_by_message_count() {
        // At one message a second, 200 messages would take over three minutes.
        let gate = gate(1, 64 << 20);
        let pieces = async {
            for _ in 0..200 {
                gate.throttle(&[1; 32], "u", 100, true).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), pieces)
            .await
            .expect("200 small pieces within the byte budget pass at once");
    }

    #[tokio::test]
    async fn tiny_pieces_are_charged_the_minimum() {
        // Two minimum charges fill the burst: the third piece waits for the bucket to refill.
        let gate = gate(1000, 2 * MIN_PIECE_CHARGE as u32);
        let started = Instant::now();
        for _ in 0..3 {
            gate.throttle(&[2; 32], "v", 10, true).await;
        }
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(400),
            "three 10-byte pieces passed in {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn other_messages_keep_their_message_budget() {
        let gate = gate(2, 64 << 20);
        let started = Instant::now();
        for _ in 0..3 {
            gate.throttle(&[3; 32], "w", 10, false).await;
        }
        assert!(started.elapsed() >= std::time::Duration::from_millis(400));
    }
}
