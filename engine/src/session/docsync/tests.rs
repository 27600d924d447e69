//! Tests of heads-based document sync over plain Automerge documents.

use super::*;
use crate::session::test_doc::Doc;

/// Runs messages between two peers until both are quiet; returns (rounds, bytes on the wire).
fn sync_until_quiet(
    a: &mut Doc,
    sa: &mut PeerSync,
    b: &mut Doc,
    sb: &mut PeerSync,
) -> (usize, usize) {
    let mut to_b = sa.start(a);
    let mut to_a = sb.start(b);
    let mut bytes = 0;
    for round in 0..20 {
        if to_a.is_empty() && to_b.is_empty() {
            return (round, bytes);
        }
        let mut next_to_a = Vec::new();
        for message in to_b.drain(..) {
            bytes += size(&message);
            next_to_a.extend(deliver(b, sb, message));
        }
        let mut next_to_b = Vec::new();
        for message in to_a.drain(..) {
            bytes += size(&message);
            next_to_b.extend(deliver(a, sa, message));
        }
        to_a = next_to_a;
        to_b = next_to_b;
    }
    panic!("sync did not go quiet in 20 rounds");
}

fn deliver(doc: &mut Doc, sync: &mut PeerSync, message: DocOutgoing) -> Vec<DocOutgoing> {
    match message {
        DocOutgoing::Heads(heads) => sync.on_heads(doc, heads),
        DocOutgoing::Changes(changes) => sync.on_changes(doc, changes).expect("valid changes"),
    }
}

fn size(message: &DocOutgoing) -> usize {
    match message {
        DocOutgoing::Heads(heads) => heads.len() * 32,
        DocOutgoing::Changes(changes) => changes.iter().map(Vec::len).sum(),
    }
}

#[test]
fn divergent_offline_edits_converge_both_ways() {
    let mut a = Doc::new(1);
    let mut b = Doc::new(2);
    a.edit("base", 1);
    let (mut sa, mut sb) = (PeerSync::new(), PeerSync::new());
    sync_until_quiet(&mut a, &mut sa, &mut b, &mut sb);
    for i in 0..50 {
        a.edit(&format!("a{i}"), i);
        b.edit(&format!("b{i}"), i);
    }
    let (rounds, _) = sync_until_quiet(&mut a, &mut sa, &mut b, &mut sb);
    assert!(rounds <= 6, "took {rounds} rounds");
    assert_eq!(a.heads(), b.heads());
    assert_eq!(a.value("b49"), Some("49".into()));
    assert_eq!(b.value("a49"), Some("49".into()));
}

#[test]
fn one_edit_sends_one_change_not_the_history() {
    let mut a = Doc::new(1);
    let mut b = Doc::new(2);
    for i in 0..500 {
        a.edit(&format!("k{i}"), i);
    }
    let (mut sa, mut sb) = (PeerSync::new(), PeerSync::new());
    sync_until_quiet(&mut a, &mut sa, &mut b, &mut sb);
    a.edit("k1", 42);
    let (_, bytes) = sync_until_quiet(&mut a, &mut sa, &mut b, &mut sb);
    assert!(bytes < 1024, "one edit cost {bytes} bytes");
    assert_eq!(b.value("k1"), Some("42".into()));
}

#[test]
fn local_change_pushes_only_what_the_peer_lacks() {
    let mut a = Doc::new(1);
    let mut b = Doc::new(2);
    let (mut sa, mut sb) = (PeerSync::new(), PeerSync::new());
    a.edit("x", 1);
    sync_until_quiet(&mut a, &mut sa, &mut b, &mut sb);
    a.edit("y", 2);
    let out = sa.on_local_change(&mut a);
    assert_eq!(out.len(), 1);
    let DocOutgoing::Changes(changes) = &out[0] else {
        panic!("expected changes, got {out:?}");
    };
    assert_eq!(changes.len(), 1);
    for message in out {
        deliver(&mut b, &mut sb, message);
    }
    assert_eq!(b.value("y"), Some("2".into()));
    assert!(sa.on_local_change(&mut a).is_empty());
}

