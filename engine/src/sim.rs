//! Deterministic simulation: several devices and a relay built from the engine's own state
//! machines (scan, materialise, [`PeerSync`], [`FolderHub`], [`FolderDoc`]) in one process, with
//! in-memory folders and a seeded scheduler that interleaves user edits, message deliveries,
//! connection cuts, partitions and crash-restarts.
//!
//! After healing, it asserts that (a) every device holds the same folder, byte for byte, and
//! derives the same tree, and (b) every content a user wrote is still somewhere in the folder,
//! unless a later operation by a device that had seen it replaced or deleted it. `CLOUD3_SEED=N`
//! replays one run; a failing run names its seed.

pub mod disk;

use std::collections::{BTreeMap, HashMap, VecDeque};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ids::{ChunkId, NodeId, ShortDeviceId};
use crate::materialise;
use crate::scan::{DocOp, Scanner};
use crate::session::{DocOutgoing, FolderHub, PeerSync};
use crate::time::WallTime;
use crate::tree::{FolderDoc, NodeKind};
use disk::{MemDisk, content_hash};

/// How a run went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFailure {
    /// The seed that reproduces it.
    pub seed: u64,
    /// What was violated.
    pub what: String,
}

/// A write a user made, for the survival ledger.
#[derive(Clone, Debug)]
struct Written {
    bytes: Vec<u8>,
    node: Option<NodeId>,
    /// The change that recorded it (set when the scan commits).
    change: Option<[u8; 32]>,
}

struct Device {
    short: ShortDeviceId,
    name: String,
    disk: MemDisk,
    doc: FolderDoc,
    saved: Vec<u8>,
    sync: PeerSync,
    /// Contents scanned but not yet uploaded.
    pending: HashMap<ChunkId, Vec<u8>>,
    online: bool,
    to_relay: VecDeque<DocOutgoing>,
    from_relay: VecDeque<DocOutgoing>,
    restarts: u32,
}

/// The simulated world.
pub struct World {
    rng: ChaCha8Rng,
    devices: Vec<Device>,
    relay_doc: FolderDoc,
    hub: FolderHub<usize>,
    /// The relay's heads per device, remembered across connections.
    relay_known: Vec<Vec<[u8; 32]>>,
    blobs: HashMap<ChunkId, Vec<u8>>,
    ledger: Vec<Written>,
    /// Ledger indexes of writes superseded on purpose: a device that had seen the write later
    /// replaced or deleted its node.
    superseded: Vec<usize>,
    clock: i64,
    seed: u64,
    /// Users have stopped editing.
    healing: bool,
    /// Print every event (`CLOUD3_SIM_TRACE=1`).
    trace: bool,
}

const NAMES: [&str; 5] = ["a", "b", "c.txt", "d.md", "e"];

/// Plans applied per materialise when actions were skipped (as the agent does).
const MATERIALISE_PASSES: usize = 3;

/// Deliveries after faults stop within which every device must hold the final tree.
const HEAL_STEPS: usize = 2_000;

fn actor(device: usize, restarts: u32) -> Vec<u8> {
    let mut actor = vec![device as u8 + 1; 12];
    actor.extend_from_slice(&restarts.to_le_bytes());
    actor
}

impl World {
    /// A world of `n` devices, all online.
    pub fn new(seed: u64, n: usize) -> World {
        let devices = (0..n)
            .map(|idx| {
                let mut doc = FolderDoc::new(&actor(idx, 0));
                let saved = doc.save();
                Device {
                    short: ShortDeviceId([idx as u8 + 1; 8]),
                    name: format!("dev{idx}"),
                    disk: MemDisk::default(),
                    doc,
                    saved,
                    sync: PeerSync::new(),
                    pending: HashMap::new(),
                    online: false,
                    to_relay: VecDeque::new(),
                    from_relay: VecDeque::new(),
                    restarts: 0,
                }
            })
            .collect();
        let mut world = World {
            rng: ChaCha8Rng::seed_from_u64(seed),
            devices,
            relay_doc: FolderDoc::new(&[0xee; 16]),
            hub: FolderHub::new(),
            relay_known: vec![Vec::new(); n],
            blobs: HashMap::new(),
            ledger: Vec::new(),
            superseded: Vec::new(),
            clock: 1_000,
            seed,
            healing: false,
            trace: std::env::var_os("CLOUD3_SIM_TRACE").is_some(),
        };
        for idx in 0..n {
            world.connect(idx);
        }
        world
    }

