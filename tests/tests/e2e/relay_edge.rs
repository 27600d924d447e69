//! The relay as a stranger on the internet meets it: half-open requests, code guessing.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use cloud3_engine::wire::CloseCode;
use cloud3_tests::client::{Client, enrol};
use cloud3_tests::proxy::connect_from;
use cloud3_tests::{Device, Proxy, Relay};

use crate::relay_protocol::{key, wrong_code};

/// The other source address: loopback accepts the whole 127/8.
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Raises this process's soft limit on open files to its hard limit (2,000 sockets and the
/// rest must fit under a default soft limit of 1,024).
fn raise_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
}

/// Opens `n` connections that send half a request head and nothing more.
fn half_open(relay: &Relay, n: usize) -> Result<Vec<TcpStream>> {
    let target = relay.addr.parse()?;
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let mut socket = connect_from(None, target).context("connect half-open socket")?;
        // The relay may close it at once (over the caps): a failed write is a closed socket.
        let _ = socket.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n");
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Whether the relay has closed `socket` (end of stream or reset) within `wait`.
fn closed_within(socket: &mut TcpStream, wait: Duration) -> bool {
    let _ = socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
    let mut buffer = [0u8; 1024];
    loop {
        match socket.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue, // an error response before the close
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true, // reset
        }
    }
}

#[test]
fn half_open_requests_are_capped_and_closed_and_shutdown_is_bounded() -> Result<()> {
    raise_file_limit();
    let tmp = tempfile::tempdir()?;
    let mut relay = Relay::start(&tmp.path().join("relay"))?;
    let invite = relay.add_user("alice")?;
    // The devices reach the relay from 127.0.0.2.
    let proxy = Proxy::start_from(&relay.addr, Some(OTHER))?;
    let first = Device::init_at(
        &tmp.path().join("a"),
        &proxy.url,
        "alice",
        "--invite",
        &invite,
        "a",
        &[],
    )?;
    let code = first.pair(false)?;

    let opened = Instant::now();
    let mut sockets = half_open(&relay, 2000)?;
    eprintln!("2000 half-open sockets opened in {:?}", opened.elapsed());

    // Meanwhile a device from the other address enrols and syncs normally.
    let second = Device::init_at(
        &tmp.path().join("b"),
        &proxy.url,
        "alice",
        "--pair",
        &code,
        "b",
        &[],
    )?;
    first.write("report.txt", b"written while 2000 requests hang");
    first.sync()?;
    second.sync()?;
    assert_eq!(
        second.read("report.txt").as_deref(),
        Some(&b"written while 2000 requests hang"[..])
    );
    eprintln!("devices synced {:?} after the flood", opened.elapsed());

    // Every half-open socket is closed within 15 s of being opened.
    let deadline = opened + Duration::from_secs(15);
    let mut open = 0;
    for socket in &mut sockets {
        if !closed_within(socket, deadline.saturating_duration_since(Instant::now())) {
            open += 1;
        }
    }
    assert_eq!(
        open, 0,
        "half-open sockets still open 15 s after they were opened"
    );
    eprintln!("all closed {:?} after opening", opened.elapsed());
    drop(sockets);

    // SIGTERM with half-open requests and an online device still exits within 5 s.
    let _hanging = half_open(&relay, 500)?;
    let mut online = Client::login(
        &proxy.url,
        &key(40),
        "alice",
        enrol(&first.pair(false)?, "online"),
    )?;
    let stopping = Instant::now();
    relay.stop()?;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    eprintln!("relay stopped {took:?} after SIGTERM");
    // The online device was told the relay is going away.
    assert_eq!(online.closed()?, Some(CloseCode::HandshakeTimeout.code()));
    Ok(())
}

#[test]
fn guessing_slows_the_guesser_and_never_burns_the_real_invite() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let relay = Relay::start(&tmp.path().join("relay"))?;
    let invite = relay.add_user("alice")?;
    let started = Instant::now();
    let (mut checked, mut held, mut turned_away) = (0u32, 0u32, 0u32);
    for attempt in 0..1000 {
        // One guess every 20 ms, 20 s in all: fast enough to show the back-off ramp.
        std::thread::sleep(Duration::from_millis(20));
        // A guesser this fast also meets the cap on unauthenticated connections per address
        // (refused handshakes linger a second): such a socket is closed before its upgrade.
        let Ok(mut client) = Client::connect(&relay.url) else {
            turned_away += 1;
            continue;
        };
        client.hello(
            &key(9),
            "alice",
            enrol(&wrong_code(), &format!("guess {attempt}")),
        )?;
        assert_eq!(client.closed()?, Some(CloseCode::BadAuth.code()));
        let reason = client.close_reason().unwrap_or_default().to_owned();
        if reason.contains("too many wrong codes") {
            held += 1;
        } else {
            assert!(reason.contains("wrong or used code"), "{reason}");
            checked += 1;
        }
    }
    let took = started.elapsed();
    let per_minute = f64::from(checked) / took.as_secs_f64() * 60.0;
    eprintln!(
        "1000 guesses in {took:?}: {checked} looked at ({per_minute:.1} a minute), {held} held \
         back, {turned_away} turned away at the door"
    );
    // Five free failures, then waits doubling from 1 s: a handful in this time.
    ensure!(
        f64::from(checked) <= 5.0 + took.as_secs_f64().log2().max(0.0) + 2.0,
        "{checked} guesses were looked at in {took:?}"
    );

    // From a third address, a user that does not exist is refused in alice's words.
    let third = Proxy::start_from(&relay.addr, Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))))?;
    let mut reasons = Vec::new();
    for user in ["alice", "nobody"] {
        let mut client = Client::connect(&third.url)?;
        client.hello(&key(10), user, enrol(&wrong_code(), "x"))?;
        assert_eq!(client.closed()?, Some(CloseCode::BadAuth.code()));
        reasons.push(client.close_reason().unwrap_or_default().to_owned());
    }
    assert_eq!(reasons[0], reasons[1]);

    // Alice, from another address, enrols with her real invite at once.
    let proxy = Proxy::start_from(&relay.addr, Some(OTHER))?;
    let enrolling = Instant::now();
    let device = Device::init_at(
        &tmp.path().join("alice"),
        &proxy.url,
        "alice",
        "--invite",
        &invite,
        "laptop",
        &[],
    )?;
    eprintln!("alice enrolled in {:?}", enrolling.elapsed());
    device.sync()?;
    Ok(())
}
