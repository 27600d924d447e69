//! ClamAV through clamd's INSTREAM protocol over a Unix or TCP socket
//! (`--clamd unix:PATH|tcp:HOST:PORT`). Each chunk's raw bytes go out as one length-prefixed
//! INSTREAM block as it is read, so the relay never holds a file. Connect, read and write are
//! held to a timeout; a version larger than clamd's `StreamMaxLength` (configured, default
//! clamd's own 25 MiB) is `Unscanned { too large }`, never sent and never called clean.
//! `VERSION` names the signature database, so verdicts are renewed when it changes; `STATS`
//! tells clamd's thread count, which caps how many scans run at once.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use cloud3_engine::wire::{UnscannedReason, Verdict};

use super::scanner::{ScanError, ScanPass, Scanner};

/// The engine name in verdicts.
pub const ENGINE: &str = "clamav";

/// Where clamd listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClamdAddr {
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `tcp:HOST:PORT`.
    Tcp(String),
}

impl FromStr for ClamdAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<ClamdAddr, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            Ok(ClamdAddr::Unix(PathBuf::from(path)))
        } else if let Some(addr) = text.strip_prefix("tcp:") {
            Ok(ClamdAddr::Tcp(addr.to_owned()))
        } else {
            Err(format!(
                "clamd address {text:?}: use unix:PATH or tcp:HOST:PORT"
            ))
        }
    }
}

impl<'de> serde::Deserialize<'de> for ClamdAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ClamdAddr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for ClamdAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClamdAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            ClamdAddr::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

/// A clamd client.
#[derive(Clone, Debug)]
pub struct Clamd {
    addr: ClamdAddr,
    timeout: Duration,
    max_stream: u64,
}

enum Socket {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Socket::Unix(s) => s.read(buf),
            Socket::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Socket::Unix(s) => s.write(buf),
            Socket::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Socket::Unix(s) => s.flush(),
            Socket::Tcp(s) => s.flush(),
        }
    }
}

fn unreachable(why: impl std::fmt::Display) -> ScanError {
    ScanError::Unreachable {
        engine: ENGINE,
        why: why.to_string(),
    }
}

impl Clamd {
    /// A client for clamd at `addr`; every socket operation waits at most `timeout`; versions
    /// over `max_stream` bytes are not sent.
    pub fn new(addr: ClamdAddr, timeout: Duration, max_stream: u64) -> Clamd {
        Clamd {
            addr,
            timeout,
            max_stream,
        }
    }

    /// The address, for logs.
    pub fn addr(&self) -> &ClamdAddr {
        &self.addr
    }

    fn connect(&self) -> Result<Socket, ScanError> {
        let socket = match &self.addr {
            ClamdAddr::Unix(path) => {
                let s = UnixStream::connect(path).map_err(unreachable)?;
                s.set_read_timeout(Some(self.timeout))
                    .map_err(unreachable)?;
                s.set_write_timeout(Some(self.timeout))
                    .map_err(unreachable)?;
                Socket::Unix(s)
            }
            ClamdAddr::Tcp(addr) => {
                let target = addr
                    .to_socket_addrs()
                    .map_err(unreachable)?
                    .next()
                    .ok_or_else(|| unreachable(format!("{addr} resolves to nothing")))?;
                let s = TcpStream::connect_timeout(&target, self.timeout).map_err(unreachable)?;
                s.set_read_timeout(Some(self.timeout))
                    .map_err(unreachable)?;
                s.set_write_timeout(Some(self.timeout))
                    .map_err(unreachable)?;
                Socket::Tcp(s)
            }
        };
        Ok(socket)
    }

    /// Sends a one-word command (`VERSION`, `STATS`, `PING`) and returns the answer.
    pub fn command(&self, command: &str) -> Result<String, ScanError> {
        let mut socket = self.connect()?;
        socket
            .write_all(format!("z{command}\0").as_bytes())
            .map_err(unreachable)?;
        read_answer(&mut socket)
    }

    /// clamd's engine and signature database version (changes when signatures are updated).
    pub fn version(&self) -> Result<String, ScanError> {
        self.command("VERSION")
    }

    /// clamd's thread count (`MaxThreads`), from `STATS`.
    pub fn max_threads(&self) -> Result<usize, ScanError> {
        let stats = self.command("STATS")?;
        parse_max_threads(&stats).ok_or(ScanError::Answer {
            engine: ENGINE,
            answer: stats,
        })
    }
}

/// Reads an answer up to its NUL (or the end of the stream), without the NUL.
fn read_answer(socket: &mut Socket) -> Result<String, ScanError> {
    let mut answer = Vec::new();
    let mut byte = [0u8; 256];
    loop {
        let n = socket.read(&mut byte).map_err(unreachable)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&byte[..n]);
        if answer.contains(&0) || answer.len() > 64 * 1024 {
            break;
        }
    }
    if answer.is_empty() {
        return Err(unreachable("clamd closed the connection without an answer"));
    }
    let end = answer.iter().position(|&b| b == 0).unwrap_or(answer.len());
    Ok(String::from_utf8_lossy(&answer[..end]).trim().to_owned())
}

