//! A TCP proxy between an agent and the relay: counts the bytes each way and can cut, delay and
//! restore the link on command, so tests can take a device offline and measure the wire exactly.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

#[derive(Default)]
struct Link {
    /// Bytes from the agent to the relay.
    up: AtomicU64,
    /// Bytes from the relay to the agent.
    down: AtomicU64,
    online: AtomicBool,
    delay_ms: AtomicU64,
    /// Both ends of every open connection by number, so a cut can close them.
    open: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
    next: AtomicU64,
}

/// A running proxy; it stops accepting when dropped (open connections are cut).
pub struct Proxy {
    /// `ws://127.0.0.1:PORT`: give this to the agent instead of the relay's URL.
    pub url: String,
    link: Arc<Link>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`
    /// (`HOST:PORT`).
    pub fn start(target: &str) -> Result<Proxy> {
        Proxy::start_from(target, None)
    }

    /// Like [`Proxy::start`], but the connections to `target` leave from `source` (another
    /// loopback address such as 127.0.0.2), so the relay sees the devices behind this proxy at
    /// that address.
    pub fn start_from(target: &str, source: Option<IpAddr>) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind proxy")?;
        let addr = listener.local_addr()?;
        let target: SocketAddr = target.parse().context("proxy target address")?;
        let link = Arc::new(Link::default());
        link.online.store(true, Ordering::SeqCst);
        let accepting = Arc::clone(&link);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if Arc::strong_count(&accepting) == 1 {
                    return; // the Proxy was dropped
                }
                if !accepting.online.load(Ordering::SeqCst) {
                    drop(client); // offline: the agent sees a refused connection
                    continue;
                }
                let Ok(server) = connect_from(source, target) else {
                    continue;
                };
                forward(&accepting, client, server);
            }
        });
        Ok(Proxy {
            url: format!("ws://{addr}"),
            link,
        })
    }

    /// Bytes sent by the agent and by the relay through this proxy so far.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.link.up.load(Ordering::SeqCst),
            self.link.down.load(Ordering::SeqCst),
        )
    }

    /// Total bytes both ways so far.
    pub fn total(&self) -> u64 {
        let (up, down) = self.bytes();
        up + down
    }

    /// Takes the link down: open connections are closed and new ones refused.
    pub fn cut(&self) {
        self.link.online.store(false, Ordering::SeqCst);
        for (_, (client, server)) in self.link.open.lock().expect("proxy lock").drain() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    /// Brings the link back up.
    pub fn restore(&self) {
        self.link.online.store(true, Ordering::SeqCst);
    }

    /// Delays every forwarded read by `delay` (latency each way).
    pub fn set_delay(&self, delay: Duration) {
        self.link
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

fn forward(link: &Arc<Link>, client: TcpStream, server: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let clones = (client.try_clone(), server.try_clone());
    let (Ok(client_read), Ok(server_read)) = clones else {
        return;
    };
    let id = link.next.fetch_add(1, Ordering::SeqCst);
    if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
        link.open.lock().expect("proxy lock").insert(id, (a, b));
    }
    let up = Arc::clone(link);
    std::thread::spawn(move || pump(client_read, server, &up, id, true));
    let down = Arc::clone(link);
    std::thread::spawn(move || pump(server_read, client, &down, id, false));
}

/// Copies one direction until either side closes, then closes the whole connection: every
/// descriptor is dropped, so the kernel resets the peer that still has unread data (as a crashed
/// host's would).
fn pump(mut from: TcpStream, mut to: TcpStream, link: &Link, id: u64, upward: bool) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = link.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if !link.online.load(Ordering::SeqCst) || to.write_all(&buffer[..n]).is_err() {
            break;
        }
        let counter = if upward { &link.up } else { &link.down };
        counter.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
    link.open.lock().expect("proxy lock").remove(&id);
}

/// Connects to `target`, from `source` when given (bound before connecting).
pub fn connect_from(source: Option<IpAddr>, target: SocketAddr) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(target);
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect(&target.into())?;
    Ok(socket.into())
}
