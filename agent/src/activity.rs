//! What the daemon is transferring right now, shared between the transfer code (which updates
//! it as blobs go out and come in) and the control channel (which reports it to
//! `cloud3 status` without waiting for the transfer to finish).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// A file being transferred.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Path relative to the folder.
    pub path: String,
    /// Bytes of it in this transfer (for an upload: the chunks the relay may lack).
    pub size: u64,
}

/// A snapshot of the transfers in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfers {
    /// Files being uploaded now.
    pub uploading: Vec<Transfer>,
    /// Bytes of blob data sent in the current upload.
    pub uploaded_bytes: u64,
    /// Files being written from the relay now (the current group).
    pub downloading: Vec<Transfer>,
    /// Files left to write in the current download, including the current group.
    pub download_files: usize,
    /// Their bytes.
    pub download_bytes: u64,
    /// Bytes of blob data received in the current download.
    pub downloaded_bytes: u64,
}

/// The shared, live [`Transfers`]. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct Activity(Arc<Mutex<Transfers>>);

impl Activity {
    fn update(&self, change: impl FnOnce(&mut Transfers)) {
        change(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// What is in progress now.
    pub fn snapshot(&self) -> Transfers {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// An upload of `(path, bytes)` pieces starts (pieces of one file are summed); it is
    /// reported until the returned guard is dropped.
    pub fn upload(&self, pieces: impl IntoIterator<Item = (String, u64)>) -> Finished {
        self.upload_started(pieces);
        Finished(self.clone(), Activity::upload_finished)
    }

    /// A download of `files` starts; it is reported until the returned guard is dropped.
    pub fn download(&self, files: usize, bytes: u64) -> Finished {
        self.download_started(files, bytes);
        Finished(self.clone(), Activity::download_finished)
    }

    fn upload_started(&self, pieces: impl IntoIterator<Item = (String, u64)>) {
        let mut files: BTreeMap<String, u64> = BTreeMap::new();
        for (path, len) in pieces {
            *files.entry(path).or_default() += len;
        }
        self.update(|t| {
            t.uploading = files
                .into_iter()
                .map(|(path, size)| Transfer { path, size })
                .collect();
            t.uploaded_bytes = 0;
        });
    }

    /// `bytes` of blob data went out.
    pub fn sent(&self, bytes: u64) {
        self.update(|t| t.uploaded_bytes += bytes);
    }

    fn upload_finished(&self) {
        self.update(|t| {
            t.uploading.clear();
            t.uploaded_bytes = 0;
        });
    }

    fn download_started(&self, files: usize, bytes: u64) {
        self.update(|t| {
            t.download_files = files;
            t.download_bytes = bytes;
            t.downloaded_bytes = 0;
            t.downloading.clear();
        });
    }

    /// The files being written now.
    pub fn downloading(&self, files: Vec<Transfer>) {
        self.update(|t| t.downloading = files);
    }

    /// `files` of `bytes` were written (or given up on for now).
    pub fn group_done(&self, files: usize, bytes: u64) {
        self.update(|t| {
            t.download_files = t.download_files.saturating_sub(files);
            t.download_bytes = t.download_bytes.saturating_sub(bytes);
            t.downloading.clear();
        });
    }

    /// `bytes` of blob data came in.
    pub fn received(&self, bytes: u64) {
        self.update(|t| t.downloaded_bytes += bytes);
    }

    fn download_finished(&self) {
        self.update(|t| {
            t.downloading.clear();
            t.download_files = 0;
            t.download_bytes = 0;
            t.downloaded_bytes = 0;
        });
    }
}

/// Ends an upload or download report when dropped (also when the transfer fails midway).
#[must_use = "the transfer is reported until this is dropped"]
pub struct Finished(Activity, fn(&Activity));

impl Drop for Finished {
    fn drop(&mut self) {
        (self.1)(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_reports_files_once_with_their_bytes_until_it_ends() {
        let activity = Activity::default();
        let shared = activity.clone();
        let upload = activity.upload([("a".into(), 10), ("b".into(), 5), ("a".into(), 7)]);
        activity.sent(12);
        let now = shared.snapshot();
        assert_eq!(
            now.uploading,
            vec![
                Transfer {
                    path: "a".into(),
                    size: 17
                },
                Transfer {
                    path: "b".into(),
                    size: 5
                }
            ]
        );
        assert_eq!(now.uploaded_bytes, 12);
        drop(upload);
        assert_eq!(shared.snapshot(), Transfers::default());
    }

    #[test]
    fn a_download_counts_down_its_files() {
        let activity = Activity::default();
        let download = activity.download(3, 300);
        activity.downloading(vec![Transfer {
            path: "x".into(),
            size: 100,
        }]);
        activity.received(40);
        activity.group_done(1, 100);
        let now = activity.snapshot();
        assert_eq!((now.download_files, now.download_bytes), (2, 200));
        assert!(now.downloading.is_empty());
        assert_eq!(now.downloaded_bytes, 40);
        drop(download);
        assert_eq!(activity.snapshot(), Transfers::default());
    }
}
