//! Tests of the folder document and its derived tree: one table-driven test per conflict rule,
//! and a seeded property test that replicas converge to identical trees in any merge order.

use proptest::prelude::*;

use super::*;
use crate::chunk::{Manifest, ManifestEntry};

const A: ShortDeviceId = ShortDeviceId([0xa; 8]);
const B: ShortDeviceId = ShortDeviceId([0xb; 8]);

fn id(n: u8) -> NodeId {
    NodeId([n; 16])
}

fn content(text: &str, author: ShortDeviceId, written_at: i64) -> Content {
    Content {
        size: text.len() as u64,
        mtime: WallTime(written_at),
        written_at: WallTime(written_at),
        author,
        body: ContentBody::Inline(Manifest {
            entries: vec![ManifestEntry {
                id: ChunkId::of(text.as_bytes()),
                len: text.len() as u32,
            }],
        }),
    }
}

fn doc(actor: u8) -> FolderDoc {
    let mut doc = FolderDoc::new(&[actor; 16]);
    doc.set_device_name(A, "laptop").unwrap();
    doc.set_device_name(B, "desktop").unwrap();
    doc.commit(WallTime(0));
    doc
}

fn file(doc: &mut FolderDoc, n: u8, parent: NodeId, name: &str, text: &str) {
    doc.create_node(
        id(n),
        parent,
        name,
        NodeKind::File,
        0o644,
        Some(content(text, A, 1)),
        A,
        WallTime(1),
    )
    .unwrap();
}

fn dir(doc: &mut FolderDoc, n: u8, parent: NodeId, name: &str) {
    doc.create_node(
        id(n),
        parent,
        name,
        NodeKind::Dir,
        0o755,
        None,
        A,
        WallTime(1),
    )
    .unwrap();
}

/// Sends everything each lacks to the other.
fn merge(a: &mut FolderDoc, b: &mut FolderDoc) {
    let to_b = a.changes_since(&b.heads());
    let to_a = b.changes_since(&a.heads());
    b.apply_changes(to_b).unwrap();
    a.apply_changes(to_a).unwrap();
}

/// Paths with a short description of each node's content.
fn listing(doc: &FolderDoc) -> Vec<String> {
    doc.derive()
        .iter()
        .map(|(path, node)| match &node.content {
            Some(c) => format!("{path}={}", c.size),
            None => format!("{path}/"),
        })
        .collect()
}

/// Two replicas share `base`, diverge with `on_a` and `on_b` offline, merge; both must show
/// `expected`.
fn check(
    base: impl Fn(&mut FolderDoc),
    on_a: impl Fn(&mut FolderDoc),
    on_b: impl Fn(&mut FolderDoc),
    expected: &[&str],
) {
    let mut a = doc(1);
    let mut b = doc(2);
    base(&mut a);
    a.commit(WallTime(1));
    merge(&mut a, &mut b);
    on_a(&mut a);
    a.commit(WallTime(2));
    on_b(&mut b);
    b.commit(WallTime(2));
    merge(&mut a, &mut b);
    assert_eq!(
        a.derive().canonical(),
        b.derive().canonical(),
        "replicas differ"
    );
    assert_eq!(listing(&a), expected);
}

#[test]
fn concurrent_edits_keep_the_later_and_copy_the_other() {
    check(
        |d| file(d, 1, NodeId::ROOT, "report.txt", "base"),
        |d| {
            d.set_content(id(1), content("from laptop", A, 10_000))
                .unwrap()
        },
        |d| {
            d.set_content(id(1), content("from desktop!", B, 20_000))
                .unwrap()
        },
        &[
            "report (conflict from laptop 1970-01-01 000010).txt=11",
            "report.txt=13",
        ],
    );
}

