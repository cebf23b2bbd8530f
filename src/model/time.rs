use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A wall-clock instant with microsecond precision, stored as microseconds
/// since the Unix epoch.
///
/// Microseconds are what PostgreSQL's `timestamptz` keeps, so every backend
/// round-trips a `Timestamp` exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Timestamp {
    /// Microseconds since 1970-01-01T00:00:00Z (negative before it).
    pub unix_micros: i64,
}

impl Timestamp {
    /// The timestamp `unix_micros` microseconds after the Unix epoch.
    pub const fn from_unix_micros(unix_micros: i64) -> Self {
        Self { unix_micros }
    }

    /// The current wall-clock time, truncated to microseconds.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        let micros = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_micros()).map(|m| -m).unwrap_or(i64::MIN),
        };
        Self::from_unix_micros(micros)
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        let abs = Duration::from_micros(t.unix_micros.unsigned_abs());
        if t.unix_micros >= 0 { UNIX_EPOCH + abs } else { UNIX_EPOCH - abs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_time_round_trips_at_microsecond_precision() {
        for micros in [0, 1, -1, 1_700_000_000_123_456, -86_400_000_001] {
            let t = Timestamp::from_unix_micros(micros);
            assert_eq!(Timestamp::from(SystemTime::from(t)), t);
        }
    }
}