#[test]
fn saved_their_heads_resume_without_resending() {
    let mut a = Doc::new(1);
    let mut b = Doc::new(2);
    let (mut sa, mut sb) = (PeerSync::new(), PeerSync::new());
    for i in 0..100 {
        a.edit(&format!("k{i}"), i);
    }
    sync_until_quiet(&mut a, &mut sa, &mut b, &mut sb);
    let mut sa = PeerSync::with_their_heads(sa.confirmed_heads());
    let mut sb = PeerSync::with_their_heads(sb.confirmed_heads());
    b.edit("offline", 1);
    a.edit("other", 2);
    let (_, bytes) = sync_until_quiet(&mut a, &mut sa, &mut b, &mut sb);
    assert!(bytes < 2048, "resume cost {bytes} bytes");
    assert_eq!(a.heads(), b.heads());
}

#[test]
fn garbage_changes_are_refused_and_leave_the_doc_unchanged() {
    let mut a = Doc::new(1);
    a.edit("x", 1);
    let before = a.heads();
    let mut sync = PeerSync::new();
    assert!(sync.on_changes(&mut a, vec![vec![1, 2, 3]]).is_err());
    assert_eq!(a.heads(), before);
}

#[test]
fn split_changes_respects_the_message_limit() {
    let changes = vec![vec![0u8; MAX_CHANGES_BYTES / 2]; 5];
    let groups = split_changes(changes);
    assert_eq!(groups.len(), 3);
    for group in groups {
        assert!(group.iter().map(Vec::len).sum::<usize>() <= MAX_CHANGES_BYTES);
    }
}

#[test]
fn changes_lost_with_a_dropped_connection_are_sent_again_on_the_next() {
    let mut a = Doc::new(1);
    let mut b = Doc::new(2);
    let (mut sa, mut sb) = (PeerSync::new(), PeerSync::new());
    a.edit("base", 1);
    sync_until_quiet(&mut a, &mut sa, &mut b, &mut sb);
    // b learns of another device's change, a edits: both pushes are lost with the connection.
    b.edit("from-elsewhere", 3);
    a.edit("lost", 2);
    assert!(!sa.on_local_change(&mut a).is_empty());
    assert!(!sb.on_local_change(&mut b).is_empty());
    // What each side saves only counts what the other proved it has.
    let mut sa = PeerSync::with_their_heads(sa.confirmed_heads());
    let mut sb = PeerSync::with_their_heads(sb.confirmed_heads());
    sync_until_quiet(&mut a, &mut sa, &mut b, &mut sb);
    assert_eq!(b.value("lost"), Some("2".into()));
    assert_eq!(a.value("from-elsewhere"), Some("3".into()));
    assert_eq!(a.heads(), b.heads());
}

#[test]
fn an_answer_to_the_first_part_of_a_long_push_does_not_send_the_rest_again() {
    let mut a = Doc::new(1);
    let mut b = Doc::new(2);
    // Keys that do not compress: enough changes for several messages.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..1000 {
        let key: String = (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        a.edit(&key, i);
    }
    let (mut sa, mut sb) = (PeerSync::new(), PeerSync::new());
    let hello = sb.start(&mut b);
    let mut push = Vec::new();
    for message in hello {
        push.extend(deliver(&mut a, &mut sa, message));
    }
    let parts: Vec<_> = push
        .into_iter()
        .filter(|m| matches!(m, DocOutgoing::Changes(_)))
        .collect();
    assert!(
        parts.len() >= 2,
        "the push fits one message: make it longer"
    );
    // b acknowledges the first part before the rest arrives (the rest is on the wire).
    let mut parts = parts.into_iter();
    let ack = deliver(&mut b, &mut sb, parts.next().expect("first part"));
    let mut again = Vec::new();
    for message in ack {
        again.extend(deliver(&mut a, &mut sa, message));
    }
    assert!(
        !again.iter().any(|m| matches!(m, DocOutgoing::Changes(_))),
        "changes already on the wire were sent again"
    );
    for part in parts {
        for message in deliver(&mut b, &mut sb, part) {
            deliver(&mut a, &mut sa, message);
        }
    }
    assert_eq!(a.heads(), b.heads());
}