#[test]
fn the_same_bytes_written_concurrently_are_one_version_not_a_conflict() {
    check(
        |d| file(d, 1, NodeId::ROOT, "report.txt", "base"),
        |d| {
            d.set_content(id(1), content("same words", A, 10_000))
                .unwrap()
        },
        |d| {
            d.set_content(id(1), content("same words", B, 20_000))
                .unwrap()
        },
        &["report.txt=10"],
    );
    // Three devices, two of them agreeing: one copy for the one that differs.
    let mut a = doc(1);
    let mut b = doc(2);
    let mut c = doc(3);
    file(&mut a, 1, NodeId::ROOT, "f.txt", "base");
    a.commit(WallTime(1));
    merge(&mut a, &mut b);
    merge(&mut a, &mut c);
    a.set_content(id(1), content("agreed", A, 10_000)).unwrap();
    b.set_content(id(1), content("agreed", B, 11_000)).unwrap();
    c.set_content(id(1), content("other!!", A, 30_000)).unwrap();
    for d in [&mut a, &mut b, &mut c] {
        d.commit(WallTime(2));
    }
    merge(&mut a, &mut b);
    merge(&mut a, &mut c);
    merge(&mut a, &mut b);
    assert_eq!(a.derive().canonical(), c.derive().canonical());
    assert_eq!(
        listing(&a),
        [
            "f (conflict from desktop 1970-01-01 000011).txt=6",
            "f.txt=7"
        ]
    );
}

#[test]
fn conflict_copies_have_the_same_id_on_every_replica() {
    let mut a = doc(1);
    let mut b = doc(2);
    file(&mut a, 1, NodeId::ROOT, "f", "base");
    a.commit(WallTime(1));
    merge(&mut a, &mut b);
    a.set_content(id(1), content("aa", A, 5)).unwrap();
    b.set_content(id(1), content("bbb", B, 6)).unwrap();
    a.commit(WallTime(2));
    b.commit(WallTime(2));
    merge(&mut a, &mut b);
    let (ta, tb) = (a.derive(), b.derive());
    let copy_a = ta
        .iter()
        .find(|(_, n)| n.conflict_of.is_some())
        .unwrap()
        .1
        .id;
    let copy_b = tb
        .iter()
        .find(|(_, n)| n.conflict_of.is_some())
        .unwrap()
        .1
        .id;
    assert_eq!(copy_a, copy_b);
}

#[test]
fn editing_after_a_conflict_keeps_the_copy() {
    let mut a = doc(1);
    let mut b = doc(2);
    file(&mut a, 1, NodeId::ROOT, "f.txt", "base");
    a.commit(WallTime(1));
    merge(&mut a, &mut b);
    a.set_content(id(1), content("aa", A, 5)).unwrap();
    b.set_content(id(1), content("bbb", B, 6)).unwrap();
    a.commit(WallTime(2));
    b.commit(WallTime(2));
    merge(&mut a, &mut b);
    // Both resolve by editing the file again, concurrently: the copy is created twice with
    // the same id, and an edit to the copy on one side must survive.
    a.set_content(id(1), content("next-a", A, 7)).unwrap();
    b.set_content(id(1), content("next-bb", B, 8)).unwrap();
    let copy = a
        .derive()
        .iter()
        .find(|(p, _)| p.contains("conflict"))
        .map(|(_, n)| n.id)
        .unwrap();
    a.set_content(copy, content("copy edited", A, 9)).unwrap();
    a.commit(WallTime(3));
    b.commit(WallTime(3));
    merge(&mut a, &mut b);
    assert_eq!(a.derive().canonical(), b.derive().canonical());
    let sizes: Vec<String> = listing(&a);
    assert!(
        sizes.iter().any(|l| l.ends_with("=11")),
        "copy edit lost: {sizes:?}"
    );
}

#[test]
fn edit_beats_concurrent_delete() {
    check(
        |d| file(d, 1, NodeId::ROOT, "f.txt", "base"),
        |d| d.delete(id(1), A, WallTime(5)).unwrap(),
        |d| d.set_content(id(1), content("edited", B, 6)).unwrap(),
        &["f.txt=6"],
    );
}