    /// Runs `steps` random events, heals, and checks the invariants.
    pub fn run(mut self, steps: usize) -> Result<(), SimFailure> {
        for _ in 0..steps {
            self.clock += self.rng.random_range(1..2_000);
            let idx = self.rng.random_range(0..self.devices.len());
            match self.rng.random_range(0..100) {
                0..35 => self.user_edit(idx),
                35..40 => self.watcher_scan(idx),
                40..76 => {
                    let to_relay = self.rng.random_bool(0.5);
                    self.deliver(idx, to_relay);
                }
                76..78 => self.duplicate(idx),
                78..80 => self.drop_message(idx),
                80..86 => self.cut(idx),
                86..92 => self.connect(idx),
                92..95 => self.crash(idx),
                _ => self.materialise(idx),
            }
        }
        self.heal()?;
        self.check()
    }

    fn fail(&self, what: String) -> SimFailure {
        SimFailure {
            seed: self.seed,
            what,
        }
    }

    /// A user operation followed (usually) by the agent's scan, as its watcher reports it;
    /// sometimes a burst of same-size rewrites of one file instead.
    fn user_edit(&mut self, idx: usize) {
        if self.rng.random_bool(0.15) {
            self.burst(idx);
        } else {
            self.user_op(idx);
        }
        if self.rng.random_bool(0.7) {
            self.watcher_scan(idx);
        }
    }

    /// What editors, formatters and build tools do: one file rewritten a few times in a row,
    /// every write the same size, the watcher sometimes firing between two of them.
    fn burst(&mut self, idx: usize) {
        let files: Vec<String> = self.devices[idx]
            .disk
            .visible()
            .filter(|(_, e)| e.kind == NodeKind::File)
            .map(|(p, _)| p.clone())
            .collect();
        if files.is_empty() {
            return self.user_op(idx);
        }
        let file = files[self.rng.random_range(0..files.len())].clone();
        for _ in 0..self.rng.random_range(2..5) {
            let fresh = format!(
                "{:020}:{:010}:{:010}",
                self.seed,
                self.clock,
                self.rng.random_range(0..1_000_000_000u32)
            );
            self.write(idx, &file, fresh.into_bytes());
            self.clock += self.rng.random_range(0..6);
            if self.rng.random_bool(0.3) {
                self.watcher_scan(idx);
            }
        }
    }

    /// The agent's reaction to a watcher event: scan; when that recorded something, send it and
    /// bring the disk to the merged document (a recorded edit can need a conflict copy written).
    fn watcher_scan(&mut self, idx: usize) {
        if self.scan(idx) && self.devices[idx].online {
            self.materialise(idx);
        }
    }

