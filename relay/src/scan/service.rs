//! The scan queue and its workers. A version named by an accepted change gets a durable
//! `Unscanned { pending }` record before the change is acknowledged or pushed (so under `hold`
//! its chunks are refused from the first moment, and a restart finds it still to scan); workers
//! then stream its chunks from storage through each scanner. A scan that fails (clamd down,
//! slow or killed) is retried with back-off (1 s doubling to 1 min) while other versions go on;
//! the relay's other work never waits for a scan.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud3_engine::chunk;
use cloud3_engine::ids::ChunkId;
use cloud3_engine::tree::{ContentBody, FileVersion};
use cloud3_engine::wire::{ContentVerdict, UnscannedReason, Verdict};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::ScanPolicy;
use super::clamd::{Clamd, ClamdAddr};
use super::denylist::{self, DenyList, DenyListError};
use super::gate::Refusals;
use super::scanner::{ScanError, Scanner, combine};
use crate::error::StoreError;
use crate::metrics::Metrics;
use crate::store::{Storage, VerdictRecord};

/// The scan's settings (see `config.rs` for the keys).
#[derive(Clone, Debug)]
pub struct ScanSettings {
    /// The relay's policy.
    pub policy: ScanPolicy,
    /// Per-account overrides of the policy.
    pub accounts: HashMap<String, ScanPolicy>,
    /// The SHA-256 deny list file, if any.
    pub deny_list: Option<PathBuf>,
    /// clamd's address, if scanning with ClamAV.
    pub clamd: Option<ClamdAddr>,
    /// clamd's `StreamMaxLength`: larger versions are `Unscanned { too large }`.
    pub clamd_max_stream: u64,
    /// Connect, read and write timeout towards clamd.
    pub clamd_timeout: Duration,
    /// Scans at once (default: clamd's `MaxThreads` from `STATS`, else 2).
    pub concurrency: Option<usize>,
    /// How often clamd's `VERSION` is asked, to re-scan after a signature update.
    pub version_check: Duration,
}

impl Default for ScanSettings {
    fn default() -> ScanSettings {
        ScanSettings {
            policy: ScanPolicy::default(),
            accounts: HashMap::new(),
            deny_list: None,
            clamd: None,
            clamd_max_stream: 25 << 20,
            clamd_timeout: Duration::from_secs(30),
            concurrency: None,
            version_check: Duration::from_secs(60),
        }
    }
}