#[test]
fn delete_without_concurrent_edit_removes() {
    check(
        |d| file(d, 1, NodeId::ROOT, "f.txt", "base"),
        |d| d.delete(id(1), A, WallTime(5)).unwrap(),
        |_| {},
        &[],
    );
}

#[test]
fn rename_and_edit_both_apply() {
    check(
        |d| file(d, 1, NodeId::ROOT, "draft.txt", "base"),
        |d| d.rename(id(1), NodeId::ROOT, "final.txt").unwrap(),
        |d| d.set_content(id(1), content("edited", B, 6)).unwrap(),
        &["final.txt=6"],
    );
}

#[test]
fn concurrent_renames_pick_one_name_everywhere() {
    let mut a = doc(1);
    let mut b = doc(2);
    file(&mut a, 1, NodeId::ROOT, "x", "base");
    a.commit(WallTime(1));
    merge(&mut a, &mut b);
    a.rename(id(1), NodeId::ROOT, "from-a").unwrap();
    b.rename(id(1), NodeId::ROOT, "from-b").unwrap();
    a.commit(WallTime(2));
    b.commit(WallTime(2));
    merge(&mut a, &mut b);
    let names = listing(&a);
    assert_eq!(names.len(), 1);
    assert!(
        names[0] == "from-a=4" || names[0] == "from-b=4",
        "{names:?}"
    );
    assert_eq!(listing(&a), listing(&b));
}

#[test]
fn same_name_created_twice_gets_a_conflict_name() {
    check(
        |_| {},
        |d| {
            d.create_node(
                id(1),
                NodeId::ROOT,
                "n.txt",
                NodeKind::File,
                0o644,
                Some(content("a", A, 10_000)),
                A,
                WallTime(1),
            )
            .unwrap()
        },
        |d| {
            d.create_node(
                id(2),
                NodeId::ROOT,
                "n.txt",
                NodeKind::File,
                0o644,
                Some(content("bb", B, 20_000)),
                B,
                WallTime(1),
            )
            .unwrap()
        },
        &[
            "n (conflict from desktop 1970-01-01 000020).txt=2",
            "n.txt=1",
        ],
    );
}

#[test]
fn move_cycles_are_broken_and_nothing_is_lost() {
    check(
        |d| {
            dir(d, 1, NodeId::ROOT, "a");
            dir(d, 2, NodeId::ROOT, "b");
            file(d, 3, id(1), "in-a", "x");
            file(d, 4, id(2), "in-b", "y");
        },
        |d| d.rename(id(1), id(2), "a").unwrap(),
        |d| d.rename(id(2), id(1), "b").unwrap(),
        // id(1) is the smaller: it goes back to the root; b stays inside it.
        &["a/", "a/b/", "a/b/in-b=1", "a/in-a=1"],
    );
}

#[test]
fn a_deleted_dir_with_a_concurrent_new_file_survives() {
    check(
        |d| {
            dir(d, 1, NodeId::ROOT, "photos");
            file(d, 2, id(1), "old.jpg", "o");
        },
        |d| {
            d.delete(id(2), A, WallTime(5)).unwrap();
            d.delete(id(1), A, WallTime(5)).unwrap();
        },
        |d| file(d, 3, id(1), "new.jpg", "nn"),
        &["photos/", "photos/new.jpg=2"],
    );
}

