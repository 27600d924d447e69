//! The relay against hand-driven WebSocket clients: enrolment, pairing, sync fan-out, chunks,
//! partitioning between users, revocation, crash safety and malformed input.

use std::time::Duration;

use anyhow::Result;
use cloud3_engine::auth::DeviceKey;
use cloud3_engine::chunk::{Manifest, ManifestEntry, compress};
use cloud3_engine::ids::{ChunkId, FolderId, NodeId, ShortDeviceId};
use cloud3_engine::time::WallTime;
use cloud3_engine::tree::{Content, ContentBody, FolderDoc, NodeKind};
use cloud3_engine::wire::message::ChunkPiece;
use cloud3_engine::wire::{AuthProof, ClientMessage, CloseCode, ServerMessage};
use cloud3_tests::Relay;
use cloud3_tests::client::{Client, Incoming, chunk_put, enrol};
use tungstenite::Message;

/// A well-formed code that is nobody's (the relay's codes come from the OS's randomness).
pub(crate) fn wrong_code() -> String {
    cloud3_engine::auth::OneTimeCode::generate([0x5a; 8])
        .as_str()
        .to_owned()
}

pub(crate) fn key(n: u8) -> DeviceKey {
    DeviceKey::from_secret([n; 32])
}

/// A relay, an invite for `user`, and that user's first device logged in.
fn relay_with(user: &str, root: &std::path::Path) -> Result<(Relay, Client)> {
    let relay = Relay::start(&root.join("relay"))?;
    let invite = relay.add_user(user)?;
    let first = Client::login(&relay.url, &key(1), user, enrol(&invite, "first"))?;
    Ok((relay, first))
}

/// The chunk list of a file made of `chunks`.
fn manifest_of(chunks: &[&[u8]]) -> Manifest {
    Manifest {
        entries: chunks
            .iter()
            .map(|raw| ManifestEntry {
                id: ChunkId::of(raw),
                len: raw.len() as u32,
            })
            .collect(),
    }
}

/// A small document change creating one node: a directory, or a file made of `chunks`.
fn one_change(actor: u8, name: &str, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut doc = FolderDoc::new(&[actor; 16]);
    let manifest = manifest_of(chunks);
    let content = Content {
        size: manifest.size(),
        mtime: WallTime(1),
        written_at: WallTime(1),
        author: ShortDeviceId([actor; 8]),
        body: if manifest.is_inline() {
            ContentBody::Inline(manifest)
        } else {
            ContentBody::Blob(manifest.content_hash())
        },
    };
    let (kind, content) = match chunks {
        [] => (NodeKind::Dir, None),
        _ => (NodeKind::File, Some(content)),
    };
    doc.create_node(
        NodeId([actor; 16]),
        NodeId::ROOT,
        name,
        kind,
        0o755,
        content,
        ShortDeviceId([actor; 8]),
        WallTime(1),
    )
    .expect("create");
    doc.commit(WallTime(1));
    doc.changes_since(&[])
}

/// Sends [`one_change`] (actor 1) and returns the heads the relay acknowledges it with.
fn commit_change(client: &mut Client, name: &str, chunks: &[&[u8]]) -> Result<Vec<[u8; 32]>> {
    client.send(&ClientMessage::DocChanges {
        folder: FolderId::default_folder(),
        changes: one_change(1, name, chunks),
    })?;
    client.until(|m| match m {
        ServerMessage::DocHeads { heads, .. } if !heads.is_empty() => Some(heads.clone()),
        _ => None,
    })
}

/// `Some(bytes)` when the relay serves the chunk to this client, `None` when it says unavailable.
fn get_chunk(client: &mut Client, id: ChunkId) -> Result<Option<Vec<u8>>> {
    client.send(&ClientMessage::ChunkGet { ids: vec![id] })?;
    let mut encoded = Vec::new();
    loop {
        let piece = client.until(|m| match m {
            ServerMessage::ChunkData(piece) if piece.id == id => Some(Some(piece.clone())),
            ServerMessage::ChunkUnavailable { id: missing } if *missing == id => Some(None),
            _ => None,
        })?;
        let Some(piece) = piece else { return Ok(None) };
        encoded.extend_from_slice(&piece.data);
        if encoded.len() as u32 >= piece.encoded_len {
            let raw = cloud3_engine::chunk::open(id, piece.codec, &encoded, piece.raw_len)?;
            return Ok(Some(raw));
        }
    }
}

