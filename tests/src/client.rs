//! A WebSocket device client speaking cloud3's protocol by hand, for tests and benchmarks of the
//! relay: it can send anything, including what a real agent never would.

use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cloud3_engine::auth::DeviceKey;
use cloud3_engine::auth::challenge::sign_hello;
use cloud3_engine::chunk::compress;
use cloud3_engine::ids::ChunkId;
use cloud3_engine::wire::message::ChunkPiece;
use cloud3_engine::wire::{
    AuthProof, ClientMessage, Hello, ServerMessage, decode_server, encode_client,
};
use tungstenite::protocol::WebSocket;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, client::IntoClientRequest};

/// A whole chunk as one `ChunkPut`.
pub fn chunk_put(raw: &[u8]) -> ClientMessage {
    let encoded = compress(raw);
    ClientMessage::ChunkPut(ChunkPiece {
        id: ChunkId::of(raw),
        raw_len: raw.len() as u32,
        codec: encoded.codec,
        encoded_len: encoded.bytes.len() as u32,
        offset: 0,
        data: encoded.bytes,
    })
}

/// The proof of a device enrolling with a one-time `code` under `device_name`.
pub fn enrol(code: &str, device_name: &str) -> AuthProof {
    AuthProof::Enrol {
        code: code.to_owned(),
        device_name: device_name.to_owned(),
    }
}

/// What arrived from the relay.
#[derive(Debug)]
pub enum Incoming {
    /// A protocol message.
    Message(ServerMessage),
    /// The relay closed the connection, with its close code if it sent one.
    Closed(Option<u16>),
}

/// One WebSocket connection to a relay, after its `Challenge`.
pub struct Client {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    /// The relay identity from the challenge.
    pub relay_id: [u8; 32],
    /// This connection's nonce.
    pub nonce: [u8; 32],
    close_reason: Option<String>,
}

impl Client {
    /// Connects to `ws://HOST:PORT` and reads the challenge.
    pub fn connect(relay_url: &str) -> Result<Client> {
        let request = format!("{relay_url}/ws").into_client_request()?;
        let (ws, _) = tungstenite::connect(request).context("websocket connect")?;
        if let MaybeTlsStream::Plain(stream) = ws.get_ref() {
            stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        }
        let mut client = Client {
            ws,
            relay_id: [0; 32],
            nonce: [0; 32],
            close_reason: None,
        };
        match client.recv()? {
            Incoming::Message(ServerMessage::Challenge {
                relay_id, nonce, ..
            }) => {
                client.relay_id = relay_id;
                client.nonce = nonce;
                Ok(client)
            }
            other => bail!("expected a challenge, got {other:?}"),
        }
    }

    /// Signs and sends a `Hello`; returns it (so a test can replay it).
    pub fn hello(&mut self, key: &DeviceKey, user: &str, proof: AuthProof) -> Result<Hello> {
        let hello = sign_hello(key, &self.relay_id, &self.nonce, user, proof);
        self.send(&ClientMessage::Hello(hello.clone()))?;
        Ok(hello)
    }

    /// Connects and authenticates; fails unless the relay says `Welcome`.
    pub fn login(relay_url: &str, key: &DeviceKey, user: &str, proof: AuthProof) -> Result<Client> {
        let mut client = Client::connect(relay_url)?;
        client.hello(key, user, proof)?;
        match client.recv()? {
            Incoming::Message(ServerMessage::Welcome { .. }) => Ok(client),
            other => bail!("login refused: {other:?}"),
        }
    }

    /// Asks the relay for a one-time pairing code and returns it.
    pub fn pair_code(&mut self, read_only: bool) -> Result<String> {
        self.send(&ClientMessage::PairRequest { read_only })?;
        self.until(|m| match m {
            ServerMessage::PairCode { code, .. } => Some(code.clone()),
            _ => None,
        })
    }

    /// Sends a protocol message.
    pub fn send(&mut self, message: &ClientMessage) -> Result<()> {
        self.send_raw(Message::Binary(encode_client(message).into()))
    }

    /// Sends any WebSocket message.
    pub fn send_raw(&mut self, message: Message) -> Result<()> {
        self.ws.send(message).context("websocket send")
    }

    /// The next protocol message or the close.
    pub fn recv(&mut self) -> Result<Incoming> {
        loop {
            match self.ws.read() {
                Ok(Message::Binary(bytes)) => {
                    return Ok(Incoming::Message(decode_server(&bytes)?));
                }
                Ok(Message::Close(frame)) => {
                    self.close_reason = frame.as_ref().map(|f| f.reason.to_string());
                    return Ok(Incoming::Closed(frame.map(|f| u16::from(f.code))));
                }
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(Incoming::Closed(None));
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return Ok(Incoming::Closed(None));
                }
                Err(e) => return Err(e).context("websocket read"),
            }
        }
    }

    /// Skips messages until `pick` returns something (for example the answer to a request,
    /// past presence updates); fails on a close.
    pub fn until<T>(&mut self, mut pick: impl FnMut(&ServerMessage) -> Option<T>) -> Result<T> {
        loop {
            match self.recv()? {
                Incoming::Message(message) => {
                    if let Some(found) = pick(&message) {
                        return Ok(found);
                    }
                }
                Incoming::Closed(code) => bail!("connection closed ({code:?})"),
            }
        }
    }

    /// Uploads `raw` as one chunk and waits until the relay has stored it; panics if the relay
    /// refuses it.
    pub fn put_chunk(&mut self, raw: &[u8]) -> Result<ChunkId> {
        let id = ChunkId::of(raw);
        self.send(&chunk_put(raw))?;
        self.until(|m| match m {
            ServerMessage::ChunkStored { id: stored } if *stored == id => Some(()),
            ServerMessage::Error { message, .. } => panic!("chunk refused: {message}"),
            _ => None,
        })?;
        Ok(id)
    }

    /// The reason of the close frame the relay sent, once it has.
    pub fn close_reason(&self) -> Option<&str> {
        self.close_reason.as_deref()
    }

    /// Reads until the relay closes the connection; returns the close code.
    pub fn closed(&mut self) -> Result<Option<u16>> {
        loop {
            if let Incoming::Closed(code) = self.recv()? {
                return Ok(code);
            }
        }
    }
}
