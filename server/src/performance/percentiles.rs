//! Exact percentiles by nearest rank: pN is the smallest sample with at
//! least N% of the samples at or below it.

use super::Summary;

/// Where the nearest-rank `p`th percentile of `n` sorted samples is: the
/// ceil(p/100 * n)-th smallest, as a 0-based index. `n` must not be 0.
pub(super) fn nearest_rank(p: f64, n: usize) -> usize {
    let k = ((p / 100.0) * n as f64).ceil() as usize;
    k.clamp(1, n) - 1
}

/// The p95 of `samples` (reordered), as [`summarize`] gives it, by
/// selection rather than a full sort.
pub(super) fn p95(samples: &mut [f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let k = nearest_rank(95.0, samples.len());
    Some(*samples.select_nth_unstable_by(k, f64::total_cmp).1)
}

/// Whether `holds` is true of the p95 of `samples`, for a `holds` that,
/// once false for a value, is false for every larger one (a bound from
/// above). Then it is true of the p95 exactly when it is true of more
/// samples than the p95's rank, so one pass of comparisons answers, with
/// no copy and no reordering, at a fraction of a selection's cost.
pub(super) fn p95_satisfies(samples: &[f64], holds: impl Fn(f64) -> bool) -> bool {
    if samples.is_empty() {
        return false;
    }
    let k = nearest_rank(95.0, samples.len());
    samples.iter().filter(|&&s| holds(s)).count() > k
}

/// Exact figures over `samples` (sorted in place); `None` when empty.
pub(crate) fn summarize(samples: &mut [f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let rank = |p: f64| samples[nearest_rank(p, n)];
    Some(Summary {
        count: n as u64,
        min: samples[0],
        max: samples[n - 1],
        avg: samples.iter().sum::<f64>() / n as f64,
        p50: rank(50.0),
        p95: rank(95.0),
        p99: rank(99.0),
    })
}
