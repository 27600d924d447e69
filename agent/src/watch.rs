//! The folder watcher as the daemon sees it: batches of paths that may have changed, and the
//! files still being written, which a scan must not publish yet.
//!
//! Only events that can change what the folder holds count. Opens, reads and closes without a
//! write (the daemon's own hashing among them) are dropped where the watcher reports them, and so
//! is everything under `.cloud3/`: an idle daemon gets no events and sleeps.
//!
//! A file is *being written* from a data write (or its creation) until the writer closes it
//! (`IN_CLOSE_WRITE`), or until it has seen no write for [`HOLD_QUIET`], or for at most
//! [`HOLD_AT_MOST`] (a program that keeps a file open for good, such as a log, still gets it
//! synced). A copy or download in progress is
//! then one new version when it completes, never a string of partial versions; a file saved
//! once (open, write, close within the debounce) is not held at all.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cloud3_engine::scan::split_path;
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::AgentError;
use crate::state::STATE_DIR;
use crate::walk::relative_path;

/// How long a file open for writing may go without a write before it is published anyway.
pub const HOLD_QUIET: Duration = Duration::from_secs(3);

/// Longest a file is held however often it is written (a log kept open and written every
/// second still syncs, a version this often).
pub const HOLD_AT_MOST: Duration = Duration::from_secs(60);

/// Longest a batch gathers events: a folder that never goes quiet (a build writing file after
/// file) is still scanned, and the daemon's other events (the relay's messages) still handled.
const MAX_GATHER: Duration = Duration::from_millis(250);

/// What the watcher reported about one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Bytes were written (or the file was created): a writer may still hold it open.
    Write,
    /// A writer closed it.
    Closed,
    /// Anything else that can change the folder: removal, rename, metadata, a directory.
    Changed,
}

/// A running watcher over the folder.
pub struct FolderWatch {
    root: PathBuf,
    debounce: Duration,
    rx: mpsc::UnboundedReceiver<(Seen, PathBuf)>,
    /// Files being written: when they were first held, and their last write.
    writing: HashMap<String, Held>,
    /// Paths gathered for the batch being collected.
    batch: HashSet<String>,
    /// When the batch being collected is cut off.
    gather_until: Instant,
    _watcher: RecommendedWatcher,
}

impl FolderWatch {
    /// Watches `root` recursively; events are gathered for `debounce` after the first.
    pub fn start(root: &Path, debounce: Duration) -> Result<FolderWatch, AgentError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let state_dir = root.join(STATE_DIR);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else {
                    return;
                };
                let Some(seen) = classify(&event.kind) else {
                    return;
                };
                for path in event.paths {
                    if !path.starts_with(&state_dir) {
                        let _ = tx.send((seen, path));
                    }
                }
            })
            .map_err(|e| AgentError::Protocol(format!("cannot watch {}: {e}", root.display())))?;
        watcher
            .watch(root, RecursiveMode::Recursive)
            .map_err(|e| AgentError::Protocol(format!("cannot watch {}: {e}", root.display())))?;
        Ok(FolderWatch {
            root: root.to_owned(),
            debounce,
            rx,
            writing: HashMap::new(),
            batch: HashSet::new(),
            gather_until: Instant::now(),
            _watcher: watcher,
        })
    }

    /// The next batch of paths to scan (relative, with their parents): after a first event,
    /// everything reported until the debounce passes without one (at most 250 ms); or the held
    /// files that have been quiet for [`HOLD_QUIET`] (released unwritten-to, though still
    /// open). Paths still being written are in a batch too (their parents' listings changed),
    /// and in [`FolderWatch::holding`].
    ///
    /// Cancel-safe: what a dropped call had gathered stays for the next call.
    pub async fn changes(&mut self) -> HashSet<String> {
        if self.batch.is_empty() {
            let due = self.writing.values().map(Held::due).min();
            let release = async move {
                match due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                first = self.rx.recv() => match first {
                    Some(first) => self.note(first),
                    // The watcher is gone: nothing more will come.
                    None => return std::future::pending().await,
                },
                () = release => return self.release_quiet(),
            }
            self.gather_until = Instant::now() + MAX_GATHER;
        }
        loop {
            let wait = self
                .debounce
                .min(self.gather_until.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, self.rx.recv()).await {
                Ok(Some(next)) => self.note(next),
                _ => break,
            }
        }
        with_parents(std::mem::take(&mut self.batch))
    }

    /// Files being written now: a scan keeps their last recorded version.
    pub fn holding(&self) -> HashSet<String> {
        self.writing.keys().cloned().collect()
    }

    fn release_quiet(&mut self) -> HashSet<String> {
        let now = Instant::now();
        let mut paths = HashSet::new();
        self.writing.retain(|path, held| {
            let due = held.due() <= now;
            if due {
                tracing::debug!(path, "published although still open");
                paths.insert(path.clone());
            }
            !due
        });
        with_parents(paths)
    }

    fn note(&mut self, (seen, path): (Seen, PathBuf)) {
        let Some(relative) = relative_path(&self.root, &path) else {
            return;
        };
        match seen {
            Seen::Write => {
                let now = Instant::now();
                self.writing
                    .entry(relative.clone())
                    .and_modify(|held| held.last = now)
                    .or_insert(Held {
                        since: now,
                        last: now,
                    });
            }
            Seen::Closed => {
                self.writing.remove(&relative);
            }
            Seen::Changed => {
                // Renamed or removed: what is at the path now is not the file being written.
                let inside = format!("{relative}/");
                self.writing
                    .retain(|p, _| p != &relative && !p.starts_with(&inside));
            }
        }
        self.batch.insert(relative);
    }
}