fn missing(client: &mut Client, ids: Vec<ChunkId>) -> Result<Vec<ChunkId>> {
    client.send(&ClientMessage::ChunkQuery { request: 7, ids })?;
    client.until(|m| match m {
        ServerMessage::ChunkMissing { request: 7, ids } => Some(ids.clone()),
        _ => None,
    })
}

#[test]
fn enrol_pair_sync_a_change_and_move_chunks_between_two_devices() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, mut first) = relay_with("alice", tmp.path())?;
    let code = first.pair_code(false)?;
    let mut second = Client::login(&relay.url, &key(2), "alice", enrol(&code, "second"))?;

    // A used code is burnt.
    let mut third = Client::connect(&relay.url)?;
    third.hello(&key(3), "alice", enrol(&code, "third"))?;
    assert_eq!(third.closed()?, Some(CloseCode::BadAuth.code()));

    // Chunks first: stored once, reported present.
    let raw = b"a chunk of file bytes".repeat(100);
    let id = ChunkId::of(&raw);
    assert_eq!(missing(&mut first, vec![id])?, vec![id]);
    first.put_chunk(&raw)?;
    assert!(missing(&mut first, vec![id])?.is_empty());

    // Then the change naming them reaches the second device at once (the pull hint), which
    // can now fetch the chunk.
    let folder = FolderId::default_folder();
    let changes = one_change(1, "projects", &[raw.as_slice()]);
    first.send(&ClientMessage::DocChanges {
        folder: folder.clone(),
        changes: changes.clone(),
    })?;
    let pushed = second.until(|m| match m {
        ServerMessage::DocChanges { changes, .. } => Some(changes.clone()),
        _ => None,
    })?;
    assert_eq!(pushed, changes);
    assert_eq!(get_chunk(&mut second, id)?, Some(raw));
    Ok(())
}

#[test]
fn wrong_codes_are_refused_then_held_back_and_the_real_invite_survives() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let relay = Relay::start(&tmp.path().join("relay"))?;
    let invite = relay.add_user("alice")?;
    let mut reasons = Vec::new();
    for attempt in 0..10 {
        let mut client = Client::connect(&relay.url)?;
        client.hello(
            &key(9),
            "alice",
            enrol(&wrong_code(), &format!("guess {attempt}")),
        )?;
        assert_eq!(client.closed()?, Some(CloseCode::BadAuth.code()));
        reasons.push(client.close_reason().unwrap_or_default().to_owned());
    }
    // Five are looked at; then this address waits before its next code is even looked at.
    assert!(
        reasons[..5]
            .iter()
            .all(|r| r.contains("wrong or used code")),
        "{reasons:?}"
    );
    assert!(
        reasons[5].contains("too many wrong codes, try again in 1 s"),
        "{reasons:?}"
    );
    // Once the wait is over, the real invite still works: wrong codes burnt nothing.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    Client::login(&relay.url, &key(1), "alice", enrol(&invite, "laptop"))?;
    Ok(())
}

