//! The scanner trait: a file version's bytes go in, chunk by chunk in order (so a signature
//! spanning a chunk boundary matches), and a verdict comes out.

use cloud3_engine::wire::Verdict;

/// Why a scan could not finish (the scanner is down, slow or answered nonsense): the version
/// stays `Unscanned { pending }` and is tried again later.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The scanner could not be reached or the connection broke.
    #[error("scanner {engine} unreachable: {why}")]
    Unreachable {
        /// Which scanner.
        engine: &'static str,
        /// What failed.
        why: String,
    },
    /// The scanner answered something this relay does not understand.
    #[error("scanner {engine} answered {answer:?}")]
    Answer {
        /// Which scanner.
        engine: &'static str,
        /// What it said.
        answer: String,
    },
    /// The version's bytes could not be read from storage.
    #[error("cannot read the version: {0}")]
    Read(String),
}

/// A scanner: [`Scanner::start`] begins one version's scan.
pub trait Scanner: Send + Sync {
    /// Begins scanning a version of `size` bytes.
    fn start(&self, size: u64) -> Result<Box<dyn ScanPass + '_>, ScanError>;
}

/// One version being scanned.
pub trait ScanPass: Send {
    /// The next chunk's raw bytes.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), ScanError>;
    /// The end of the version: the verdict.
    fn finish(self: Box<Self>) -> Result<Verdict, ScanError>;
}

/// The verdict of several scanners on one version: flagged if any flags it, else unscanned if
/// any could not scan it, else clean.
pub fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
    let mut combined = Verdict::Clean;
    for verdict in verdicts {
        match (&combined, &verdict) {
            (Verdict::Flagged { .. }, _) => {}
            (_, Verdict::Flagged { .. }) | (Verdict::Clean, Verdict::Unscanned { .. }) => {
                combined = verdict
            }
            _ => {}
        }
    }
    combined
}

#[cfg(test)]
mod tests {
    use cloud3_engine::wire::UnscannedReason;

    use super::*;

    #[test]
    fn a_flag_beats_unscanned_which_beats_clean() {
        let flagged = Verdict::Flagged {
            engine: "clamav".into(),
            signature: "x".into(),
        };
        let too_large = Verdict::Unscanned {
            reason: UnscannedReason::TooLarge,
        };
        assert_eq!(combine([]), Verdict::Clean);
        assert_eq!(
            combine([Verdict::Clean, too_large.clone()]),
            too_large.clone()
        );
        assert_eq!(
            combine([too_large.clone(), flagged.clone(), Verdict::Clean]),
            flagged
        );
    }
}