#[test]
fn invalid_names_from_a_peer_never_reach_a_path() {
    // A hostile peer writes names the API would refuse, directly through Automerge.
    let mut a = doc(1);
    file(&mut a, 1, NodeId::ROOT, "ok.txt", "x");
    a.commit(WallTime(1));
    let mut b = doc(2);
    merge(&mut a, &mut b);
    for (n, bad) in [(5u8, ".."), (6, "a/b"), (7, ""), (8, "nul\0x")] {
        a.create_node(
            id(n),
            NodeId::ROOT,
            "placeholder",
            NodeKind::File,
            0o644,
            Some(content("p", A, 1)),
            A,
            WallTime(1),
        )
        .unwrap();
        a.force_name_for_test(id(n), bad);
    }
    a.commit(WallTime(2));
    merge(&mut a, &mut b);
    let tree = b.derive();
    assert_eq!(listing(&b), ["ok.txt=1"]);
    assert_eq!(tree.warnings().len(), 4);
}

#[test]
fn history_lists_every_version() {
    let mut a = doc(1);
    file(&mut a, 1, NodeId::ROOT, "f", "v1");
    a.commit(WallTime(1));
    a.set_content(id(1), content("v22", A, 2)).unwrap();
    a.commit(WallTime(2));
    a.set_content(id(1), content("v333", A, 3)).unwrap();
    a.commit(WallTime(3));
    let sizes: Vec<u64> = a
        .node_history(id(1), None)
        .iter()
        .map(|v| v.content.size)
        .collect();
    assert_eq!(sizes, [2, 3, 4]);
}

#[test]
fn save_load_and_incremental_saves_roundtrip() {
    let mut a = doc(1);
    file(&mut a, 1, NodeId::ROOT, "f", "v1");
    a.commit(WallTime(1));
    let full = a.save();
    assert!(a.save_incremental().is_empty(), "nothing new since save");
    file(&mut a, 2, NodeId::ROOT, "g", "v2");
    a.commit(WallTime(2));
    let increment = a.save_incremental();
    assert!(increment.len() < full.len() + 200);
    let mut bytes = full.clone();
    bytes.extend(increment);
    let loaded = FolderDoc::load(&bytes, &[9; 16]).unwrap();
    assert_eq!(listing(&loaded), ["f=2", "g=2"]);
}

#[test]
fn tombstones_roundtrip() {
    let t = Tombstone {
        by: A,
        at: WallTime(-5),
        seen: Some(ChunkId([3; 32])),
    };
    assert_eq!(Tombstone::decode(&t.encode()), Some(t));
    assert_eq!(Tombstone::decode(&[1, 2]), None);
}

#[test]
fn the_largest_change_a_device_makes_fits_one_message() {
    use crate::wire::limits::{MAX_CHANGES_BYTES, MAX_OPS_PER_CHANGE};
    // Worst case: every operation creates a file with a 255-byte name of unrepeated bytes and a
    // full inline chunk list, so the change compresses badly.
    let mut doc = doc(1);
    for n in 0..MAX_OPS_PER_CHANGE as u32 {
        let name: String = (0..255u32)
            .map(|i| char::from(b'!' + ((n.wrapping_mul(7919) + i * 31 + i * i) % 90) as u8))
            .map(|c| if c == '/' || c == '\\' { 'x' } else { c })
            .collect();
        let seed = n.to_le_bytes();
        let entries = (0..Manifest::INLINE_MAX_CHUNKS as u8)
            .map(|k| ManifestEntry {
                id: ChunkId::of(&[&seed[..], &[k]].concat()),
                len: 65_536 + n,
            })
            .collect();
        let body = ContentBody::Inline(Manifest { entries });
        let mut content = content("x", A, i64::from(n));
        content.body = body;
        content.size = u64::from(n) << 20;
        let node = NodeId::derived("test", &[&seed]);
        doc.create_node(
            node,
            NodeId::ROOT,
            &name,
            NodeKind::File,
            0o644,
            Some(content),
            A,
            WallTime(1),
        )
        .unwrap();
    }
    doc.commit(WallTime(2));
    let changes = doc.changes_since(&[]);
    let largest = changes.iter().map(Vec::len).max().unwrap();
    assert!(
        largest <= MAX_CHANGES_BYTES,
        "a change of {MAX_OPS_PER_CHANGE} creations takes {largest} bytes, over {MAX_CHANGES_BYTES}"
    );
}

