//! The folder document at 10k and 100k nodes: operations, save/load, tree derivation, and the
//! bytes the sync protocol sends. Sizes that are not timings (saved bytes per node, peak heap of a
//! derivation, bytes on the wire) are printed once per size as `figure:` lines.

#![allow(unsafe_code)] // The counting allocator below: the only way to measure peak heap here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cloud3_engine::chunk::{Manifest, ManifestEntry};
use cloud3_engine::ids::{ChunkId, FolderId, NodeId, ShortDeviceId};
use cloud3_engine::session::{DocOutgoing, PeerSync};
use cloud3_engine::time::WallTime;
use cloud3_engine::tree::{Content, ContentBody, FolderDoc, NodeKind};
use cloud3_engine::wire::codec::encode_client;
use cloud3_engine::wire::limits::MAX_OPS_PER_CHANGE;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

/// The system allocator, counting live and peak bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes allocated at the peak of `work`, above what was live before it.
fn peak_heap<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let value = work();
    (value, PEAK.load(Ordering::Relaxed) - before)
}

const AUTHOR: ShortDeviceId = ShortDeviceId([7; 8]);
/// Files per directory.
const FANOUT: usize = 100;

fn node(i: usize) -> NodeId {
    NodeId::derived("bench", &[&(i as u64).to_le_bytes()])
}

fn content(i: usize, version: u32) -> Content {
    let seed = [(i as u64).to_le_bytes().as_slice(), &version.to_le_bytes()].concat();
    Content {
        size: 1000 + i as u64,
        mtime: WallTime(1_700_000_000_000 + i as i64),
        written_at: WallTime(1_700_000_000_000 + i as i64 + i64::from(version)),
        author: AUTHOR,
        body: ContentBody::Inline(Manifest {
            entries: vec![ManifestEntry {
                id: ChunkId::of(&seed),
                len: 1000 + i as u32,
            }],
        }),
    }
}

/// A document of `nodes` nodes: directories of [`FANOUT`] files, committed in changes of
/// [`MAX_OPS_PER_CHANGE`] operations as the agent does.
fn build(nodes: usize, actor: u8) -> FolderDoc {
    let mut doc = FolderDoc::new(&[actor; 16]);
    doc.set_device_name(AUTHOR, "bench").expect("device name");
    let now = WallTime(1_700_000_000_000);
    for i in 0..nodes {
        let (kind, parent, name, mode, body) = if i % (FANOUT + 1) == 0 {
            (
                NodeKind::Dir,
                NodeId::ROOT,
                format!("dir-{i:06}"),
                0o755,
                None,
            )
        } else {
            let dir = i - i % (FANOUT + 1);
            let name = format!("file-{i:06}.txt");
            (NodeKind::File, node(dir), name, 0o644, Some(content(i, 0)))
        };
        doc.create_node(node(i), parent, &name, kind, mode, body, AUTHOR, now)
            .expect("create node");
        if (i + 1) % MAX_OPS_PER_CHANGE == 0 {
            doc.commit(now);
        }
    }
    doc.commit(now);
    doc
}

/// A file node of a document built by [`build`].
fn file(k: usize) -> usize {
    k * (FANOUT + 1) / FANOUT + 1
}

fn wire_bytes(folder: &FolderId, out: &[DocOutgoing]) -> usize {
    out.iter()
        .map(|message| encode_client(&message.clone().into_client(folder.clone())).len())
        .sum()
}

/// Runs the sync protocol between two replicas until it is quiet; returns bytes each way.
fn sync(
    a: &mut FolderDoc,
    b: &mut FolderDoc,
    pa: &mut PeerSync,
    pb: &mut PeerSync,
) -> (usize, usize) {
    let folder = FolderId::default_folder();
    let (mut to_b, mut to_a) = (pa.start(a), pb.start(b));
    let (mut a_to_b, mut b_to_a) = (0, 0);
    while !to_b.is_empty() || !to_a.is_empty() {
        a_to_b += wire_bytes(&folder, &to_b);
        b_to_a += wire_bytes(&folder, &to_a);
        let mut next_to_a = Vec::new();
        for message in std::mem::take(&mut to_b) {
            next_to_a.extend(deliver(b, pb, message));
        }
        let mut next_to_b = Vec::new();
        for message in std::mem::take(&mut to_a) {
            next_to_b.extend(deliver(a, pa, message));
        }
        to_a = next_to_a;
        to_b = next_to_b;
    }
    (a_to_b, b_to_a)
}

fn deliver(doc: &mut FolderDoc, peer: &mut PeerSync, message: DocOutgoing) -> Vec<DocOutgoing> {
    match message {
        DocOutgoing::Heads(heads) => peer.on_heads(doc, heads),
        DocOutgoing::Changes(changes) => peer.on_changes(doc, changes).expect("valid changes"),
    }
}