    /// One random user operation on a device's folder, without any scan.
    fn user_op(&mut self, idx: usize) {
        let rng = &mut self.rng;
        let disk = &self.devices[idx].disk;
        let dirs: Vec<String> = std::iter::once(String::new())
            .chain(
                disk.visible()
                    .filter(|(_, e)| e.kind == NodeKind::Dir)
                    .map(|(p, _)| p.clone()),
            )
            .collect();
        let files: Vec<String> = disk
            .visible()
            .filter(|(_, e)| e.kind == NodeKind::File)
            .map(|(p, _)| p.clone())
            .collect();
        let all: Vec<String> = disk.visible().map(|(p, _)| p.clone()).collect();
        let dir = dirs[rng.random_range(0..dirs.len())].clone();
        let name = NAMES[rng.random_range(0..NAMES.len())];
        let target = if dir.is_empty() {
            name.to_owned()
        } else {
            format!("{dir}/{name}")
        };
        let fresh = format!(
            "{}:{}:{}",
            self.seed,
            self.clock,
            rng.random_range(0..1_000_000u32)
        )
        .into_bytes();
        let op = rng.random_range(0..10);
        let free = !disk.entries.contains_key(&target);
        match op {
            0..3 if free => self.write(idx, &target, fresh),
            3..6 if !files.is_empty() => {
                let file = files[rng.random_range(0..files.len())].clone();
                self.write(idx, &file, fresh);
            }
            6 if free => self.devices[idx].disk.mkdir(&target),
            7 | 8 if !all.is_empty() => {
                let from = all[rng.random_range(0..all.len())].clone();
                let into_itself = target == from || target.starts_with(&format!("{from}/"));
                if !into_itself && free {
                    self.devices[idx].disk.rename(&from, &target);
                }
            }
            9 if !all.is_empty() => {
                let path = all[rng.random_range(0..all.len())].clone();
                self.forget_local(idx, &path);
                self.devices[idx].disk.remove_tree(&path);
            }
            _ => {}
        }
    }