/// A random operation on a replica.
#[derive(Clone, Debug)]
enum Op {
    Create(u8, u8, u8),
    Edit(u8, u8),
    Rename(u8, u8, u8),
    Delete(u8),
    Sync(u8, u8),
}

fn arb_op() -> impl Strategy<Value = (usize, Op)> {
    let op = prop_oneof![
        (1..20u8, 0..6u8, 0..4u8).prop_map(|(n, p, name)| Op::Create(n, p, name)),
        (1..20u8, any::<u8>()).prop_map(|(n, v)| Op::Edit(n, v)),
        (1..20u8, 0..6u8, 0..4u8).prop_map(|(n, p, name)| Op::Rename(n, p, name)),
        (1..20u8).prop_map(Op::Delete),
        (0..3u8, 0..3u8).prop_map(|(x, y)| Op::Sync(x, y)),
    ];
    (0..3usize, op)
}

fn run_op(docs: &mut [FolderDoc], replica: usize, op: &Op, t: i64) {
    let parent = |p: u8| if p == 0 { NodeId::ROOT } else { id(p) };
    let author = ShortDeviceId([replica as u8; 8]);
    if let Op::Sync(x, y) = op {
        let (x, y) = (*x as usize, *y as usize);
        if x != y {
            let heads = docs[y].heads();
            let changes = docs[x].changes_since(&heads);
            docs[y].apply_changes(changes).expect("valid changes");
        }
        return;
    }
    let d = &mut docs[replica];
    // Errors (unknown nodes) are fine: the op is simply not applicable here.
    let _ = match op {
        Op::Create(n, p, name) => {
            let kind = if *n <= 5 {
                NodeKind::Dir
            } else {
                NodeKind::File
            };
            let body = (kind == NodeKind::File).then(|| content(&format!("{n}"), author, t));
            d.create_node(
                id(*n),
                parent(*p),
                &format!("n{name}"),
                kind,
                0o644,
                body,
                author,
                WallTime(t),
            )
        }
        Op::Edit(n, v) if *n > 5 => d.set_content(id(*n), content(&format!("{v}"), author, t)),
        Op::Edit(..) => Ok(()),
        Op::Rename(n, p, name) => d.rename(id(*n), parent(*p), &format!("n{name}")),
        Op::Delete(n) => d.delete(id(*n), author, WallTime(t)),
        Op::Sync(..) => Ok(()),
    };
    d.commit(WallTime(t));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn replicas_derive_identical_trees_whatever_the_order(ops in proptest::collection::vec(arb_op(), 1..40)) {
        let mut docs: Vec<FolderDoc> = (0..3).map(|r| doc(r as u8 + 1)).collect();
        for (t, (replica, op)) in ops.iter().enumerate() {
            run_op(&mut docs, *replica, op, t as i64 + 10);
        }
        // Heal: everyone gets everything, in two different orders.
        for (x, y) in [(0, 1), (1, 2), (2, 0), (0, 1), (1, 2)] {
            let heads = docs[y].heads();
            let changes = docs[x].changes_since(&heads);
            docs[y].apply_changes(changes).expect("valid changes");
        }
        let trees: Vec<_> = docs.iter().map(|d| d.derive().canonical()).collect();
        prop_assert_eq!(&trees[0], &trees[1]);
        prop_assert_eq!(&trees[1], &trees[2]);
        // The tree is a tree: every path's parent path exists.
        for (path, ..) in &trees[0] {
            if let Some((parent, _)) = path.rsplit_once('/') {
                prop_assert!(trees[0].iter().any(|(p, ..)| p == parent), "orphan {}", path);
            }
        }
    }
}

/// Paths of `doc`'s tree as a case-insensitive device holds it.
fn folded_listing(doc: &FolderDoc) -> Vec<String> {
    doc.derive_for(DiskNames::CaseInsensitive)
        .iter()
        .map(|(path, _)| path.to_owned())
        .collect()
}

