//! The `[performance]` section: the window, server timing, and the
//! degradation rule, each field with its default.

use serde::{Deserialize, Serialize};

/// The `[performance]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerformanceConfig {
    /// How many recent durations each operation keeps. Default 1000.
    pub window: usize,
    /// Time the server's own RPCs. Default true.
    pub track_server: bool,
    /// Degradation alerts (`[performance.degradation]`).
    pub degradation: DegradationConfig,
}

impl Default for PerformanceConfig {
    fn default() -> PerformanceConfig {
        PerformanceConfig {
            window: 1000,
            track_server: true,
            degradation: DegradationConfig::default(),
        }
    }
}

/// The `[performance.degradation]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DegradationConfig {
    /// Raise degradation alerts. Default true.
    pub enabled: bool,
    /// Alert when the recent p95 exceeds the window's p95 by this factor.
    /// Default 2.0.
    pub factor: f64,
    /// How many of the latest samples are "recent". Default 50.
    pub recent: usize,
    /// How many samples the window needs before it is judged. Default 200.
    pub min_samples: usize,
    /// And only when the recent p95 is also at least this many milliseconds
    /// above the baseline's, so sub-millisecond jitter (a fast RPC going
    /// from 0.7 to 3 ms) does not page anyone. Default 10.
    pub min_increase_ms: f64,
    /// Quiet time per operation after an alert, in seconds. Default 900.
    pub cooldown_secs: u64,
}

impl Default for DegradationConfig {
    fn default() -> DegradationConfig {
        DegradationConfig {
            enabled: true,
            factor: 2.0,
            recent: 50,
            min_samples: 200,
            min_increase_ms: 10.0,
            cooldown_secs: 900,
        }
    }
}

impl PerformanceConfig {
    /// Checks what types alone cannot; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.window == 0 || self.window > 1_000_000 {
            return Err((
                "performance.window",
                format!("is {}; it must be from 1 to 1,000,000", self.window),
            ));
        }
        let d = &self.degradation;
        if !(d.factor > 1.0 && d.factor.is_finite()) {
            return Err((
                "performance.degradation.factor",
                format!("is {}; it must be a number above 1", d.factor),
            ));
        }
        if !(d.min_increase_ms >= 0.0 && d.min_increase_ms.is_finite()) {
            return Err((
                "performance.degradation.min_increase_ms",
                format!(
                    "is {}; it must be 0 or a positive number of milliseconds",
                    d.min_increase_ms
                ),
            ));
        }
        if d.recent == 0 || d.recent >= self.window {
            return Err((
                "performance.degradation.recent",
                format!(
                    "is {}; it must be at least 1 and below performance.window ({})",
                    d.recent, self.window
                ),
            ));
        }
        if d.min_samples < d.recent || d.min_samples > self.window {
            return Err((
                "performance.degradation.min_samples",
                format!(
                    "is {}; it must be from degradation.recent ({}) to performance.window ({})",
                    d.min_samples, d.recent, self.window
                ),
            ));
        }
        Ok(())
    }
}