/// `max N` from the `THREADS:` line of a `STATS` answer.
fn parse_max_threads(stats: &str) -> Option<usize> {
    let line = stats
        .lines()
        .find(|l| l.trim_start().starts_with("THREADS:"))?;
    let mut words = line.split_whitespace();
    words.find(|&w| w == "max")?;
    words.next()?.parse().ok()
}

/// An INSTREAM answer as a verdict.
fn parse_answer(answer: &str) -> Result<Verdict, ScanError> {
    let body = answer.strip_prefix("stream: ").unwrap_or(answer);
    if body == "OK" {
        Ok(Verdict::Clean)
    } else if let Some(signature) = body.strip_suffix(" FOUND") {
        Ok(Verdict::Flagged {
            engine: ENGINE.into(),
            signature: signature.to_owned(),
        })
    } else if body.contains("size limit exceeded") {
        Ok(Verdict::Unscanned {
            reason: UnscannedReason::TooLarge,
        })
    } else {
        Err(ScanError::Answer {
            engine: ENGINE,
            answer: answer.to_owned(),
        })
    }
}

/// One INSTREAM session; without a socket, the verdict is known already (too large).
struct InStream {
    socket: Option<Socket>,
}

fn too_large() -> Verdict {
    Verdict::Unscanned {
        reason: UnscannedReason::TooLarge,
    }
}

impl Scanner for Clamd {
    fn start(&self, size: u64) -> Result<Box<dyn ScanPass + '_>, ScanError> {
        if size > self.max_stream {
            return Ok(Box::new(InStream { socket: None }));
        }
        let mut socket = self.connect()?;
        socket.write_all(b"zINSTREAM\0").map_err(unreachable)?;
        Ok(Box::new(InStream {
            socket: Some(socket),
        }))
    }
}

impl ScanPass for InStream {
    fn feed(&mut self, bytes: &[u8]) -> Result<(), ScanError> {
        let Some(socket) = &mut self.socket else {
            return Ok(());
        };
        let len = u32::try_from(bytes.len()).map_err(|_| unreachable("chunk over 4 GiB"))?;
        let sent = socket
            .write_all(&len.to_be_bytes())
            .and_then(|()| socket.write_all(bytes));
        if let Err(error) = sent {
            // clamd closes the stream once it is over its limit: its answer says so.
            return match read_answer(socket).and_then(|a| parse_answer(&a)) {
                Ok(verdict) if verdict == too_large() => {
                    self.socket = None;
                    Ok(())
                }
                _ => Err(unreachable(error)),
            };
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Verdict, ScanError> {
        let Some(mut socket) = self.socket else {
            return Ok(too_large());
        };
        socket.write_all(&0u32.to_be_bytes()).map_err(unreachable)?;
        parse_answer(&read_answer(&mut socket)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_addresses_parse() {
        assert_eq!(parse_answer("stream: OK").unwrap(), Verdict::Clean);
        assert_eq!(
            parse_answer("stream: Eicar-Test-Signature FOUND").unwrap(),
            Verdict::Flagged {
                engine: ENGINE.into(),
                signature: "Eicar-Test-Signature".into()
            }
        );
        assert_eq!(
            parse_answer("INSTREAM size limit exceeded. ERROR").unwrap(),
            Verdict::Unscanned {
                reason: UnscannedReason::TooLarge
            }
        );
        assert!(parse_answer("UNKNOWN COMMAND").is_err());
        let stats = "POOLS: 1\n\nSTATE: VALID PRIMARY\nTHREADS: live 1  idle 0 max 12 idle-timeout 30\nQUEUE: 0 items\n";
        assert_eq!(parse_max_threads(stats), Some(12));
        assert_eq!(
            "unix:/run/clamd.sock".parse::<ClamdAddr>(),
            Ok(ClamdAddr::Unix("/run/clamd.sock".into()))
        );
        assert_eq!(
            "tcp:127.0.0.1:3310".parse::<ClamdAddr>(),
            Ok(ClamdAddr::Tcp("127.0.0.1:3310".into()))
        );
        assert!("127.0.0.1:3310".parse::<ClamdAddr>().is_err());
    }

    #[test]
    fn a_version_over_the_limit_is_unscanned_without_connecting() {
        let clamd = Clamd::new(
            ClamdAddr::Unix("/nonexistent/clamd.sock".into()),
            Duration::from_secs(1),
            10,
        );
        let mut pass = clamd.start(11).unwrap();
        pass.feed(&[0; 11]).unwrap();
        assert_eq!(
            pass.finish().unwrap(),
            Verdict::Unscanned {
                reason: UnscannedReason::TooLarge
            }
        );
        assert!(matches!(
            clamd.start(10),
            Err(ScanError::Unreachable { .. })
        ));
    }
}