#[test]
fn bob_can_never_reach_anything_of_alice() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, mut alice) = relay_with("alice", tmp.path())?;
    let bob_invite = relay.add_user("bob")?;
    let mut bob = Client::login(&relay.url, &key(20), "bob", enrol(&bob_invite, "bob's"))?;

    let secret = b"alice's private bytes".repeat(50);
    let id = alice.put_chunk(&secret)?;
    let folder = FolderId::default_folder();
    let alice_heads = commit_change(&mut alice, "alice-only", &[secret.as_slice()])?;

    // Guessing the hash gets nothing, and the query does not reveal that someone has it.
    assert_eq!(get_chunk(&mut bob, id)?, None);
    assert_eq!(missing(&mut bob, vec![id])?, vec![id]);
    // Bob's document is his own: asking for everything yields none of her changes.
    bob.send(&ClientMessage::DocHeads {
        folder: folder.clone(),
        heads: Vec::new(),
    })?;
    let mut bobs = FolderDoc::new(&[21; 16]);
    loop {
        match bob.recv()? {
            Incoming::Message(ServerMessage::DocChanges { changes, .. }) => {
                bobs.apply_changes(changes)?;
            }
            Incoming::Message(ServerMessage::DocHeads { .. }) => break,
            Incoming::Message(_) => continue,
            Incoming::Closed(code) => anyhow::bail!("bob was disconnected: {code:?}"),
        }
    }
    assert!(alice_heads.iter().all(|h| !bobs.has_change(h)));
    assert!(bobs.find_path("alice-only").is_none());
    // Bob's device list has only his device.
    bob.send(&ClientMessage::ListDevices)?;
    let devices = bob.until(|m| match m {
        ServerMessage::Devices(list) => Some(list.clone()),
        _ => None,
    })?;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].device, key(20).device_id());

    // Claiming alice's name with bob's key is refused.
    let mut claim = Client::connect(&relay.url)?;
    claim.hello(&key(20), "alice", AuthProof::Device)?;
    assert_eq!(claim.closed()?, Some(CloseCode::BadAuth.code()));

    // A captured handshake of alice's cannot be replayed: the nonce differs.
    let mut watched = Client::connect(&relay.url)?;
    let captured = watched.hello(&key(1), "alice", AuthProof::Device)?;
    let mut replay = Client::connect(&relay.url)?;
    replay.send(&ClientMessage::Hello(captured))?;
    assert_eq!(replay.closed()?, Some(CloseCode::BadAuth.code()));
    Ok(())
}

#[test]
fn a_revoked_device_is_cut_off_at_once_and_refused_afterwards() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, mut first) = relay_with("alice", tmp.path())?;
    let code = first.pair_code(false)?;
    let mut second = Client::login(&relay.url, &key(2), "alice", enrol(&code, "stolen"))?;
    first.send(&ClientMessage::Revoke {
        device: key(2).device_id(),
    })?;
    first.until(|m| matches!(m, ServerMessage::Revoked { .. }).then_some(()))?;
    assert_eq!(second.closed()?, Some(CloseCode::Revoked.code()));
    let mut again = Client::connect(&relay.url)?;
    again.hello(&key(2), "alice", AuthProof::Device)?;
    assert_eq!(again.closed()?, Some(CloseCode::Revoked.code()));
    Ok(())
}

#[test]
fn a_relay_killed_with_sigkill_loses_nothing_it_acknowledged() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (mut relay, mut first) = relay_with("alice", tmp.path())?;
    let raw = b"acknowledged chunk".repeat(1000);
    let id = first.put_chunk(&raw)?;
    let folder = FolderId::default_folder();
    let acked = commit_change(&mut first, "kept", &[raw.as_slice()])?;
    relay.kill();
    let relay = Relay::start_on(&relay.data.clone(), &relay.addr.clone())?;
    let mut back = Client::login(&relay.url, &key(1), "alice", AuthProof::Device)?;
    assert_eq!(get_chunk(&mut back, id)?, Some(raw));
    back.send(&ClientMessage::DocHeads {
        folder,
        heads: Vec::new(),
    })?;
    let changes = back.until(|m| match m {
        ServerMessage::DocChanges { changes, .. } => Some(changes.clone()),
        _ => None,
    })?;
    let mut doc = FolderDoc::new(&[5; 16]);
    doc.apply_changes(changes)?;
    assert_eq!(doc.heads(), acked);
    assert!(doc.find_path("kept").is_some());
    Ok(())
}

