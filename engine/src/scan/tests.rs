//! One test per scan rule: creations parents first, moves by inode (a directory is one
//! operation), stale-base edits become conflict copies, edit beats delete, staged entries are
//! never deleted.

use super::*;
use crate::chunk::{Manifest, ManifestEntry};

const ME: ShortDeviceId = ShortDeviceId([1; 8]);

fn content(text: &str) -> Content {
    Content {
        size: text.len() as u64,
        mtime: WallTime(5),
        written_at: WallTime(5),
        author: ME,
        body: crate::tree::ContentBody::Inline(Manifest {
            entries: vec![ManifestEntry {
                id: ChunkId::of(text.as_bytes()),
                len: text.len() as u32,
            }],
        }),
    }
}

fn id(n: u8) -> NodeId {
    NodeId([n; 16])
}

fn file(inode: u64, text: &str) -> DiskEntry {
    DiskEntry {
        kind: NodeKind::File,
        mode: 0o644,
        inode,
        content: Some(content(text)),
    }
}

fn dir(inode: u64) -> DiskEntry {
    DiskEntry {
        kind: NodeKind::Dir,
        mode: 0o755,
        inode,
        content: None,
    }
}

fn known(node: u8, entry: &DiskEntry) -> Known {
    Known {
        node: id(node),
        kind: entry.kind,
        mode: entry.mode,
        inode: entry.inode,
        content: entry.content.as_ref().map(Content::hash),
    }
}

fn remote(parent: u8, path: &str, entry: &DiskEntry) -> RemoteEntry {
    RemoteEntry {
        parent: id(parent),
        path: path.to_owned(),
        kind: entry.kind,
        mode: entry.mode,
        content: entry.content.clone(),
    }
}

/// A folder in sync: `entries` as (node, parent node, path, entry) are on disk, in the index
/// and in the document alike.
type Synced = (
    BTreeMap<String, DiskEntry>,
    BTreeMap<String, Known>,
    HashMap<NodeId, RemoteEntry>,
);

fn synced(entries: &[(u8, u8, &str, DiskEntry)]) -> Synced {
    let mut disk = BTreeMap::new();
    let mut index = BTreeMap::new();
    let mut doc = HashMap::new();
    for (node, parent, path, entry) in entries {
        disk.insert(path.to_string(), entry.clone());
        index.insert(path.to_string(), known(*node, entry));
        doc.insert(id(*node), remote(*parent, path, entry));
    }
    (disk, index, doc)
}

fn scan(
    disk: &BTreeMap<String, DiskEntry>,
    index: &BTreeMap<String, Known>,
    doc: &HashMap<NodeId, RemoteEntry>,
) -> ScanResult {
    let mut next = 100u8;
    Scanner {
        device_name: "laptop",
        now: WallTime(1_700_000_000_000),
    }
    .scan(disk, index, doc, || {
        next += 1;
        id(next)
    })
}

#[test]
fn an_unchanged_folder_yields_no_operations() {
    let (disk, index, doc) =
        synced(&[(1, 0, "docs", dir(10)), (2, 1, "docs/a.txt", file(11, "a"))]);
    let result = scan(&disk, &index, &doc);
    assert!(result.ops.is_empty(), "{:?}", result.ops);
    assert_eq!(result.nodes["docs/a.txt"], id(2));
}

