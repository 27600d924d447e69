//! Memory a document keeps after applying a peer's changes: a device catching up on a large
//! folder, and the relay applying every device's changes for as long as it runs, must hold about
//! what the document itself needs, not a record of everything ever applied.

use cloud3_engine::chunk::{Manifest, ManifestEntry};
use cloud3_engine::ids::{ChunkId, NodeId, ShortDeviceId};
use cloud3_engine::session::docsync::split_changes;
use cloud3_engine::time::WallTime;
use cloud3_engine::tree::{Content, ContentBody, FolderDoc, NodeKind};
use cloud3_engine::wire::limits::MAX_OPS_PER_CHANGE;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const AUTHOR: ShortDeviceId = ShortDeviceId([3; 8]);

/// Heap bytes `work` leaves allocated (what it returns included).
fn retained<T>(work: impl FnOnce() -> T) -> (T, isize) {
    let region = Region::new(ALLOCATOR);
    let value = work();
    let change = region.change();
    // Growth by reallocation is already counted in the allocated and deallocated totals.
    let net = change.bytes_allocated as isize - change.bytes_deallocated as isize;
    (value, net)
}

/// A folder of `files` files in directories of 100, committed as the agent commits.
fn folder(files: usize) -> FolderDoc {
    let mut doc = FolderDoc::new(&[1; 16]);
    let now = WallTime(1_700_000_000_000);
    let mut dir = NodeId::ROOT;
    for i in 0..files {
        if i % 100 == 0 {
            dir = NodeId::derived("dir", &[&(i as u64).to_le_bytes()]);
            let name = format!("d{i}");
            doc.create_node(
                dir,
                NodeId::ROOT,
                &name,
                NodeKind::Dir,
                0o755,
                None,
                AUTHOR,
                now,
            )
            .expect("create dir");
        }
        let content = Content {
            size: i as u64,
            mtime: now,
            written_at: now,
            author: AUTHOR,
            body: ContentBody::Inline(Manifest {
                entries: vec![ManifestEntry {
                    id: ChunkId::of(&i.to_le_bytes()),
                    len: i as u32,
                }],
            }),
        };
        let id = NodeId::derived("file", &[&(i as u64).to_le_bytes()]);
        let name = format!("f{i}.txt");
        doc.create_node(
            id,
            dir,
            &name,
            NodeKind::File,
            0o644,
            Some(content),
            AUTHOR,
            now,
        )
        .expect("create file");
        if i % (MAX_OPS_PER_CHANGE / 8) == 0 {
            doc.commit(now);
        }
    }
    doc.commit(now);
    doc
}

#[test]
fn applying_a_catch_up_keeps_about_what_loading_the_document_keeps() {
    let mut source = folder(20_000);
    let saved = source.save();
    let (loaded, loaded_bytes) = retained(|| FolderDoc::load(&saved, &[2; 16]).expect("load"));
    drop(loaded);
    let messages = split_changes(source.changes_since(&[]));
    let (caught_up, applied_bytes) = retained(|| {
        let mut doc = FolderDoc::new(&[2; 16]);
        for changes in messages {
            doc.apply_changes(changes).expect("valid changes");
        }
        doc
    });
    assert_eq!(caught_up.derive().len(), source.derive().len());
    eprintln!("loaded: {loaded_bytes} B, caught up by changes: {applied_bytes} B");
    assert!(
        applied_bytes < 3 * loaded_bytes,
        "a caught-up document holds {applied_bytes} B, a loaded one {loaded_bytes} B"
    );
}