#[test]
fn a_case_insensitive_device_keeps_both_of_two_names_differing_in_case() {
    let mut d = doc(1);
    file(&mut d, 9, NodeId::ROOT, "Readme.md", "one");
    file(&mut d, 3, NodeId::ROOT, "README.md", "two");
    dir(&mut d, 5, NodeId::ROOT, "docs");
    dir(&mut d, 4, NodeId::ROOT, "Docs");
    file(&mut d, 6, id(5), "a.txt", "in docs");
    // NFC (precomposed é) and NFD (e + combining accent).
    file(&mut d, 7, NodeId::ROOT, "caf\u{e9}.txt", "nfc");
    file(&mut d, 8, NodeId::ROOT, "cafe\u{301}.txt", "nfd");
    d.commit(WallTime(2));
    // Every device that tells names apart sees the document's names.
    let exact = d.derive();
    assert_eq!(exact.len(), 7);
    assert!(exact.lookup("Readme.md").is_some() && exact.lookup("README.md").is_some());
    // The smaller id keeps the name; the other is a clash copy, children following it.
    let folded = d.derive_for(DiskNames::CaseInsensitive);
    assert_eq!(folded.path_of(id(3)), Some("README.md"));
    assert_eq!(folded.path_of(id(9)), Some("Readme (case clash 2).md"));
    assert_eq!(folded.path_of(id(4)), Some("Docs"));
    assert_eq!(folded.path_of(id(5)), Some("docs (case clash 2)"));
    assert_eq!(folded.path_of(id(6)), Some("docs (case clash 2)/a.txt"));
    assert_eq!(folded.path_of(id(7)), Some("caf\u{e9}.txt"));
    assert_eq!(
        folded.path_of(id(8)),
        Some("cafe\u{301} (case clash 2).txt")
    );
    let noted: Vec<&str> = folded
        .name_notes()
        .iter()
        .map(|n| n.path.as_str())
        .collect();
    assert!(noted.contains(&"Readme (case clash 2).md"), "{noted:?}");
    // The same on every derivation: no paths move between runs.
    assert_eq!(
        folded.canonical(),
        d.derive_for(DiskNames::CaseInsensitive).canonical()
    );
    // The exact tree reports the names others cannot hold.
    let reported: Vec<&str> = exact.name_notes().iter().map(|n| n.path.as_str()).collect();
    for path in ["Readme.md", "docs", "cafe\u{301}.txt"] {
        assert!(reported.contains(&path), "{path} reported: {reported:?}");
    }
}

#[test]
fn a_clash_name_taken_already_gets_the_next_number() {
    let mut d = doc(1);
    file(&mut d, 1, NodeId::ROOT, "a.txt", "1");
    file(&mut d, 2, NodeId::ROOT, "A.txt", "2");
    file(&mut d, 3, NodeId::ROOT, "a (case clash 2).txt", "3");
    file(&mut d, 4, NodeId::ROOT, "A.TXT", "4");
    d.commit(WallTime(2));
    assert_eq!(
        folded_listing(&d),
        vec![
            "A (case clash 3).txt",
            "A (case clash 4).TXT",
            "a (case clash 2).txt",
            "a.txt",
        ]
    );
}

#[test]
fn names_windows_refuses_are_reported() {
    let mut d = doc(1);
    file(&mut d, 1, NodeId::ROOT, "aux.c", "1");
    file(&mut d, 2, NodeId::ROOT, "fine.txt", "2");
    file(&mut d, 3, NodeId::ROOT, "why?", "3");
    d.commit(WallTime(2));
    let tree = d.derive();
    let reported: Vec<&str> = tree.name_notes().iter().map(|n| n.path.as_str()).collect();
    assert_eq!(reported.len(), 2, "{reported:?}");
    assert!(reported.contains(&"aux.c") && reported.contains(&"why?"));
}