/// Why the scan cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ScanSetupError {
    /// The deny list does not load.
    #[error(transparent)]
    DenyList(#[from] DenyListError),
    /// The stored verdicts do not read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One version to scan.
type Job = (String, ChunkId);
/// Verdicts to tell a user's devices.
type Tell = (String, Vec<ContentVerdict>);

/// Scans at once at most (whatever clamd says).
const MAX_CONCURRENCY: usize = 16;
/// Longest wait before a failed scan is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The scan: queue, workers, verdicts and what they refuse.
pub struct ScanService {
    store: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
    settings: ScanSettings,
    deny: DenyList,
    clamd: Option<Clamd>,
    refusals: Refusals,
    /// Per user, every verdict that is not plainly clean (told to devices on connect).
    notes: Mutex<HashMap<String, BTreeMap<ChunkId, Verdict>>>,
    /// clamd's `VERSION` as last seen.
    signatures: Mutex<Option<String>>,
    /// Failed attempts per version, for the back-off.
    attempts: Mutex<HashMap<Job, u32>>,
    jobs: mpsc::UnboundedSender<Job>,
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>,
    tell: mpsc::UnboundedSender<Tell>,
    told: Mutex<Option<mpsc::UnboundedReceiver<Tell>>>,
}

impl ScanService {
    /// The service over `store`: loads the deny list and the stored verdicts (refusing what
    /// they refuse, queueing what is still pending). Workers start with [`ScanService::start`].
    pub fn new(
        store: Arc<dyn Storage>,
        metrics: Arc<Metrics>,
        settings: ScanSettings,
    ) -> Result<ScanService, ScanSetupError> {
        let deny = DenyList::load(settings.deny_list.as_deref())?;
        let clamd = settings
            .clamd
            .clone()
            .map(|addr| Clamd::new(addr, settings.clamd_timeout, settings.clamd_max_stream));
        let (jobs, queue) = mpsc::unbounded_channel();
        let (tell, told) = mpsc::unbounded_channel();
        let service = ScanService {
            store,
            metrics,
            settings,
            deny,
            clamd,
            refusals: Refusals::default(),
            notes: Mutex::default(),
            signatures: Mutex::default(),
            attempts: Mutex::default(),
            jobs,
            queue: tokio::sync::Mutex::new(queue),
            tell,
            told: Mutex::new(Some(told)),
        };
        for (user, content, record) in service.store.all_verdicts()? {
            service.note(&user, content, &record);
            if record.verdict == pending() {
                let _ = service.jobs.send((user, content));
            }
        }
        Ok(service)
    }

    /// Whether any scanner is configured (a deny list file or clamd). Without one nothing is
    /// recorded or read: versions synced meanwhile are not scanned later.
    pub fn enabled(&self) -> bool {
        self.settings.deny_list.is_some() || self.clamd.is_some()
    }

    /// The policy of `user`'s account.
    pub fn policy(&self, user: &str) -> ScanPolicy {
        self.settings
            .accounts
            .get(user)
            .copied()
            .unwrap_or(self.settings.policy)
    }

    /// Records the versions an accepted change names that have no verdict yet as pending
    /// (durably); returns them for [`ScanService::queue`]. Called before the change is stored,
    /// acknowledged or pushed.
    pub fn record(
        &self,
        user: &str,
        files: &BTreeMap<ChunkId, FileVersion>,
    ) -> Result<Vec<ChunkId>, StoreError> {
        if !self.enabled() {
            return Ok(Vec::new());
        }
        let mut new = Vec::new();
        for (&content, file) in files {
            if self.store.verdict(user, content)?.is_some() {
                continue;
            }
            let (chunks, manifest) = match &file.body {
                ContentBody::Inline(manifest) => {
                    (manifest.entries.iter().map(|e| e.id).collect(), None)
                }
                ContentBody::Blob(id) => (self.store.manifest_chunks(user, *id)?, Some(*id)),
                ContentBody::Symlink(_) => continue,
            };
            new.push((
                content,
                VerdictRecord {
                    verdict: pending(),
                    size: file.size,
                    chunks,
                    manifest,
                    sha256: None,
                    signatures: None,
                    released: false,
                },
            ));
        }
        if new.is_empty() {
            return Ok(Vec::new());
        }
        self.store.put_verdicts(user, &new)?;
        let mut told = Vec::new();
        for (content, record) in &new {
            if self.note(user, *content, record) {
                told.push(ContentVerdict {
                    content: *content,
                    verdict: record.verdict.clone(),
                });
            }
        }
        if !told.is_empty() {
            let _ = self.tell.send((user.to_owned(), told));
        }
        Ok(new.into_iter().map(|(content, _)| content).collect())
    }

    /// Queues recorded versions for the workers, once the change naming them is stored (its
    /// blob references with it: the scan reads chunks as a device would).
    pub fn queue(&self, user: &str, contents: Vec<ChunkId>) {
        for content in contents {
            let _ = self.jobs.send((user.to_owned(), content));
        }
    }

    /// Why `chunk` is not served to `user`'s devices, if it is not.
    pub fn refusal(&self, user: &str, chunk: ChunkId) -> Option<(ChunkId, Verdict)> {
        self.refusals.refusal(user, chunk)
    }

    /// The verdicts of `user` that are not plainly clean, for a device that connects.
    pub fn notes(&self, user: &str) -> Vec<ContentVerdict> {
        let notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        notes.get(user).map_or_else(Vec::new, |n| {
            n.iter()
                .map(|(content, verdict)| ContentVerdict {
                    content: *content,
                    verdict: verdict.clone(),
                })
                .collect()
        })
    }

    /// Releases a version an operator judged a false positive: served from now on, never
    /// scanned again, and devices are told it is clean.
    pub fn release(&self, user: &str, content: ChunkId) -> Result<(), StoreError> {
        let record = release_record(self.store.as_ref(), user, content)?;
        self.settle(user, content, &record);
        Ok(())
    }

    /// Reads the deny list again (SIGHUP): clean versions now listed are flagged at once (by
    /// the whole-file hash their scan recorded), versions the list flagged and no longer lists
    /// are scanned again.
    pub fn reload_deny_list(&self) -> Result<usize, ScanSetupError> {
        let entries = self.deny.reload()?;
        for (user, content, mut record) in self.store.all_verdicts()? {
            let Some(sha256) = record.sha256 else {
                continue;
            };
            if record.released {
                continue;
            }
            let listed = self.deny.check(&sha256);
            let by_list = matches!(&record.verdict, Verdict::Flagged { engine, .. } if engine == denylist::ENGINE);
            if matches!(listed, Verdict::Flagged { .. }) && listed != record.verdict {
                record.verdict = listed;
                self.metrics.flagged.inc();
                self.store
                    .put_verdicts(&user, &[(content, record.clone())])?;
                self.settle(&user, content, &record);
            } else if by_list && listed == Verdict::Clean {
                let _ = self.jobs.send((user, content));
            }
        }
        Ok(entries)
    }

    /// Starts the workers, the task that tells devices, and (with clamd) the signature watch.
    pub fn start(self: &Arc<Self>, relay: Arc<crate::server::Relay>) {
        if !self.enabled() {
            tracing::info!("no deny list and no clamd: file versions are not scanned");
            return;
        }
        let concurrency = self.concurrency();
        tracing::info!(
            policy = ?self.settings.policy,
            clamd = self.clamd.as_ref().map(|c| c.addr().to_string()),
            concurrency,
            "malware scan started"
        );
        for _ in 0..concurrency {
            let service = self.clone();
            tokio::spawn(async move { service.work().await });
        }
        let told = self.told.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut told) = told {
            tokio::spawn(async move {
                while let Some((user, verdicts)) = told.recv().await {
                    relay.hub.tell(&user, verdicts).await;
                }
            });
        }
        if self.clamd.is_some() {
            let service = self.clone();
            tokio::spawn(async move { service.watch_signatures().await });
        }
    }

    fn concurrency(&self) -> usize {
        if let Some(n) = self.settings.concurrency {
            return n.clamp(1, MAX_CONCURRENCY);
        }
        let asked = self.clamd.as_ref().and_then(|c| match c.max_threads() {
            Ok(n) => Some(n),
            Err(error) => {
                tracing::warn!(%error, "cannot ask clamd for its thread count: scanning 2 at once");
                None
            }
        });
        asked.unwrap_or(2).clamp(1, MAX_CONCURRENCY)
    }

    async fn work(self: Arc<Self>) {
        loop {
            let job = {
                let mut queue = self.queue.lock().await;
                match queue.recv().await {
                    Some(job) => job,
                    None => return,
                }
            };
            let service = self.clone();
            let (user, content) = job.clone();
            let started = std::time::Instant::now();
            let outcome = tokio::task::spawn_blocking(move || service.scan(&user, content)).await;
            match outcome {
                Ok(Ok(true)) => {
                    self.metrics
                        .scan_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.attempts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&job);
                }
                Ok(Ok(false)) => {}
                Ok(Err(error)) => self.retry(job, &error.to_string()),
                Err(error) => self.retry(job, &error.to_string()),
            }
        }
    }

    fn retry(&self, job: Job, why: &str) {
        self.metrics.scan_retries.inc();
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
            let n = attempts.entry(job.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let wait = Duration::from_secs(1 << attempt.min(6).saturating_sub(1)).min(MAX_BACKOFF);
        tracing::warn!(user = %job.0, content = %job.1, attempt, ?wait, why, "scan failed; will retry");
        let jobs = self.jobs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = jobs.send(job);
        });
    }

    /// Scans one version; `Ok(false)` when there was nothing to do.
    fn scan(&self, user: &str, content: ChunkId) -> Result<bool, ScanError> {
        let read = |e: StoreError| ScanError::Read(e.to_string());
        let Some(mut record) = self.store.verdict(user, content).map_err(read)? else {
            return Ok(false);
        };
        if record.released {
            return Ok(false);
        }
        if record.chunks.is_empty()
            && let Some(manifest) = record.manifest
        {
            // A change can name a manifest before it is uploaded: never scan that as empty.
            record.chunks = self.store.manifest_chunks(user, manifest).map_err(read)?;
            if record.chunks.is_empty() {
                return Err(ScanError::Read(format!(
                    "manifest {manifest} is not stored yet"
                )));
            }
        }
        let signatures = self.current_signatures();
        let mut scanners: Vec<&dyn Scanner> = vec![&self.deny];
        if let Some(clamd) = &self.clamd {
            scanners.push(clamd);
        }
        let mut passes = scanners
            .iter()
            .map(|s| s.start(record.size))
            .collect::<Result<Vec<_>, _>>()?;
        let mut hasher = Sha256::new();
        for &id in &record.chunks {
            let blob = self
                .store
                .get_chunks(user, &[id], 1)
                .map_err(read)?
                .into_iter()
                .next()
                .and_then(|b| b.transpose())
                .ok_or_else(|| ScanError::Read(format!("chunk {id} is not stored")))?
                .map_err(read)?;
            let raw = chunk::open(id, blob.codec, &blob.bytes, blob.raw_len)
                .map_err(|e| ScanError::Read(e.to_string()))?;
            hasher.update(&raw);
            for pass in &mut passes {
                pass.feed(&raw)?;
            }
        }
        let verdicts = passes
            .into_iter()
            .map(|p| p.finish())
            .collect::<Result<Vec<_>, _>>()?;
        let verdict = combine(verdicts);
        self.metrics.scanned.inc();
        match &verdict {
            Verdict::Flagged { engine, signature } => {
                self.metrics.flagged.inc();
                tracing::warn!(%user, %content, engine, signature, "file version flagged");
            }
            Verdict::Unscanned { reason } => {
                self.metrics.unscanned.inc();
                tracing::info!(%user, %content, %reason, "file version not scanned");
            }
            Verdict::Clean => tracing::debug!(%user, %content, "file version clean"),
        }
        let changed = record.verdict != verdict;
        record.verdict = verdict;
        record.sha256 = Some(hasher.finalize().into());
        record.signatures = signatures;
        self.store
            .put_verdicts(user, &[(content, record.clone())])
            .map_err(read)?;
        if changed {
            self.settle(user, content, &record);
        }
        Ok(true)
    }

    fn current_signatures(&self) -> Option<String> {
        self.signatures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-queues every version scanned under other signatures whenever clamd's `VERSION`
    /// changes (and learns it at start).
    async fn watch_signatures(self: Arc<Self>) {
        loop {
            let service = self.clone();
            let asked =
                tokio::task::spawn_blocking(move || service.clamd.as_ref().map(|c| c.version()))
                    .await;
            if let Ok(Some(Ok(version))) = asked {
                let before = self
                    .signatures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .replace(version.clone());
                if before.is_some_and(|b| b != version) {
                    tracing::info!(version, "clamd signatures changed: scanning again");
                    self.rescan_older(&version);
                }
            }
            tokio::time::sleep(self.settings.version_check).await;
        }
    }

    fn rescan_older(&self, version: &str) {
        let Ok(all) = self.store.all_verdicts() else {
            return;
        };
        for (user, content, record) in all {
            let scanned_under_other = record.signatures.as_deref().is_some_and(|s| s != version);
            if !record.released && scanned_under_other {
                let _ = self.jobs.send((user, content));
            }
        }
    }

    /// Applies a record's verdict to what is refused and noted, and tells the user's devices.
    fn settle(&self, user: &str, content: ChunkId, record: &VerdictRecord) {
        let was_told = self
            .notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .is_some_and(|n| n.contains_key(&content));
        if !self.note(user, content, record) && !was_told {
            // Devices never heard of it (a version scanned clean in `flag` mode).
            return;
        }
        let _ = self.tell.send((
            user.to_owned(),
            vec![ContentVerdict {
                content,
                verdict: record.verdict.clone(),
            }],
        ));
    }

    /// Refuses or serves the version's chunks and notes its verdict as its record says;
    /// returns whether the verdict is one devices are told about.
    fn note(&self, user: &str, content: ChunkId, record: &VerdictRecord) -> bool {
        let hold = self.policy(user) == ScanPolicy::Hold;
        let refuse = !record.released
            && match record.verdict {
                Verdict::Clean => false,
                Verdict::Flagged { .. } => true,
                Verdict::Unscanned { .. } => hold,
            };
        if refuse {
            self.refusals
                .refuse(user, content, &record.chunks, &record.verdict);
        } else {
            self.refusals.serve(user, content, &record.chunks);
        }
        // Pending versions are worth telling only while devices wait for them.
        let told = match record.verdict {
            Verdict::Clean => false,
            Verdict::Unscanned {
                reason: UnscannedReason::Pending,
            } => hold,
            _ => !record.released,
        };
        let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        let user_notes = notes.entry(user.to_owned()).or_default();
        if told {
            user_notes.insert(content, record.verdict.clone());
        } else {
            user_notes.remove(&content);
        }
        told
    }
}

/// Marks a version released in storage (works whether or not the relay runs).
pub fn release_record(
    store: &dyn Storage,
    user: &str,
    content: ChunkId,
) -> Result<VerdictRecord, StoreError> {
    let mut record = store
        .verdict(user, content)?
        .ok_or_else(|| StoreError::NoVerdict {
            user: user.to_owned(),
            content: content.to_string(),
        })?;
    record.released = true;
    record.verdict = Verdict::Clean;
    store.put_verdicts(user, &[(content, record.clone())])?;
    Ok(record)
}

fn pending() -> Verdict {
    Verdict::Unscanned {
        reason: UnscannedReason::Pending,
    }
}