/// After each malformed input the relay still serves a well-behaved device.
fn still_serving(relay: &Relay) -> Result<()> {
    let mut client = Client::login(&relay.url, &key(1), "alice", AuthProof::Device)?;
    client.send(&ClientMessage::Ping(42))?;
    client.until(|m| matches!(m, ServerMessage::Pong(42)).then_some(()))
}

#[test]
fn malformed_input_is_refused_and_the_relay_keeps_serving() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, mut alice) = relay_with("alice", tmp.path())?;

    // Garbage before the handshake.
    let mut garbage = Client::connect(&relay.url)?;
    garbage.send_raw(Message::Binary(vec![0xff, 0x13, 0x37, 0, 1, 2].into()))?;
    assert!(garbage.closed()?.is_some(), "garbage closes the connection");
    still_serving(&relay)?;

    // A text frame.
    let mut text = Client::connect(&relay.url)?;
    text.send_raw(Message::Text("hello?".into()))?;
    assert!(
        text.closed()?.is_some(),
        "a text frame closes the connection"
    );
    still_serving(&relay)?;

    // An oversized frame (2 MiB, over the 1 MiB limit), after authenticating.
    let mut big = Client::login(&relay.url, &key(1), "alice", AuthProof::Device)?;
    let _ = big.send_raw(Message::Binary(vec![0u8; 2 << 20].into()));
    let closed = big.closed();
    assert!(
        matches!(closed, Ok(Some(code)) if code == CloseCode::Limit.code()),
        "an oversized frame closes the connection: {closed:?}"
    );
    still_serving(&relay)?;

    // An unknown protocol version.
    let mut future = Client::connect(&relay.url)?;
    let mut hello = cloud3_engine::auth::challenge::sign_hello(
        &key(1),
        &future.relay_id,
        &future.nonce,
        "alice",
        AuthProof::Device,
    );
    hello.version = 999;
    let message =
        cloud3_engine::auth::challenge::signed_message(&future.relay_id, &future.nonce, &hello);
    hello.signature = key(1).sign(&message).to_vec();
    future.send(&ClientMessage::Hello(hello))?;
    assert_eq!(future.closed()?, Some(CloseCode::UnsupportedVersion.code()));

    // A bad signature.
    let mut forged = Client::connect(&relay.url)?;
    let mut hello = cloud3_engine::auth::challenge::sign_hello(
        &key(1),
        &forged.relay_id,
        &forged.nonce,
        "alice",
        AuthProof::Device,
    );
    hello.signature[10] ^= 1;
    forged.send(&ClientMessage::Hello(hello))?;
    assert_eq!(forged.closed()?, Some(CloseCode::BadAuth.code()));

    // A hostile Automerge chunk: a compressed change whose payload inflates 1000-fold.
    let bomb = deflate_bomb();
    alice.send(&ClientMessage::DocChanges {
        folder: FolderId::default_folder(),
        changes: vec![bomb],
    })?;
    let refused = alice.until(|m| match m {
        ServerMessage::Error { message, .. } => Some(message.clone()),
        _ => None,
    })?;
    assert!(refused.contains("refused"), "{refused}");
    // A chunk whose bytes do not match its hash.
    let mut piece = ChunkPiece {
        id: ChunkId::of(b"what it claims"),
        raw_len: 5,
        codec: cloud3_engine::wire::ChunkCodec::Raw,
        encoded_len: 5,
        offset: 0,
        data: b"other".to_vec(),
    };
    alice.send(&ClientMessage::ChunkPut(piece.clone()))?;
    alice.until(|m| matches!(m, ServerMessage::Error { .. }).then_some(()))?;
    assert_eq!(missing(&mut alice, vec![piece.id])?, vec![piece.id]);
    // A zstd frame declaring a small size but inflating far beyond it.
    let zeros = vec![0u8; 32 << 20];
    piece.data = compress(&zeros).bytes;
    piece.codec = cloud3_engine::wire::ChunkCodec::Zstd;
    piece.raw_len = 1024;
    piece.encoded_len = piece.data.len() as u32;
    piece.id = ChunkId::of(&zeros[..1024]);
    alice.send(&ClientMessage::ChunkPut(piece.clone()))?;
    alice.until(|m| matches!(m, ServerMessage::Error { .. }).then_some(()))?;
    assert_eq!(missing(&mut alice, vec![piece.id])?, vec![piece.id]);
    still_serving(&relay)?;

    let health = std::net::TcpStream::connect(&relay.addr).is_ok();
    assert!(health);
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}

