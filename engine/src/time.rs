//! The two kinds of time the engine is given by its caller; the engine never reads a clock.
//!
//! [`Millis`] is monotonic time for deadlines and retries. [`WallTime`] is Unix time in
//! milliseconds for what people see: modification times, tombstones and conflict names.

use std::ops::Add;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Monotonic milliseconds since an arbitrary start chosen by the caller.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Millis(pub u64);

impl Millis {
    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Millis {
    type Output = Millis;
    fn add(self, rhs: Duration) -> Millis {
        let add = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Millis(self.0.saturating_add(add))
    }
}

/// Wall-clock time: milliseconds since the Unix epoch (may be negative for old files).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct WallTime(pub i64);

impl WallTime {
    /// Splits into (year, month, day, hour, minute, second) in UTC, for conflict names.
    pub fn to_utc_parts(self) -> (i64, u32, u32, u32, u32, u32) {
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);
        // Civil-from-days (Howard Hinnant's algorithm), valid for the proleptic Gregorian calendar.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        (
            year,
            month as u32,
            day as u32,
            hour as u32,
            minute as u32,
            second as u32,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_parts_match_known_dates() {
        assert_eq!(WallTime(0).to_utc_parts(), (1970, 1, 1, 0, 0, 0));
        // 2024-10-27 13:45:07 UTC
        assert_eq!(
            WallTime(1_730_036_707_000).to_utc_parts(),
            (2024, 10, 27, 13, 45, 7)
        );
        assert_eq!(WallTime(-1000).to_utc_parts(), (1969, 12, 31, 23, 59, 59));
    }

    #[test]
    fn millis_add_saturates() {
        assert_eq!(
            Millis(u64::MAX - 1) + Duration::from_secs(5),
            Millis(u64::MAX)
        );
        assert_eq!(Millis(5).since(Millis(9)), Duration::ZERO);
    }
}
