//! A benchmark's settings from the environment: each knob's value, or its
//! default when the variable is unset, and an error that names the
//! variable when it does not parse.
//!
//! Included by the ingest, peers and cluster benchmarks with
//! `#[path = "common/env.rs"]`.

use std::path::PathBuf;
use std::time::Duration;

/// The value of `name`, or `default` when it is unset.
pub(crate) fn var<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) => v.trim().parse().map_err(|e| format!("{name}={v}: {e}")),
        Err(_) => Ok(default),
    }
}

/// A duration in (fractional) seconds, `default` when `name` is unset.
pub(crate) fn secs(name: &str, default: f64) -> Result<Duration, String> {
    let v: f64 = var(name, default)?;
    Duration::try_from_secs_f64(v).map_err(|e| format!("{name}={v}: {e}"))
}

/// Where the temp data dirs are created: `AUDITLOG_BENCH_DIR`, else the
/// system temp dir.
pub(crate) fn parent_dir() -> PathBuf {
    std::env::var_os("AUDITLOG_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}
