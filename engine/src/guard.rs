//! The mass-delete guard: whether the deletions one scan found are sent, or held back until the
//! user confirms them. Pure policy; the agent keeps the held paths in its index (so they are
//! neither deleted elsewhere nor written back here) and says so in `status`.
//!
//! One mistake on one device (`rm -rf *` in the wrong place, a disk that was not mounted) must
//! not empty every device. A scan's deletions are held when they are many in number **and** a
//! large share of the folder; once held, every later deletion waits too, until the user
//! confirms (`cloud3 confirm-deletes`) or puts the files back (then nothing is deleted
//! anywhere). Holding everything while paused keeps a partial restore from letting the rest
//! through silently.

use crate::ids::NodeId;
use crate::scan::{DocOp, ScanResult};

/// The thresholds. Deletions are held when their number is more than `min_files` and more
/// than `min_percent` percent of the nodes this device had indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeleteGuard {
    /// Deleting this many nodes (files, directories, symlinks) or fewer is never held.
    pub min_files: usize,
    /// Deleting this share of the folder (percent of its indexed nodes) or less is never held.
    pub min_percent: u8,
}

impl Default for DeleteGuard {
    /// More than 50 nodes and more than 25% of the folder.
    fn default() -> Self {
        DeleteGuard {
            min_files: 50,
            min_percent: 25,
        }
    }
}

/// What to do with a scan's deletions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteVerdict {
    /// Record and send them (none found, few, confirmed by the user).
    Send,
    /// Keep them out of the document until confirmed.
    Hold,
}

impl DeleteGuard {
    /// The verdict on `deletes` deletions in a folder of `indexed` nodes. `paused`: deletions
    /// are held already (every deletion waits while paused); `confirmed`: the user confirmed.
    pub fn verdict(
        &self,
        deletes: usize,
        indexed: usize,
        paused: bool,
        confirmed: bool,
    ) -> DeleteVerdict {
        if deletes == 0 || confirmed {
            return DeleteVerdict::Send;
        }
        // u128: no overflow whatever the counts.
        let large_share = deletes as u128 * 100 > indexed as u128 * u128::from(self.min_percent);
        if paused || (deletes > self.min_files && large_share) {
            DeleteVerdict::Hold
        } else {
            DeleteVerdict::Send
        }
    }

    /// Applies the verdict to a scan's result: when held, its deletions are taken out of
    /// `result.ops` and returned (the other operations, edits and new files, still go).
    pub fn apply(
        &self,
        result: &mut ScanResult,
        indexed: usize,
        paused: bool,
        confirmed: bool,
    ) -> Vec<NodeId> {
        let deletes = result
            .ops
            .iter()
            .filter(|op| matches!(op, DocOp::Delete { .. }))
            .count();
        if self.verdict(deletes, indexed, paused, confirmed) == DeleteVerdict::Send {
            return Vec::new();
        }
        let mut held = Vec::with_capacity(deletes);
        result.ops.retain(|op| match op {
            DocOp::Delete { id } => {
                held.push(*id);
                false
            }
            _ => true,
        });
        held
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check(deletes: usize, indexed: usize, paused: bool, confirmed: bool, held: bool) {
        let verdict = DeleteGuard::default().verdict(deletes, indexed, paused, confirmed);
        let expected = if held {
            DeleteVerdict::Hold
        } else {
            DeleteVerdict::Send
        };
        assert_eq!(
            verdict, expected,
            "{deletes} of {indexed}, paused {paused}, confirmed {confirmed}"
        );
    }

    #[test]
    fn many_and_a_large_share_are_held() {
        check(0, 0, false, false, false);
        check(1000, 1000, false, false, true);
        check(51, 200, false, false, true);
        check(51, 204, false, false, false); // exactly 25%: not more
        check(50, 50, false, false, false); // a small folder emptied: 50 is not more than 50
        check(300, 10_000, false, false, false); // many, but 3% of a large folder
        check(1000, 1000, false, true, false); // confirmed
        check(1, 10_000, true, false, true); // paused: everything waits
        check(1, 10_000, true, true, false);
    }

    #[test]
    fn held_deletions_leave_the_other_operations() {
        let id = |n: u8| NodeId([n; 16]);
        let mut result = ScanResult::default();
        for n in 1..=60 {
            result.ops.push(DocOp::Delete { id: id(n) });
        }
        result.ops.push(DocOp::SetMode {
            id: id(200),
            mode: 0o600,
        });
        let held = DeleteGuard::default().apply(&mut result, 100, false, false);
        assert_eq!(held.len(), 60);
        assert_eq!(
            result.ops,
            vec![DocOp::SetMode {
                id: id(200),
                mode: 0o600
            }]
        );
        let mut few = ScanResult::default();
        few.ops.push(DocOp::Delete { id: id(1) });
        assert!(
            DeleteGuard::default()
                .apply(&mut few, 100, false, false)
                .is_empty()
        );
        assert_eq!(few.ops.len(), 1, "one deletion goes through");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// The verdict is monotonic: deleting more of the same folder is never less guarded,
        /// and nothing under either threshold is ever held unless paused.
        #[test]
        fn more_deletions_are_never_less_guarded(
            indexed in 0usize..100_000,
            a in 0usize..100_000,
            b in 0usize..100_000,
            min_files in 0usize..1000,
            min_percent in 0u8..=100,
        ) {
            let guard = DeleteGuard { min_files, min_percent };
            let (less, more) = (a.min(b).min(indexed), a.max(b).min(indexed));
            if guard.verdict(less, indexed, false, false) == DeleteVerdict::Hold {
                prop_assert_eq!(guard.verdict(more, indexed, false, false), DeleteVerdict::Hold);
            }
            if less <= min_files || less * 100 <= indexed * usize::from(min_percent) {
                prop_assert_eq!(guard.verdict(less, indexed, false, false), DeleteVerdict::Send);
            }
        }
    }
}
