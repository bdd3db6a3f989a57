//! GetStats: aggregates over the in-memory index (counts by type and
//! workflow, distinct leads, a timeline of buckets), computed from the
//! index alone without reading a record.
//!
//! Invariant: only the index is read, and only the records in range: a
//! time range is two binary searches (timestamps never decrease along seq)
//! and a workflow walks only its posting list within it.

use std::collections::HashMap;

use super::{Entry, Index, Interner};

/// Aggregates over the index for GetStats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub total_events: u64,
    pub by_type: HashMap<String, u64>,
    pub by_workflow: HashMap<String, u64>,
    pub leads_processed: u64,
    pub error_count: u64,
    pub first_timestamp: Option<i64>,
    pub last_timestamp: Option<i64>,
    pub head_seq: u64,
    /// Counts per time bucket (when asked for), oldest first, gaps filled.
    pub timeline: Vec<Bucket>,
    /// Distinct leads per event type (when asked for).
    pub leads_by_type: HashMap<String, u64>,
}

/// What GetStats counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsQuery {
    pub workflow: Option<String>,
    /// Inclusive, µs since the epoch.
    pub since: Option<i64>,
    /// Exclusive, µs since the epoch.
    pub until: Option<i64>,
    /// The timeline's bucket width in µs; `None` for no timeline.
    pub bucket_micros: Option<i64>,
    /// Count distinct leads per event type.
    pub leads_by_type: bool,
    /// Only events of these types; empty means every type.
    pub event_types: Vec<String>,
}

/// The events of one time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Its first instant, µs since the epoch.
    pub start: i64,
    pub events: u64,
    pub errors: u64,
}

/// The most buckets one timeline may have.
pub(crate) const MAX_BUCKETS: i64 = 10_000;

/// A timeline would need this many buckets, more than [`MAX_BUCKETS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the timeline would have {0} buckets; at most 10,000")]
pub struct TooManyBuckets(pub i64);

impl Index {
    /// Aggregates over the records `q` selects.
    pub(crate) fn stats(&self, q: &StatsQuery) -> Result<Stats, TooManyBuckets> {
        let head_seq = self.last().map_or(0, |m| m.seq);
        let mut stats = Stats {
            head_seq,
            ..Stats::default()
        };
        // The time window as positions in `metas` (sorted by seq, and by
        // time: timestamps never go backwards in the log).
        let lo = q
            .since
            .map_or(0, |t| self.metas.partition_point(|m| m.timestamp < t));
        let hi = q.until.map_or(self.metas.len(), |t| {
            self.metas.partition_point(|m| m.timestamp < t)
        });
        let window = self.metas.get(lo..hi).unwrap_or(&[]);
        let metas: Box<dyn Iterator<Item = &Entry>> = match q.workflow.as_deref() {
            None => Box::new(window.iter()),
            Some(w) => match self.workflows.get(w) {
                None => Box::new(std::iter::empty()),
                Some(id) if !self.unposted => {
                    let list = Self::list(&self.by_workflow, id);
                    let positions = &list[super::within(list, lo, hi)];
                    Box::new(positions.iter().filter_map(|&p| self.metas.get(p as usize)))
                }
                Some(id) => Box::new(window.iter().filter(move |m| m.workflow == id + 1)),
            },
        };
        // The wanted types as interned ids; a name never interned matches
        // nothing.
        let wanted: Option<Vec<u32>> = (!q.event_types.is_empty()).then(|| {
            q.event_types
                .iter()
                .filter_map(|t| self.types.get(t))
                .collect()
        });
        let metas = metas.filter(|m| wanted.as_ref().is_none_or(|w| w.contains(&m.event_type)));
        let error_type = self.types.get("error");
        let mut per_type = vec![0u64; self.types.len()];
        let mut per_workflow = vec![0u64; self.workflows.len()];
        let mut seen_leads = vec![false; self.leads.len()];
        let mut type_leads: Vec<u64> = Vec::new();
        let mut buckets: std::collections::BTreeMap<i64, (u64, u64)> = Default::default();
        for m in metas {
            stats.total_events += 1;
            per_type[m.event_type as usize] += 1;
            if m.workflow > 0 {
                per_workflow[m.workflow as usize - 1] += 1;
            }
            if m.lead > 0 {
                if !seen_leads[m.lead as usize - 1] {
                    seen_leads[m.lead as usize - 1] = true;
                    stats.leads_processed += 1;
                }
                if q.leads_by_type {
                    type_leads.push(u64::from(m.event_type) << 32 | u64::from(m.lead));
                }
            }
            if let Some(width) = q.bucket_micros {
                let b = buckets.entry(m.timestamp.div_euclid(width)).or_default();
                b.0 += 1;
                b.1 += u64::from(Some(m.event_type) == error_type);
            }
            stats.first_timestamp.get_or_insert(m.timestamp);
            stats.last_timestamp = Some(m.timestamp);
        }
        if let Some(width) = q.bucket_micros {
            let first = q.since.or(stats.first_timestamp);
            let last = q.until.map(|t| t - 1).or(stats.last_timestamp);
            if let (Some(first), Some(last)) = (first, last)
                && first <= last
            {
                let (from, to) = (first.div_euclid(width), last.div_euclid(width));
                let n = (to - from).saturating_add(1);
                if n > MAX_BUCKETS {
                    return Err(TooManyBuckets(n));
                }
                stats.timeline = (from..=to)
                    .map(|b| {
                        let (events, errors) = buckets.get(&b).copied().unwrap_or_default();
                        Bucket {
                            start: b * width,
                            events,
                            errors,
                        }
                    })
                    .collect();
            }
        }
        let named = |interner: &Interner, counts: Vec<u64>| {
            counts
                .into_iter()
                .enumerate()
                .filter(|(_, n)| *n > 0)
                .map(|(id, n)| (interner.name(id as u32).to_owned(), n))
                .collect::<HashMap<_, _>>()
        };
        stats.by_type = named(&self.types, per_type);
        stats.by_workflow = named(&self.workflows, per_workflow);
        stats.error_count = stats.by_type.get("error").copied().unwrap_or(0);
        if q.leads_by_type {
            type_leads.sort_unstable();
            type_leads.dedup();
            for pair in type_leads {
                let name = self.types.name((pair >> 32) as u32);
                *stats.leads_by_type.entry(name.to_owned()).or_default() += 1;
            }
        }
        Ok(stats)
    }
}