/// Two synced replicas of a `nodes`-node document and their sync states.
fn synced_pair(nodes: usize) -> (FolderDoc, FolderDoc, PeerSync, PeerSync) {
    let mut a = build(nodes, 1);
    let mut b = FolderDoc::load(&a.save(), &[2; 16]).expect("load");
    let (mut pa, mut pb) = (PeerSync::new(), PeerSync::new());
    sync(&mut a, &mut b, &mut pa, &mut pb);
    (a, b, pa, pb)
}

fn figures(nodes: usize) {
    let started = Instant::now();
    let (mut doc, built_heap) = peak_heap(|| build(nodes, 1));
    let build_time = started.elapsed();
    let saved = doc.save();
    let started = Instant::now();
    let (tree, derive_heap) = peak_heap(|| doc.derive());
    let derive_time = started.elapsed();
    assert_eq!(tree.len(), nodes);
    eprintln!(
        "figure: nodes={nodes} build={build_time:.2?} build_peak_heap={}MiB saved_bytes={} \
         saved_bytes_per_node={:.1} derive={derive_time:.2?} derive_peak_heap={}MiB",
        built_heap >> 20,
        saved.len(),
        saved.len() as f64 / nodes as f64,
        derive_heap >> 20,
    );

    // One file edited on one replica of a synced pair.
    let (mut a, mut b, mut pa, mut pb) = synced_pair(nodes);
    a.set_content(node(file(nodes / 3)), content(file(nodes / 3), 1))
        .expect("edit");
    a.commit(WallTime(1_800_000_000_000));
    let folder = FolderId::default_folder();
    let push = pa.on_local_change(&mut a);
    let one_edit = wire_bytes(&folder, &push);
    for message in push {
        deliver(&mut b, &mut pb, message);
    }
    eprintln!("figure: nodes={nodes} one_edit_sync_message_bytes={one_edit}");

    // 1,000 offline edits on each replica, one commit each, then one sync.
    let (mut a, mut b, mut pa, mut pb) = synced_pair(nodes);
    let files = nodes * FANOUT / (FANOUT + 1);
    let step = (files / 2 / 1000).max(1);
    for k in 0..1000 {
        let i = file(k * step);
        a.set_content(node(i), content(i, 2)).expect("edit a");
        a.commit(WallTime(1_800_000_000_000 + k as i64));
        let j = file(files / 2 + k * step);
        b.set_content(node(j), content(j, 3)).expect("edit b");
        b.commit(WallTime(1_800_000_000_000 + k as i64));
    }
    let started = Instant::now();
    let (a_to_b, b_to_a) = sync(&mut a, &mut b, &mut pa, &mut pb);
    let took = started.elapsed();
    assert_eq!(a.heads(), b.heads(), "replicas converged");
    eprintln!(
        "figure: nodes={nodes} offline_edits=1000+1000 wire_bytes_a_to_b={a_to_b} \
         wire_bytes_b_to_a={b_to_a} total_wire_bytes={} sync_time={took:.2?}",
        a_to_b + b_to_a
    );
}

fn document(c: &mut Criterion) {
    // `CLOUD3_BENCH_NODES=10000` runs one size (the default is both).
    let sizes: Vec<usize> = std::env::var("CLOUD3_BENCH_NODES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    for nodes in sizes {
        figures(nodes);
        let mut doc = build(nodes, 1);
        let saved = doc.save();
        let mut group = c.benchmark_group(format!("document_{}k_nodes", nodes / 1000));
        group.sample_size(10);
        group.bench_function("derive_tree", |b| b.iter(|| doc.derive().len()));
        let mut version = 10;
        group.bench_function("edit_one_file_and_commit", |b| {
            b.iter(|| {
                version += 1;
                let i = file(version as usize % (nodes * FANOUT / (FANOUT + 1)));
                doc.set_content(node(i), content(i, version)).expect("edit");
                doc.commit(WallTime(1_800_000_000_000 + i64::from(version)))
            })
        });
        group.bench_function("rename_one_file_and_commit", |b| {
            b.iter(|| {
                version += 1;
                let i = file(version as usize % (nodes * FANOUT / (FANOUT + 1)));
                doc.rename(node(i), node(0), &format!("renamed-{version}"))
                    .expect("rename");
                doc.commit(WallTime(1_800_000_000_000 + i64::from(version)))
            })
        });
        group.bench_function("save_whole", |b| b.iter(|| doc.save().len()));
        group.bench_function("load", |b| {
            b.iter_batched(
                || saved.clone(),
                |bytes| {
                    FolderDoc::load(&bytes, &[3; 16])
                        .expect("load")
                        .node_count()
                },
                BatchSize::LargeInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, document);
criterion_main!(benches);