#[test]
fn new_entries_are_created_parents_first() {
    let (mut disk, index, doc) = synced(&[]);
    disk.insert("x/y/z.txt".into(), file(3, "z"));
    disk.insert("x".into(), dir(1));
    disk.insert("x/y".into(), dir(2));
    let result = scan(&disk, &index, &doc);
    let created: Vec<(NodeId, NodeId, String)> = result
        .ops
        .iter()
        .map(|op| match op {
            DocOp::Create {
                id, parent, name, ..
            } => (*id, *parent, name.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        created,
        vec![
            (id(101), NodeId::ROOT, "x".into()),
            (id(102), id(101), "y".into()),
            (id(103), id(102), "z.txt".into()),
        ]
    );
}

#[test]
fn a_renamed_directory_is_one_move_whatever_it_holds() {
    let mut entries = vec![(1, 0, "photos", dir(10))];
    let names: Vec<String> = (0..50).map(|i| format!("photos/p{i}.jpg")).collect();
    for (i, name) in names.iter().enumerate() {
        entries.push((i as u8 + 2, 1, name.as_str(), file(20 + i as u64, name)));
    }
    let (disk, index, doc) = synced(&entries);
    // On disk the directory now has another name; inodes are unchanged.
    let disk: BTreeMap<String, DiskEntry> = disk
        .into_iter()
        .map(|(path, entry)| (path.replacen("photos", "pictures", 1), entry))
        .collect();
    let result = scan(&disk, &index, &doc);
    assert_eq!(
        result.ops,
        vec![DocOp::Move {
            id: id(1),
            parent: NodeId::ROOT,
            name: "pictures".into()
        }]
    );
    assert_eq!(result.nodes["pictures/p7.jpg"], id(9));
}

#[test]
fn a_local_edit_on_top_of_the_synced_version_sets_content() {
    let (mut disk, index, doc) = synced(&[(1, 0, "a.txt", file(10, "v1"))]);
    disk.insert("a.txt".into(), file(10, "v2"));
    let result = scan(&disk, &index, &doc);
    assert_eq!(
        result.ops,
        vec![DocOp::SetContent {
            id: id(1),
            content: content("v2")
        }]
    );
}

#[test]
fn a_local_edit_on_a_stale_version_becomes_a_conflict_copy() {
    let (mut disk, index, mut doc) = synced(&[(1, 0, "a.txt", file(10, "v1"))]);
    // Another device's edit is in the document but not yet on this disk...
    doc.insert(id(1), remote(0, "a.txt", &file(10, "theirs")));
    // ...and the user edited the old version here.
    disk.insert("a.txt".into(), file(10, "mine"));
    let result = scan(&disk, &index, &doc);
    assert_eq!(result.conflict_copies.len(), 1);
    let (from, to) = &result.conflict_copies[0];
    assert_eq!(from, "a.txt");
    assert!(to.starts_with("a (conflict from laptop "), "{to}");
    assert!(matches!(
        &result.ops[..],
        [DocOp::Create { content: Some(c), .. }] if *c == content("mine")
    ));
}

#[test]
fn a_deleted_file_is_deleted_unless_edited_remotely() {
    let (mut disk, index, mut doc) = synced(&[
        (1, 0, "plain.txt", file(10, "p")),
        (2, 0, "edited.txt", file(11, "e")),
    ]);
    disk.clear();
    doc.insert(
        id(2),
        remote(0, "edited.txt", &file(11, "edited elsewhere")),
    );
    let result = scan(&disk, &index, &doc);
    assert_eq!(result.ops, vec![DocOp::Delete { id: id(1) }]);
}

#[test]
fn an_entry_parked_in_staging_is_never_deleted() {
    let (mut disk, mut index, doc) = synced(&[(1, 0, "a.txt", file(10, "a"))]);
    // A crash left the file parked in staging, where walks do not look.
    let parked = format!("{}/a.txt", crate::materialise::STAGING_DIR);
    let entry = index.remove("a.txt").expect("indexed");
    index.insert(parked, entry);
    disk.clear();
    let result = scan(&disk, &index, &doc);
    assert!(result.ops.is_empty(), "{:?}", result.ops);
}

#[test]
fn a_file_deleted_remotely_but_touched_here_stays_indexed_for_its_removal() {
    let (mut disk, index, mut doc) = synced(&[(1, 0, "old.txt", file(10, "same bytes"))]);
    doc.clear();
    // Touched (mtime changed, content the same): still "untouched" for the deletion rule, but
    // the index entry must follow the disk or the removal would never match it.
    disk.insert("old.txt".into(), file(10, "same bytes"));
    let result = scan(&disk, &index, &doc);
    assert!(result.ops.is_empty(), "{:?}", result.ops);
    assert_eq!(result.nodes.get("old.txt"), Some(&id(1)));
}

#[test]
fn a_file_added_in_a_directory_deleted_elsewhere_keeps_the_directory() {
    let (mut disk, index, mut doc) =
        synced(&[(1, 0, "e", dir(10)), (2, 1, "e/old.txt", file(11, "old"))]);
    // Another device deleted the directory and its file; this one wrote a new file inside
    // before that reached its disk.
    doc.clear();
    disk.insert("e/new.txt".into(), file(12, "new"));
    let result = scan(&disk, &index, &doc);
    assert_eq!(
        result.ops,
        vec![DocOp::Create {
            id: id(101),
            parent: id(1),
            name: "new.txt".into(),
            kind: NodeKind::File,
            mode: 0o644,
            content: Some(content("new")),
        }],
        "recorded under the deleted directory, which it keeps alive"
    );
    // Untouched, the directory and its old file still go.
    disk.remove("e/new.txt");
    let result = scan(&disk, &index, &doc);
    assert!(result.ops.is_empty(), "{:?}", result.ops);
    assert_eq!(result.nodes.get("e"), None);
}

#[test]
fn a_copy_already_on_disk_joins_the_documents_nodes_instead_of_duplicating_them() {
    // The document has photos/ with x.txt and z.txt; this device never indexed anything but
    // holds its own copy: photos/, the same x.txt, a different z.txt and a new y.txt.
    let (_, _, doc) = synced(&[
        (1, 0, "photos", dir(10)),
        (2, 1, "photos/x.txt", file(11, "same")),
        (3, 1, "photos/z.txt", file(12, "theirs")),
    ]);
    let mut disk = BTreeMap::new();
    disk.insert("photos".to_string(), dir(50));
    disk.insert("photos/x.txt".to_string(), file(51, "same"));
    disk.insert("photos/y.txt".to_string(), file(52, "only here"));
    disk.insert("photos/z.txt".to_string(), file(53, "mine"));
    let result = scan(&disk, &BTreeMap::new(), &doc);
    assert_eq!(
        result.nodes["photos"],
        id(1),
        "the directory is the document's"
    );
    assert_eq!(
        result.nodes["photos/x.txt"],
        id(2),
        "identical content: same node"
    );
    let created: Vec<(NodeId, String)> = result
        .ops
        .iter()
        .map(|op| match op {
            DocOp::Create { parent, name, .. } => (*parent, name.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        created,
        vec![(id(1), "y.txt".into()), (id(1), "z.txt".into())],
        "a new file and a different one are new nodes (the same-name rule keeps both)"
    );
}

#[test]
fn a_node_the_index_holds_elsewhere_or_of_another_kind_is_never_taken() {
    // Node 2 is indexed at old.txt (moved remotely to new.txt, not yet materialised); a new
    // local new.txt with the same bytes is a new node, not node 2.
    let (mut disk, index, mut doc) = synced(&[(2, 0, "old.txt", file(11, "a"))]);
    doc.get_mut(&id(2)).expect("node").path = "new.txt".into();
    disk.insert("new.txt".into(), file(12, "a"));
    // The document has a directory where this device has a file.
    doc.insert(id(3), remote(0, "thing", &dir(13)));
    disk.insert("thing".into(), file(14, "t"));
    let result = scan(&disk, &index, &doc);
    assert_ne!(result.nodes["new.txt"], id(2));
    assert_ne!(result.nodes["thing"], id(3));
    assert_eq!(
        result
            .ops
            .iter()
            .filter(|op| matches!(op, DocOp::Create { .. }))
            .count(),
        2
    );
}