    /// The user writes a file: a new ledger entry; what it overwrote is gone on purpose.
    fn write(&mut self, idx: usize, path: &str, bytes: Vec<u8>) {
        if self.trace {
            eprintln!(
                "dev{idx} writes {path}: {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        self.forget_local(idx, path);
        self.devices[idx].disk.write(path, bytes.clone());
        self.ledger.push(Written {
            bytes,
            node: None,
            change: None,
        });
    }

    /// The user destroys `path` (and what is under it): the writes it held, recorded or not,
    /// are superseded by a user who saw them there (a file overwritten before any scan recorded
    /// it, or a conflict copy read and then rewritten), not lost by sync.
    fn forget_local(&mut self, idx: usize, path: &str) {
        let prefix = format!("{path}/");
        let destroyed: Vec<Vec<u8>> = self.devices[idx]
            .disk
            .entries
            .iter()
            .filter(|(p, _)| *p == path || p.starts_with(&prefix))
            .map(|(_, e)| e.bytes.clone())
            .collect();
        for (i, written) in self.ledger.iter().enumerate() {
            if destroyed.contains(&written.bytes) {
                self.superseded.push(i);
            }
        }
    }

    /// Records local changes into the document (the agent's scan); whether it recorded any.
    fn scan(&mut self, idx: usize) -> bool {
        let now = WallTime(self.clock);
        let device = &mut self.devices[idx];
        let disk_view = device.disk.scan_view(device.short, now);
        let known = device.disk.known();
        let remote = device.doc.derive().into_remote_entries();
        let scanner = Scanner {
            device_name: &device.name,
            now,
        };
        let rng = &mut self.rng;
        let result = scanner.scan(&disk_view, &known, &remote, || NodeId(rng.random()));
        if self.trace && !result.ops.is_empty() {
            eprintln!(
                "dev{idx} scan: {:?}, conflict copies {:?}",
                result.ops, result.conflict_copies
            );
        }
        for (from, to) in &result.conflict_copies {
            device.disk.rename(from, to);
        }
        if result.ops.is_empty() {
            device.disk.reindex(&result.nodes);
            return false;
        }
        let mut touched: Vec<NodeId> = Vec::new();
        for op in &result.ops {
            let outcome = op.apply(&mut device.doc, device.short, now);
            outcome.expect("scan ops apply to the document they were computed from");
            if let DocOp::SetContent { id, .. } | DocOp::Delete { id } = op {
                touched.push(*id);
            }
            if let DocOp::Create {
                content: Some(c), ..
            }
            | DocOp::SetContent { content: c, .. } = op
            {
                let bytes = device
                    .disk
                    .entries
                    .values()
                    .find(|e| content_hash(&e.bytes) == c.hash())
                    .map(|e| e.bytes.clone());
                if let Some(bytes) = bytes {
                    device.pending.insert(c.hash(), bytes);
                }
            }
        }
        let change = device.doc.commit(now);
        // Ledger: the writes this change superseded (reading the document would close an open
        // transaction, so this comes after the commit), then the ones it recorded.
        for (i, written) in self.ledger.iter().enumerate() {
            if let (Some(node), Some(change)) = (written.node, written.change)
                && touched.contains(&node)
                && device.doc.has_change(&change)
            {
                self.superseded.push(i);
            }
        }
        for op in &result.ops {
            let (id, content) = match op {
                DocOp::Create {
                    id,
                    content: Some(c),
                    ..
                }
                | DocOp::SetContent { id, content: c } => (*id, c),
                _ => continue,
            };
            for written in self.ledger.iter_mut().filter(|w| w.change.is_none()) {
                if content_hash(&written.bytes) == content.hash() {
                    written.node = Some(id);
                    written.change = change;
                }
            }
        }
        device.disk.reindex(&result.nodes);
        device.saved = device.doc.save();
        if device.online {
            self.push(idx);
        }
        true
    }

    /// Uploads pending contents, then sends the document changes the relay lacks.
    fn push(&mut self, idx: usize) {
        let device = &mut self.devices[idx];
        for (hash, bytes) in device.pending.drain() {
            self.blobs.insert(hash, bytes);
        }
        let out = device.sync.on_local_change(&mut device.doc);
        device.to_relay.extend(out);
    }

    /// The agent's materialise: local edits scanned first, then the plan applied; actions
    /// skipped because the disk changed meanwhile are planned again after a rescan, a bounded
    /// number of times (as `Session::materialise` does).
    fn materialise(&mut self, idx: usize) {
        self.scan(idx);
        for _ in 0..MATERIALISE_PASSES {
            let device = &mut self.devices[idx];
            let remote = device.doc.derive().into_remote_entries();
            let plan = materialise::plan(&remote, &device.disk.known());
            if plan.is_empty() {
                return;
            }
            if self.trace {
                eprintln!("dev{idx} materialise: {plan:?}");
            }
            if !self.healing && self.rng.random_bool(0.3) {
                // The user is faster than the agent: an edit lands between planning and applying.
                self.user_op(idx);
            }
            if self.devices[idx].disk.apply(plan, &self.blobs) == 0 {
                return;
            }
            self.scan(idx);
        }
    }

    /// Delivers one message in one direction of this device's connection.
    fn deliver(&mut self, idx: usize, to_relay: bool) {
        if !self.devices[idx].online {
            return;
        }
        if to_relay {
            let Some(message) = self.devices[idx].to_relay.pop_front() else {
                return;
            };
            if self.trace {
                eprintln!("dev{idx} -> relay: {}", describe(&message));
            }
            let out = match message {
                DocOutgoing::Heads(heads) => self.hub.on_heads(&mut self.relay_doc, idx, heads),
                DocOutgoing::Changes(changes) => self
                    .hub
                    .on_changes(&mut self.relay_doc, idx, changes)
                    .expect("devices send valid changes"),
            };
            for (to, message) in out {
                if self.devices[to].online {
                    self.devices[to].from_relay.push_back(message);
                }
            }
        } else {
            let Some(message) = self.devices[idx].from_relay.pop_front() else {
                return;
            };
            if self.trace {
                eprintln!("relay -> dev{idx}: {}", describe(&message));
            }
            let incoming_changes = matches!(message, DocOutgoing::Changes(_));
            if incoming_changes {
                // Local edits first, so they are concurrent with what arrives.
                self.scan(idx);
            }
            let device = &mut self.devices[idx];
            let out = match message {
                DocOutgoing::Heads(heads) => device.sync.on_heads(&mut device.doc, heads),
                DocOutgoing::Changes(changes) => device
                    .sync
                    .on_changes(&mut device.doc, changes)
                    .expect("the relay sends valid changes"),
            };
            device.saved = device.doc.save();
            device.to_relay.extend(out);
            if incoming_changes {
                self.materialise(idx);
            }
        }
    }

    /// The next message in one direction arrives twice (a retried send).
    fn duplicate(&mut self, idx: usize) {
        let to_relay = self.rng.random_bool(0.5);
        let device = &mut self.devices[idx];
        let queue = if to_relay {
            &mut device.to_relay
        } else {
            &mut device.from_relay
        };
        if let Some(message) = queue.front().cloned() {
            queue.push_front(message);
        }
        self.deliver(idx, to_relay);
        self.deliver(idx, to_relay);
    }

    /// A message is lost. The transport is ordered and reliable while a connection lives, so a
    /// loss is a broken connection: the message and everything queued behind it are gone.
    fn drop_message(&mut self, idx: usize) {
        let device = &mut self.devices[idx];
        if device.to_relay.pop_front().is_some() || device.from_relay.pop_front().is_some() {
            self.cut(idx);
        }
    }

    fn cut(&mut self, idx: usize) {
        let device = &mut self.devices[idx];
        if !device.online {
            return;
        }
        device.online = false;
        device.to_relay.clear();
        device.from_relay.clear();
        if let Some(heads) = self.hub.disconnect(idx) {
            self.relay_known[idx] = heads;
        }
    }

    fn connect(&mut self, idx: usize) {
        if self.devices[idx].online {
            return;
        }
        self.hub.connect(idx, self.relay_known[idx].clone());
        let device = &mut self.devices[idx];
        device.online = true;
        device.sync = PeerSync::with_their_heads(device.sync.confirmed_heads());
        let out = device.sync.start(&mut device.doc);
        device.to_relay.extend(out);
        self.push(idx);
    }

    /// Crash and restart: memory is lost, the saved document and the folder survive.
    fn crash(&mut self, idx: usize) {
        self.cut(idx);
        let device = &mut self.devices[idx];
        device.restarts += 1;
        device.doc = FolderDoc::load(&device.saved, &actor(idx, device.restarts))
            .expect("saved documents load");
        // Sync state is memory only; pending uploads are durable (the agent re-derives them
        // from its index and files), so they are kept.
        device.sync = PeerSync::new();
        self.connect(idx);
    }

    /// Faults stop: every device comes online, and the agents do only what events make them
    /// do (each pending watcher event is one scan; each message delivered is handled as the
    /// agent handles it). No timer runs: nothing materialises or rescans unprompted, so a
    /// device that could only catch up through a periodic rescan or a keep-alive fails the
    /// liveness bound here.
    fn heal(&mut self) -> Result<(), SimFailure> {
        self.healing = true;
        for idx in 0..self.devices.len() {
            let was_online = self.devices[idx].online;
            self.connect(idx);
            if !was_online {
                // A connecting agent brings its disk to the document once.
                self.materialise(idx);
            }
            // The watcher's event for edits no scan recorded yet.
            self.watcher_scan(idx);
        }
        let mut steps = 0;
        loop {
            let mut moved = false;
            for idx in 0..self.devices.len() {
                for to_relay in [true, false] {
                    let queue = if to_relay {
                        &self.devices[idx].to_relay
                    } else {
                        &self.devices[idx].from_relay
                    };
                    if !queue.is_empty() {
                        moved = true;
                        steps += 1;
                        self.deliver(idx, to_relay);
                    }
                }
            }
            if !moved {
                return Ok(());
            }
            if steps > HEAL_STEPS {
                return Err(self.fail(format!(
                    "liveness: messages still moving after {HEAL_STEPS} deliveries"
                )));
            }
        }
    }

    fn check(mut self) -> Result<(), SimFailure> {
        let folders: Vec<BTreeMap<String, (NodeKind, Vec<u8>)>> = self
            .devices
            .iter()
            .map(|device| {
                device
                    .disk
                    .visible()
                    .map(|(p, e)| (p.clone(), (e.kind, e.bytes.clone())))
                    .collect()
            })
            .collect();
        let tree0 = self.devices[0].doc.derive().canonical();
        for idx in 0..self.devices.len() {
            let tree = self.devices[idx].doc.derive();
            if idx > 0 && tree.canonical() != tree0 {
                return Err(self.fail(format!("device {idx} derives another tree")));
            }
            let derived: Vec<String> = tree
                .into_remote_entries()
                .into_values()
                .map(|e| e.path)
                .collect();
            let derived: std::collections::BTreeSet<String> = derived.into_iter().collect();
            let on_disk: std::collections::BTreeSet<String> =
                folders[idx].keys().cloned().collect();
            if derived != on_disk {
                return Err(self.fail(format!(
                    "device {idx}'s folder is not its tree: only on disk {:?}, only in the tree {:?}",
                    on_disk.difference(&derived).collect::<Vec<_>>(),
                    derived.difference(&on_disk).collect::<Vec<_>>()
                )));
            }
            let parked: Vec<&String> = self.devices[idx]
                .disk
                .entries
                .keys()
                .filter(|p| disk::is_state(p))
                .collect();
            if !parked.is_empty() {
                return Err(self.fail(format!("device {idx} left entries in staging: {parked:?}")));
            }
            if idx > 0 && folders[idx] != folders[0] {
                let only_here: Vec<_> = folders[idx]
                    .keys()
                    .filter(|p| !folders[0].contains_key(*p))
                    .collect();
                let only_there: Vec<_> = folders[0]
                    .keys()
                    .filter(|p| !folders[idx].contains_key(*p))
                    .collect();
                return Err(self.fail(format!(
                    "device {idx}'s folder differs from device 0's: only here {only_here:?}, only on 0 {only_there:?} (or contents differ)"
                )));
            }
        }
        let present: Vec<Vec<u8>> = folders[0]
            .values()
            .map(|(_, bytes)| bytes.clone())
            .collect();
        self.superseded.sort_unstable();
        for (i, written) in self.ledger.iter().enumerate() {
            if self.superseded.binary_search(&i).is_ok() {
                continue;
            }
            if written.change.is_none() {
                return Err(self.fail(format!(
                    "a write was never recorded (overwritten before a scan saw it): {:?}",
                    String::from_utf8_lossy(&written.bytes)
                )));
            }
            if !present.contains(&written.bytes) {
                return Err(self.fail(format!(
                    "a write was lost: {:?}",
                    String::from_utf8_lossy(&written.bytes)
                )));
            }
        }
        Ok(())
    }
}

/// Runs the simulation for `seeds` seeds starting at `first` (or only `CLOUD3_SEED` if set),
/// spread over the machine's cores. Returns how many seeds ran, or every failure, smallest seed
/// first.
pub fn run_seeds(
    first: u64,
    seeds: u64,
    devices: usize,
    steps: usize,
) -> Result<u64, Vec<SimFailure>> {
    let seeds: Vec<u64> = match std::env::var("CLOUD3_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (first..first + seeds).collect(),
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut failures: Vec<SimFailure> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut failures = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&seed) = seeds.get(i) else { break };
                        let run = std::panic::catch_unwind(|| World::new(seed, devices).run(steps));
                        match run {
                            Ok(Ok(())) => {}
                            Ok(Err(failure)) => failures.push(failure),
                            Err(panic) => failures.push(SimFailure {
                                seed,
                                what: format!("panicked: {}", panic_message(&*panic)),
                            }),
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("simulation worker panicked"))
            .collect()
    });
    if failures.is_empty() {
        return Ok(seeds.len() as u64);
    }
    failures.sort_by_key(|f| f.seed);
    Err(failures)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".into())
}

fn describe(message: &DocOutgoing) -> String {
    match message {
        DocOutgoing::Heads(heads) => {
            let short: Vec<String> = heads.iter().map(|h| hex::encode(&h[..4])).collect();
            format!("heads {short:?}")
        }
        DocOutgoing::Changes(changes) => format!("{} changes", changes.len()),
    }
}
