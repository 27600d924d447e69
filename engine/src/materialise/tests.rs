//! Plans for the usual remote changes: every destructive action carries what it expects to find,
//! moves go through staging (so swaps and cycles cannot collide), parents come before children.

use super::*;
use crate::chunk::{Manifest, ManifestEntry};
use crate::ids::{ChunkId, ShortDeviceId};
use crate::time::WallTime;
use crate::tree::{ContentBody, NodeKind};

fn id(n: u8) -> NodeId {
    NodeId([n; 16])
}

fn content(text: &str) -> Content {
    Content {
        size: text.len() as u64,
        mtime: WallTime(1),
        written_at: WallTime(1),
        author: ShortDeviceId([2; 8]),
        body: ContentBody::Inline(Manifest {
            entries: vec![ManifestEntry {
                id: ChunkId::of(text.as_bytes()),
                len: text.len() as u32,
            }],
        }),
    }
}

fn known_file(node: u8, text: &str) -> Known {
    Known {
        node: id(node),
        kind: NodeKind::File,
        mode: 0o644,
        inode: u64::from(node),
        content: Some(content(text).hash()),
    }
}

fn remote_file(parent: u8, path: &str, text: &str) -> RemoteEntry {
    RemoteEntry {
        parent: id(parent),
        path: path.to_owned(),
        kind: NodeKind::File,
        mode: 0o644,
        content: Some(content(text)),
    }
}

fn remote_dir(parent: u8, path: &str) -> RemoteEntry {
    RemoteEntry {
        parent: id(parent),
        path: path.to_owned(),
        kind: NodeKind::Dir,
        mode: 0o755,
        content: None,
    }
}

#[test]
fn nothing_to_do_when_disk_matches_the_document() {
    let known = BTreeMap::from([("a.txt".to_string(), known_file(1, "a"))]);
    let remote = HashMap::from([(id(1), remote_file(0, "a.txt", "a"))]);
    assert!(plan(&remote, &known).is_empty());
}

#[test]
fn a_remote_edit_replaces_only_what_the_index_expects() {
    let known = BTreeMap::from([("a.txt".to_string(), known_file(1, "old"))]);
    let remote = HashMap::from([(id(1), remote_file(0, "a.txt", "new"))]);
    let actions = plan(&remote, &known);
    assert_eq!(
        actions,
        vec![FileAction::Write {
            path: "a.txt".into(),
            node: id(1),
            content: content("new"),
            mode: 0o644,
            replaces: Some(known_file(1, "old")),
        }]
    );
}

#[test]
fn new_nested_entries_come_parents_first() {
    let known = BTreeMap::new();
    let remote = HashMap::from([
        (id(3), remote_file(2, "d/e/f.txt", "f")),
        (id(1), remote_dir(0, "d")),
        (id(2), remote_dir(1, "d/e")),
    ]);
    let actions = plan(&remote, &known);
    let paths: Vec<&str> = actions
        .iter()
        .map(|a| match a {
            FileAction::MakeDir { path, .. } | FileAction::Write { path, .. } => path.as_str(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(paths, ["d", "d/e", "d/e/f.txt"]);
}

#[test]
fn a_remote_delete_removes_with_the_expected_entry() {
    let known = BTreeMap::from([("gone.txt".to_string(), known_file(1, "g"))]);
    let actions = plan(&HashMap::new(), &known);
    assert_eq!(
        actions,
        vec![FileAction::Remove {
            path: "gone.txt".into(),
            expect: known_file(1, "g"),
        }]
    );
}

#[test]
fn swapped_names_go_through_staging_without_collision() {
    let known = BTreeMap::from([
        ("a".to_string(), known_file(1, "first")),
        ("b".to_string(), known_file(2, "second")),
    ]);
    let remote = HashMap::from([
        (id(1), remote_file(0, "b", "first")),
        (id(2), remote_file(0, "a", "second")),
    ]);
    let actions = plan(&remote, &known);
    // Replay the moves on a map of path -> node: no move may land on an occupied path.
    let mut disk: HashMap<String, NodeId> =
        HashMap::from([("a".to_string(), id(1)), ("b".to_string(), id(2))]);
    for action in &actions {
        let FileAction::Move { from, to, expect } = action else {
            panic!("unexpected {action:?}");
        };
        assert_eq!(
            disk.remove(from),
            Some(expect.node),
            "moved what it expected"
        );
        assert!(!disk.contains_key(to), "move onto occupied {to}");
        disk.insert(to.clone(), expect.node);
    }
    assert_eq!(disk["a"], id(2));
    assert_eq!(disk["b"], id(1));
}

#[test]
fn an_entry_already_parked_in_staging_is_not_parked_again() {
    let parked = format!("{STAGING_DIR}/{}", id(1).to_key());
    let known = BTreeMap::from([(parked.clone(), known_file(1, "x"))]);
    let remote = HashMap::from([(id(1), remote_file(0, "x.txt", "x"))]);
    let actions = plan(&remote, &known);
    assert_eq!(
        actions,
        vec![FileAction::Move {
            from: parked,
            to: "x.txt".into(),
            expect: known_file(1, "x"),
        }]
    );
}
