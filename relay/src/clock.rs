//! The relay's wall clock for storage lifecycle decisions (retention windows, claim stamps,
//! the collector's grace period). It is the system clock plus a skew, so tests and benchmarks
//! can move time past a retention window (`--clock-skew-secs`, hidden) without waiting for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use cloud3_engine::time::WallTime;

use crate::server::wall_now;

/// The system clock plus a skew that may move; clones share the skew.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    skew_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock moved by `skew_secs` seconds (negative: into the past).
    pub fn skewed(skew_secs: i64) -> Clock {
        Clock {
            skew_ms: Arc::new(AtomicI64::new(skew_secs.saturating_mul(1000))),
        }
    }

    /// Now, as this clock tells it.
    pub fn now(&self) -> WallTime {
        WallTime(
            wall_now()
                .0
                .saturating_add(self.skew_ms.load(Ordering::Relaxed)),
        )
    }

    /// Moves the clock forward by `by` (every clone sees it).
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.skew_ms.fetch_add(ms, Ordering::Relaxed);
    }
}
