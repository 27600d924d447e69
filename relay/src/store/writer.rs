//! One thread owns the database's write transactions for everything devices do (document
//! appends, sync heads, chunk index entries, blob references). Callers hand it a job and wait;
//! it runs every job already queued in one transaction and makes them all durable with one
//! commit, then answers each: many connections writing at once cost one commit, not one each.
//!
//! A job checks before it writes (a revoked device, say) and its refusal is its own; a database
//! failure inside any job aborts the whole transaction and every job in it hears of it.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use redb::{Database, WriteTransaction};

use crate::error::StoreError;

/// Jobs committed together at most.
const MAX_JOBS_PER_COMMIT: usize = 256;

/// Runs a job in the shared transaction (or learns there is none) and returns how to answer
/// its caller once the commit's outcome is known.
type Job = Box<dyn FnOnce(Option<&WriteTransaction>) -> Outcome + Send>;

struct Outcome {
    /// The job failed in a way that taints the transaction.
    poisons: Option<String>,
    answer: Box<dyn FnOnce(Result<(), String>) + Send>,
}

/// The writer thread's handle.
pub(crate) struct Writer {
    jobs: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the thread that owns `db`'s write transactions.
    pub(crate) fn start(db: Arc<Database>) -> Result<Writer, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("relay-writer".into())
            .spawn(move || run(&db, &queue))
            .map_err(|e| StoreError::Database(format!("cannot start the writer: {e}")))?;
        Ok(Writer {
            jobs: Mutex::new(Some(jobs)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Runs `job` in the next shared transaction; returns its result once that transaction is
    /// durable (or the reason it is not).
    pub(crate) fn write<T: Send + 'static>(
        &self,
        job: impl FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel::<Result<T, StoreError>>(1);
        let boxed: Job = Box::new(move |txn| {
            let result = match txn {
                Some(txn) => job(txn),
                None => Err(StoreError::Database("no write transaction".into())),
            };
            let poisons = match &result {
                Err(
                    e @ (StoreError::Database(_) | StoreError::Io { .. } | StoreError::Corrupt(_)),
                ) => Some(e.to_string()),
                _ => None,
            };
            Outcome {
                poisons,
                answer: Box::new(move |committed| {
                    let result = match committed {
                        Ok(()) => result,
                        Err(why) => result.and(Err(StoreError::Database(why))),
                    };
                    let _ = reply.send(result);
                }),
            }
        });
        let sent = self
            .jobs
            .lock()
            .map_err(|_| StoreError::Corrupt("writer lock poisoned".into()))?
            .as_ref()
            .map(|jobs| jobs.send(boxed).is_ok());
        if sent != Some(true) {
            return Err(StoreError::Database("the writer has stopped".into()));
        }
        answer
            .recv()
            .map_err(|_| StoreError::Database("the writer stopped mid-commit".into()))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has answered what it holds.
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Ok(mut thread) = self.thread.lock()
            && let Some(thread) = thread.take()
        {
            let _ = thread.join();
        }
    }
}

fn run(db: &Database, queue: &Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(error) => {
                tracing::error!(%error, "cannot begin a write transaction");
                for job in jobs {
                    (job(None).answer)(Err(error.to_string()));
                }
                continue;
            }
        };
        let outcomes: Vec<Outcome> = jobs.into_iter().map(|job| job(Some(&txn))).collect();
        let committed = match outcomes.iter().find_map(|o| o.poisons.clone()) {
            Some(why) => {
                tracing::error!(%why, "write transaction aborted");
                let _ = txn.abort();
                Err(format!("write transaction aborted: {why}"))
            }
            None => txn.commit().map_err(|e| e.to_string()),
        };
        for outcome in outcomes {
            (outcome.answer)(committed.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, TableDefinition};

    use super::*;

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    fn count(db: &Database) -> usize {
        let txn = db.begin_read().unwrap();
        txn.open_table(T).map_or(0, |t| {
            redb::ReadableTableMetadata::len(&t).unwrap() as usize
        })
    }

    #[test]
    fn concurrent_jobs_commit_and_each_hears_its_own_outcome() {
        let tmp = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(tmp.path().join("w.redb")).unwrap());
        let writer = Arc::new(Writer::start(db.clone()).unwrap());
        let threads: Vec<_> = (0..16u64)
            .map(|n| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    writer.write(move |txn| {
                        if n % 4 == 3 {
                            // Refused before writing: only this job fails.
                            return Err(StoreError::Forbidden(format!("job {n}")));
                        }
                        txn.open_table(T)
                            .map_err(StoreError::db)?
                            .insert(n, n * 10)
                            .map_err(StoreError::db)?;
                        Ok(n)
                    })
                })
            })
            .collect();
        for (n, thread) in threads.into_iter().enumerate() {
            match thread.join().unwrap() {
                Ok(got) => assert_eq!(got, n as u64),
                Err(StoreError::Forbidden(_)) => assert_eq!(n % 4, 3),
                Err(other) => panic!("job {n}: {other}"),
            }
        }
        assert_eq!(count(&db), 12);

        // A database failure inside one job aborts its whole transaction.
        let result = writer.write(|txn| {
            txn.open_table(T)
                .map_err(StoreError::db)?
                .insert(100, 1)
                .map_err(StoreError::db)?;
            Err::<(), _>(StoreError::Database("disk on fire".into()))
        });
        assert!(matches!(result, Err(StoreError::Database(_))));
        assert_eq!(
            count(&db),
            12,
            "nothing of the aborted transaction was kept"
        );
        drop(writer);
    }
}