/// An Automerge compressed-change chunk (type 2) whose deflated payload is 64 MiB of zeros.
fn deflate_bomb() -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        encoder.write_all(&zeros).expect("deflate");
    }
    let payload = encoder.finish().expect("deflate");
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
    let mut len = payload.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            chunk.push(byte);
            break;
        }
        chunk.push(byte | 0x80);
    }
    chunk.extend_from_slice(&payload);
    chunk
}

#[test]
fn a_read_only_device_reads_but_every_write_is_refused() -> Result<()> {
    use cloud3_engine::wire::ErrorCode;
    let tmp = tempfile::tempdir()?;
    let (relay, mut first) = relay_with("alice", tmp.path())?;
    let raw = b"shared with the browser".repeat(10);
    let id = first.put_chunk(&raw)?;
    commit_change(&mut first, "shared", &[raw.as_slice()])?;
    let code = first.pair_code(true)?;
    let mut viewer = Client::login(&relay.url, &key(7), "alice", enrol(&code, "browser"))?;
    assert_eq!(get_chunk(&mut viewer, id)?, Some(raw));

    let refused = |client: &mut Client| {
        client.until(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
    };
    viewer.send(&ClientMessage::DocChanges {
        folder: FolderId::default_folder(),
        changes: one_change(7, "from-the-browser", &[]),
    })?;
    assert_eq!(refused(&mut viewer)?, ErrorCode::ReadOnly);
    let own = b"browser bytes".to_vec();
    viewer.send(&chunk_put(&own))?;
    assert_eq!(refused(&mut viewer)?, ErrorCode::ReadOnly);
    viewer.send(&ClientMessage::Revoke {
        device: key(1).device_id(),
    })?;
    assert_eq!(refused(&mut viewer)?, ErrorCode::ReadOnly);
    viewer.send(&ClientMessage::PairRequest { read_only: false })?;
    assert_eq!(refused(&mut viewer)?, ErrorCode::ReadOnly);
    // Nothing of it landed: the first device is still enrolled and sees no browser chunk.
    assert_eq!(
        missing(&mut first, vec![ChunkId::of(&own)])?,
        vec![ChunkId::of(&own)]
    );
    first.send(&ClientMessage::Ping(5))?;
    first.until(|m| matches!(m, ServerMessage::Pong(5)).then_some(()))?;
    Ok(())
}

#[test]
fn only_chunks_the_users_document_references_are_served() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, mut first) = relay_with("alice", tmp.path())?;
    let code = first.pair_code(false)?;
    let mut second = Client::login(&relay.url, &key(2), "alice", enrol(&code, "second"))?;

    // Stored but named by no change: the relay is not a blob store for anything else.
    let stray = b"uploaded, never referenced".repeat(30);
    let stray_id = first.put_chunk(&stray)?;
    assert!(missing(&mut first, vec![stray_id])?.is_empty());
    assert_eq!(get_chunk(&mut second, stray_id)?, None);
    assert_eq!(get_chunk(&mut first, stray_id)?, None);

    // A large file: its chunks are listed in a manifest blob that the change names.
    let pieces: Vec<Vec<u8>> = (0..6u8).map(|n| vec![n; 1000 + usize::from(n)]).collect();
    let slices: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    for piece in &pieces {
        first.put_chunk(piece)?;
    }
    let manifest = manifest_of(&slices);
    assert!(!manifest.is_inline());
    let manifest_id = first.put_chunk(&manifest.encode())?;
    assert_eq!(get_chunk(&mut second, ChunkId::of(&pieces[3]))?, None);
    commit_change(&mut first, "large.bin", &slices)?;
    assert_eq!(
        get_chunk(&mut second, manifest_id)?,
        Some(manifest.encode())
    );
    for piece in &pieces {
        assert_eq!(
            get_chunk(&mut second, ChunkId::of(piece))?,
            Some(piece.clone())
        );
    }
    assert_eq!(get_chunk(&mut second, stray_id)?, None);

    // References survive a restart, and a database from before references were kept (the
    // tables dropped while the relay is down) is indexed from its documents' history.
    drop((first, second));
    let mut relay = relay;
    relay.kill();
    let db = redb::Database::open(relay.data.join("relay.redb"))?;
    let txn = db.begin_write()?;
    let refs: redb::TableDefinition<(&str, &[u8; 32]), ()> = redb::TableDefinition::new("refs");
    let indexed: redb::TableDefinition<(&str, &str), ()> =
        redb::TableDefinition::new("refs_indexed");
    assert!(txn.delete_table(refs)?);
    assert!(txn.delete_table(indexed)?);
    txn.commit()?;
    drop(db);
    let relay = Relay::start_on(&relay.data.clone(), &relay.addr.clone())?;
    let mut back = Client::login(&relay.url, &key(2), "alice", AuthProof::Device)?;
    assert_eq!(
        get_chunk(&mut back, ChunkId::of(&pieces[5]))?,
        Some(pieces[5].clone())
    );
    assert_eq!(get_chunk(&mut back, stray_id)?, None);
    Ok(())
}