/// A file being written.
#[derive(Clone, Copy, Debug)]
struct Held {
    since: Instant,
    last: Instant,
}

impl Held {
    /// When it is published though still open: quiet for [`HOLD_QUIET`], or held for
    /// [`HOLD_AT_MOST`].
    fn due(&self) -> Instant {
        (self.last + HOLD_QUIET).min(self.since + HOLD_AT_MOST)
    }
}

/// Which events can change the folder; `None` for those that cannot (opens, reads, closes
/// without a write).
fn classify(kind: &EventKind) -> Option<Seen> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Seen::Closed),
        EventKind::Access(_) => None,
        EventKind::Create(CreateKind::File) | EventKind::Modify(ModifyKind::Data(_)) => {
            Some(Seen::Write)
        }
        _ => Some(Seen::Changed),
    }
}

/// A change inside a directory may mean its parent's listing changed too.
fn with_parents(mut paths: HashSet<String>) -> HashSet<String> {
    let parents: Vec<String> = paths
        .iter()
        .filter_map(|p| split_path(p).0.map(str::to_owned))
        .collect();
    paths.extend(parents);
    paths
}

#[cfg(test)]
mod tests {
    use notify::event::{DataChange, MetadataKind, RemoveKind, RenameMode};

    use super::*;

    #[test]
    fn reads_and_opens_are_not_changes() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Any),
        ] {
            assert_eq!(classify(&kind), None, "{kind:?}");
        }
    }

    #[test]
    fn writes_closes_and_other_changes_are_told_apart() {
        assert_eq!(
            classify(&EventKind::Modify(ModifyKind::Data(DataChange::Any))),
            Some(Seen::Write)
        );
        assert_eq!(
            classify(&EventKind::Create(CreateKind::File)),
            Some(Seen::Write)
        );
        assert_eq!(
            classify(&EventKind::Access(AccessKind::Close(AccessMode::Write))),
            Some(Seen::Closed)
        );
        for kind in [
            EventKind::Create(CreateKind::Folder),
            EventKind::Remove(RemoveKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Permissions)),
            EventKind::Any,
        ] {
            assert_eq!(classify(&kind), Some(Seen::Changed), "{kind:?}");
        }
    }

    #[tokio::test]
    async fn a_file_is_held_from_its_first_write_until_its_writer_closes_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut watch =
            FolderWatch::start(dir.path(), Duration::from_millis(30)).expect("watcher starts");
        let path = dir.path().join("slow.bin");
        let mut file = std::fs::File::create(&path).expect("create");
        std::io::Write::write_all(&mut file, b"first part").expect("write");
        let batch = watch.changes().await;
        assert!(batch.contains("slow.bin"), "{batch:?}");
        assert!(watch.holding().contains("slow.bin"), "open for writing");
        drop(file);
        let batch = watch.changes().await;
        assert!(batch.contains("slow.bin"), "{batch:?}");
        assert!(watch.holding().is_empty(), "closed: published");
    }

    #[tokio::test]
    async fn a_batch_cut_short_by_another_event_is_kept_for_the_next_call() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut watch =
            FolderWatch::start(dir.path(), Duration::from_millis(200)).expect("watcher starts");
        std::fs::write(dir.path().join("saved.txt"), b"x").expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The daemon's select picks another event while this batch is gathering.
        let cut = tokio::time::timeout(Duration::from_millis(20), watch.changes()).await;
        assert!(cut.is_err(), "still gathering");
        let batch = watch.changes().await;
        assert!(batch.contains("saved.txt"), "{batch:?}");
    }

    #[tokio::test]
    async fn the_daemons_own_reads_and_state_dir_wake_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.txt"), b"hello").expect("write");
        std::fs::create_dir(dir.path().join(STATE_DIR)).expect("state dir");
        let mut watch =
            FolderWatch::start(dir.path(), Duration::from_millis(30)).expect("watcher starts");
        for _ in 0..5 {
            let _ = std::fs::read(dir.path().join("a.txt")).expect("read");
            std::fs::write(dir.path().join(STATE_DIR).join("status.json"), b"{}")
                .expect("state write");
        }
        let woke = tokio::time::timeout(Duration::from_millis(300), watch.changes()).await;
        assert!(woke.is_err(), "woken by {woke:?}");
    }
}
