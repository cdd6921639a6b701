//! Time as Steward reads it: Unix milliseconds.
//!
//! Long-running tasks hold a [`Clock`] rather than reading the system time
//! themselves, so tests can run them under `tokio::time::pause()` and move
//! time forward by hours in microseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// A source of Unix milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The system's wall clock: what production uses.
    #[default]
    System,
    /// Starts at `origin_ms` and advances with tokio's clock, so under
    /// `tokio::time::pause()` it moves only when the test advances time.
    Tokio {
        origin_ms: i64,
        origin: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that starts at `origin_ms` now and follows tokio's time.
    pub fn following_tokio(origin_ms: i64) -> Self {
        Self::Tokio {
            origin_ms,
            origin: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Self::System => now_ms(),
            Self::Tokio { origin_ms, origin } => {
                origin_ms.saturating_add(origin.elapsed().as_millis() as i64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_only_with_tokio_time() {
        let clock = Clock::following_tokio(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(clock.now_ms(), 1_000 + 3_600_000);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(Clock::System.now_ms() > 1_577_836_800_000);
    }
}
