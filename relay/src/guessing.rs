//! Slows down whoever guesses one-time codes, without ever invalidating a real code.
//!
//! Wrong codes are counted per source address (an IPv6 address by its /64) and per user name
//! (whether or not the user exists, so a refusal tells nothing about it). Each count earns an
//! exponential back-off after a few free failures:
//!
//! - an address: [`ADDRESS_FREE`] free failures, then a wait of 1 s doubling up to
//!   [`ADDRESS_MAX_WAIT`] (5 min) before its next code is even looked at: 12 guesses an hour at
//!   most once it is ramped up, whatever user it aims at;
//! - a user: [`USER_FREE`] free failures, then 1 s doubling up to [`USER_MAX_WAIT`] (10 s).
//!   The user's back-off holds back only addresses that have failed [`USER_HOLDS_AFTER`] times
//!   or more (for any user): a clean address (the owner at home, even after one typo) is looked
//!   at at once, so a guesser hammering the user name cannot keep its owner out.
//!
//! The arithmetic: a code has 50 bits (2^50, about 1.1e15 values). A guesser with one address
//! gets about 12 guesses an hour: 2^49 / 12 per hour, about 5e12 years to the expected hit. With
//! many addresses, they are all held together by the user's back-off once each has failed twice
//! (one guess per 10 s per user, 8,640 a day): the expected time is 2^49 / 8,640 days, about
//! 1.8e8 years, and over an invite's 7 days the chance of a hit is 7 x 8,640 / 2^50, about
//! 5e-11. Clean addresses add 2 guesses each: a million addresses buy 2e6 guesses, a chance of
//! about 2e-9 (IPv6 addresses count by /64, so a million of them is a million /64s).
//!
//! A throttled attempt is refused without looking at the code and does not count. Records are
//! forgotten a day after their last failure; the tables are bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Free wrong codes per address before its back-off starts.
pub const ADDRESS_FREE: u32 = 5;
/// The longest an address waits between two looked-at codes.
pub const ADDRESS_MAX_WAIT: Duration = Duration::from_secs(300);
/// Free wrong codes per user name before its back-off starts.
pub const USER_FREE: u32 = 10;
/// Failures of an address after which the user's back-off holds it back too.
pub const USER_HOLDS_AFTER: u32 = 2;
/// The longest the user's back-off holds back an address that has failed before.
pub const USER_MAX_WAIT: Duration = Duration::from_secs(10);
/// A record is forgotten this long after its last failure.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Records kept per table before old ones are pruned (and, if all are recent, the table is
/// cleared: a flood of distinct keys then resets the back-off rather than exhausting memory).
const MAX_RECORDS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last: Instant,
}

impl Record {
    /// When the next code may be looked at.
    fn next_allowed(&self, free: u32, max: Duration) -> Instant {
        if self.failures < free {
            return self.last;
        }
        let doublings = (self.failures - free).min(20);
        let wait = Duration::from_secs(1u64 << doublings).min(max);
        self.last + wait
    }
}

/// Back-off tables for wrong one-time codes.
#[derive(Debug, Default)]
pub struct Guessing {
    tables: Mutex<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    addresses: HashMap<IpAddr, Record>,
    users: HashMap<String, Record>,
}

/// The key of an address: IPv4 as is, IPv6 by its /64 (one host usually holds a whole /64).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

impl Guessing {
    /// Whether a code from `ip` for `user` may be looked at now; otherwise how long to wait.
    pub fn check(&self, ip: IpAddr, user: &str, now: Instant) -> Result<(), Duration> {
        let tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let mut until = now;
        if let Some(record) = tables.addresses.get(&address_key(ip)) {
            until = until.max(record.next_allowed(ADDRESS_FREE, ADDRESS_MAX_WAIT));
            if record.failures >= USER_HOLDS_AFTER
                && let Some(user) = tables.users.get(user)
            {
                until = until.max(user.next_allowed(USER_FREE, USER_MAX_WAIT));
            }
        }
        if until > now {
            Err(until - now)
        } else {
            Ok(())
        }
    }

    /// Counts a wrong code from `ip` for `user`.
    pub fn failed(&self, ip: IpAddr, user: &str, now: Instant) {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        count(&mut tables.addresses, address_key(ip), now);
        count(&mut tables.users, user.to_owned(), now);
    }
}

fn count<K: std::hash::Hash + Eq>(table: &mut HashMap<K, Record>, key: K, now: Instant) {
    if table.len() >= MAX_RECORDS {
        table.retain(|_, r| now.saturating_duration_since(r.last) < FORGET_AFTER);
        if table.len() >= MAX_RECORDS {
            table.clear();
        }
    }
    let record = table.entry(key).or_insert(Record {
        failures: 0,
        last: now,
    });
    if now.saturating_duration_since(record.last) >= FORGET_AFTER {
        record.failures = 0;
    }
    record.failures = record.failures.saturating_add(1);
    record.last = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUESSER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const OWNER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn an_address_backs_off_exponentially_after_its_free_failures() {
        let g = Guessing::default();
        let t0 = Instant::now();
        for _ in 0..ADDRESS_FREE {
            assert_eq!(g.check(GUESSER, "alice", t0), Ok(()));
            g.failed(GUESSER, "alice", t0);
        }
        // The next failure earns a wait of 1 s, then 2 s, 4 s...
        assert!(g.check(GUESSER, "bob", t0).is_err(), "held for every user");
        g.failed(GUESSER, "x", t0);
        assert_eq!(g.check(GUESSER, "bob", t0), Err(Duration::from_secs(2)));
        assert_eq!(g.check(GUESSER, "bob", t0 + Duration::from_secs(2)), Ok(()));
    }

    #[test]
    fn a_clean_address_is_never_held_by_the_users_back_off() {
        let g = Guessing::default();
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a01_0000 + i));
            g.failed(ip, "alice", t0);
        }
        assert_eq!(g.check(OWNER, "alice", t0), Ok(()));
        // An address that failed once (a typo) is not held; one that failed twice is.
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 0, 5));
        assert_eq!(g.check(other, "alice", t0), Ok(()));
        g.failed(other, "alice", t0);
        assert_eq!(g.check(other, "alice", t0), Err(USER_MAX_WAIT));
        assert_eq!(g.check(other, "bob", t0), Ok(()));
    }

    #[test]
    fn ipv6_addresses_are_held_by_their_64() {
        let g = Guessing::default();
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        for _ in 0..=ADDRESS_FREE {
            g.failed(a, "alice", t0);
        }
        assert!(g.check(b, "carol", t0).is_err());
        assert_eq!(
            g.check("2001:db8:1:3::1".parse().unwrap(), "carol", t0),
            Ok(())
        );
    }

    #[test]
    fn records_are_forgotten_a_day_after_the_last_failure() {
        let g = Guessing::default();
        let t0 = Instant::now();
        for _ in 0..20 {
            g.failed(GUESSER, "alice", t0);
        }
        let later = t0 + FORGET_AFTER;
        g.failed(GUESSER, "alice", later);
        assert_eq!(g.check(GUESSER, "alice", later), Ok(()));
    }
}