/// A change with a valid checksum that makes Automerge fail inside (found by mangling a real
/// change until a fresh document reports itself broken).
fn change_that_breaks_automerge() -> Vec<u8> {
    let real = one_change(4, "real", &[b"bytes".as_slice()]).remove(0);
    let body = cloud3_engine::tree::changes::change_body(&real).expect("a real change");
    for i in 0..body.len() {
        for byte in [0u8, 1, 2, 3, 0x7f, 0x80, 0xff] {
            let mut mangled = body.to_vec();
            mangled[i] = byte;
            let change = cloud3_engine::fuzz::change_chunk(&mangled);
            let mut doc = FolderDoc::new(&[8; 16]);
            if doc.apply_changes(vec![change.clone()]).is_err() && doc.is_broken() {
                return change;
            }
        }
    }
    panic!("no mangled change broke automerge");
}

#[test]
fn a_change_that_breaks_automerge_is_refused_and_nothing_is_lost() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, mut first) = relay_with("alice", tmp.path())?;
    let before = commit_change(&mut first, "before", &[])?;

    first.send(&ClientMessage::DocChanges {
        folder: FolderId::default_folder(),
        changes: vec![change_that_breaks_automerge()],
    })?;
    let refused = first.until(|m| match m {
        ServerMessage::Error { message, .. } => Some(message.clone()),
        _ => None,
    })?;
    assert!(refused.contains("refused"), "{refused}");

    // The relay still serves, its copy of the document holds what came before, and it takes
    // new changes.
    let mut other = Client::login(&relay.url, &key(1), "alice", AuthProof::Device)?;
    other.send(&ClientMessage::DocHeads {
        folder: FolderId::default_folder(),
        heads: Vec::new(),
    })?;
    let changes = other.until(|m| match m {
        ServerMessage::DocChanges { changes, .. } => Some(changes.clone()),
        _ => None,
    })?;
    let mut doc = FolderDoc::new(&[6; 16]);
    doc.apply_changes(changes)?;
    assert!(before.iter().all(|h| doc.has_change(h)));
    assert!(doc.find_path("before").is_some());
    let after = one_change(9, "after", &[]);
    let new_head = *FolderDoc::new(&[7; 16])
        .apply_changes(after.clone())?
        .last()
        .expect("one change at least");
    other.send(&ClientMessage::DocChanges {
        folder: FolderId::default_folder(),
        changes: after,
    })?;
    other.until(|m| match m {
        ServerMessage::DocHeads { heads, .. } if heads.contains(&new_head) => Some(()),
        _ => None,
    })?;
    still_serving(&relay)?;
    Ok(())
}
