//! The in-memory index: for every committed record its position in the file
//! and the fields queries filter on, plus posting lists by lead, type and
//! workflow and the idempotency keys.
//!
//! It is rebuilt from the file on start and kept current by the writer, which
//! adds records only after they are durable, so a reader never sees an event
//! that could still be lost. Seqs in the index are strictly increasing and at
//! most [`MAX_SEQ`] (a damaged file's out-of-order or out-of-range records
//! are left out; verification reports them), and timestamps never decrease,
//! so seq and time ranges are both binary searches.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, BuildHasherDefault};

mod postings;
mod stats;

use postings::Postings;

use super::record::{MAX_SEQ, Record};
use super::segment::SegmentIndex;

pub(crate) use stats::{Stats, StatsQuery, TooManyBuckets};

/// A filter over events; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub event_types: Vec<String>,
    pub lead_id: Option<String>,
    pub workflow: Option<String>,
    pub actor: Option<String>,
    /// Inclusive, microseconds since the epoch.
    pub since: Option<i64>,
    /// Exclusive, microseconds since the epoch.
    pub until: Option<i64>,
}

impl Filter {
    /// Whether `record` passes the filter.
    pub fn matches(&self, record: &Record) -> bool {
        (self.event_types.is_empty() || self.event_types.iter().any(|t| *t == *record.event_type))
            && self
                .lead_id
                .as_ref()
                .is_none_or(|l| record.lead_id.as_deref() == Some(l.as_str()))
            && self
                .workflow
                .as_ref()
                .is_none_or(|w| record.workflow.as_deref() == Some(w.as_str()))
            && self.actor.as_ref().is_none_or(|a| record.actor == *a)
            && self.since.is_none_or(|t| record.timestamp >= t)
            && self.until.is_none_or(|t| record.timestamp < t)
    }
}

/// Where a record is and what queries need to know about it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub seq: u64,
    /// In a plain segment, the byte offset of the line; in a compressed one,
    /// `chunk << 32 | offset in the chunk`.
    pub offset: u64,
    pub len: u32,
    /// Which segment holds the record (an id of the store's segment table).
    pub segment: u32,
    pub timestamp: i64,
}

/// A record as the index keeps it: [`Meta`] without its seq, which follows
/// from its position (`Index::runs`). 40 bytes, one per retained record.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    timestamp: i64,
    len: u32,
    segment: u32,
    event_type: u32,
    actor: u32,
    /// 0 means none; otherwise the interned id + 1.
    lead: u32,
    workflow: u32,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 40);

/// Strings seen in one field, each given a small id.
///
/// Each string is kept once: in `names`, one string for all of them, where
/// `ends` says where each ends. They are found by a 64-bit hash of the
/// string (SipHash, keyed at random per process) that names a candidate id,
/// checked against its name; a string whose hash another string has first
/// is kept in `colliding` instead. A map keyed by the strings themselves
/// kept each string twice, in two allocations of its own: with a lead of
/// its own per event, the index took 232 bytes an event with that map and
/// 157 with this (2026-12-06).
#[derive(Debug, Default)]
struct Interner {
    names: String,
    ends: Vec<usize>,
    by_hash: HashMap<u64, u32, BuildHasherDefault<Prehashed>>,
    colliding: HashMap<Box<str>, u32>,
    hash: KeyHash,
    /// The id given out last. Records in a row often share a field (one
    /// actor, one workflow, several events about one lead), and comparing
    /// with the last string costs less than hashing it: interning was a
    /// tenth of the writer's time in `LogBatch` x8 (2026-12-05).
    last: Option<u32>,
}

/// A hasher for keys that are hashes already: it passes the `u64` on.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else is folded in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.last
            && (id as usize) < self.ends.len()
            && self.name(id) == s
        {
            return id;
        }
        let hash = self.hash.of(s);
        let id = match self.find(hash, s) {
            Some(id) => id,
            None => {
                let id = u32::try_from(self.ends.len()).unwrap_or(u32::MAX);
                self.names.push_str(s);
                self.ends.push(self.names.len());
                match self.by_hash.entry(hash) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(id);
                    }
                    std::collections::hash_map::Entry::Occupied(_) => {
                        self.colliding.insert(s.into(), id);
                    }
                }
                id
            }
        };
        self.last = Some(id);
        id
    }

    /// The id of `s` (whose hash is `hash`), if it has one.
    fn find(&self, hash: u64, s: &str) -> Option<u32> {
        match self.by_hash.get(&hash) {
            Some(&id) if self.name(id) == s => Some(id),
            Some(_) => self.colliding.get(s).copied(),
            None => None,
        }
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.find(self.hash.of(s), s)
    }

    /// How many strings have an id.
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn name(&self, id: u32) -> &str {
        let id = id as usize;
        let start = id
            .checked_sub(1)
            .and_then(|i| self.ends.get(i))
            .copied()
            .unwrap_or(0);
        let end = self.ends.get(id).copied().unwrap_or(start);
        self.names.get(start..end).unwrap_or("")
    }
}

/// Which way a query walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    OldestFirst,
    NewestFirst,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Every retained record, in seq order.
    metas: Vec<Entry>,
    /// Where runs of consecutive seqs start: (position in `metas`, its
    /// seq), ascending in both. The first starts at position 0 whenever
    /// `metas` is not empty; a seq skipped (a cut, a missing segment)
    /// starts another. An undamaged log is one run.
    runs: Vec<(usize, u64)>,
    types: Interner,
    actors: Interner,
    leads: Interner,
    workflows: Interner,
    /// Posting lists, one per interned id: the positions in `metas` of
    /// that value's records, ascending. Positions rather than seqs: half the
    /// memory (a tenth of the index's, 2026-12-06), and an entry is the
    /// record's place, found without a search. A purge shifts them down.
    /// Short lists take no allocation (`postings.rs`).
    by_type: Vec<Postings>,
    by_lead: Vec<Postings>,
    by_workflow: Vec<Postings>,
    /// Set once a record's position did not fit a posting (over 4 billion
    /// records in memory): queries then scan `metas` instead.
    unposted: bool,
    /// Idempotency keys, by a 64-bit hash of the key (with this process's
    /// random SipHash key): the seq of the first record whose key has that
    /// hash. A hash names a candidate, which the caller confirms against the
    /// record's own key ([`Index::idempotent_seq`]): whole keys took about
    /// 130 bytes a keyed event in memory, this about 40 (2026-12-06).
    keys: HashMap<u64, u64>,
    /// Keys whose hash another key had first, kept whole (for a random
    /// 64-bit hash, next to none).
    colliding_keys: HashMap<String, u64>,
    key_hash: KeyHash,
}

/// How idempotency keys and interned strings are hashed: SipHash with a
/// key random to this process (std's `RandomState`), so nobody can choose
/// strings that collide; in tests, optionally one hash for every string.
#[derive(Debug)]
enum KeyHash {
    Random(std::collections::hash_map::RandomState),
    #[cfg(test)]
    Constant,
}

impl Default for KeyHash {
    fn default() -> KeyHash {
        KeyHash::Random(Default::default())
    }
}

impl KeyHash {
    fn of(&self, key: &str) -> u64 {
        match self {
            KeyHash::Random(state) => state.hash_one(key),
            #[cfg(test)]
            KeyHash::Constant => 0,
        }
    }
}

/// Posting lists grow with ids; this adds `position` to list `id`.
fn post(lists: &mut Vec<Postings>, id: u32, position: u32) {
    let id = id as usize;
    if lists.len() <= id {
        lists.resize_with(id + 1, Postings::default);
    }
    lists[id].push(position);
}

impl Index {
    /// Adds a committed record stored in `segment` at `offset` with `len`
    /// bytes (newline included). A record whose seq is not above the last one,
    /// or is above [`MAX_SEQ`], is ignored.
    pub(crate) fn add(&mut self, record: &Record, segment: u32, offset: u64, len: u32) {
        let fields = Fields {
            event_type: &record.event_type,
            actor: &record.actor,
            lead: record.lead_id.as_deref(),
            workflow: record.workflow.as_deref(),
            idempotency_key: record.idempotency_key.as_deref(),
        };
        self.push(record.seq, record.timestamp, fields, segment, offset, len);
    }

    /// Adds every record of a sealed segment from its index file.
    pub(crate) fn add_sealed(&mut self, segment: u32, index: &SegmentIndex) {
        for row in &index.rows {
            let s = |id: u32| index.strings.get(id as usize).map_or("", String::as_str);
            let fields = Fields {
                event_type: s(row.event_type),
                actor: s(row.actor),
                lead: index.opt(row.lead),
                workflow: index.opt(row.workflow),
                idempotency_key: index.opt(row.idempotency_key),
            };
            let offset = u64::from(row.chunk) << 32 | u64::from(row.offset);
            self.push(row.seq, row.timestamp, fields, segment, offset, row.len);
        }
    }

    /// Points the records of a segment just compressed at their new place.
    pub(crate) fn relocate(&mut self, from: u32, to: u32, index: &SegmentIndex) {
        for row in &index.rows {
            if let Ok(i) = self.position(row.seq)
                && self.metas[i].segment == from
            {
                let m = &mut self.metas[i];
                m.segment = to;
                m.offset = u64::from(row.chunk) << 32 | u64::from(row.offset);
                m.len = row.len;
            }
        }
    }

    /// Forgets every record up to and including `seq` (a retention purge).
    pub(crate) fn purge_through(&mut self, seq: u64) {
        let cut = self.through(seq);
        if cut == 0 {
            return;
        }
        // The runs from `cut` on, moved down by it.
        let first = (cut < self.metas.len()).then(|| (0, self.seq_at(cut)));
        let later = self.runs.partition_point(|&(p, _)| p <= cut);
        self.runs = first
            .into_iter()
            .chain(self.runs[later..].iter().map(|&(p, s)| (p - cut, s)))
            .collect();
        self.metas.drain(..cut);
        // Positions below `cut` are gone, and the rest move down by it.
        let shift = u32::try_from(cut).ok();
        for list in self
            .by_type
            .iter_mut()
            .chain(self.by_lead.iter_mut())
            .chain(self.by_workflow.iter_mut())
        {
            let Some(shift) = shift else {
                // Every posted position is below a cut past any u32.
                list.clear();
                continue;
            };
            list.shift_down(shift);
        }
        self.keys.retain(|_, s| *s > seq);
        self.colliding_keys.retain(|_, s| *s > seq);
    }

    fn push(
        &mut self,
        seq: u64,
        timestamp: i64,
        fields: Fields<'_>,
        segment: u32,
        offset: u64,
        len: u32,
    ) {
        let last = self.last().map(|m| m.seq);
        if seq > MAX_SEQ || last.is_some_and(|l| l >= seq) {
            return;
        }
        if last.is_none_or(|l| l + 1 != seq) {
            self.runs.push((self.metas.len(), seq));
        }
        // Where the record goes in `metas`, if a posting can hold it.
        let position = u32::try_from(self.metas.len()).ok();
        self.unposted |= position.is_none();
        let post = |lists: &mut Vec<Postings>, id: u32| {
            if let Some(p) = position {
                post(lists, id, p);
            }
        };
        let event_type = self.types.intern(fields.event_type);
        post(&mut self.by_type, event_type);
        let actor = self.actors.intern(fields.actor);
        let lead = match fields.lead {
            Some(l) => {
                let id = self.leads.intern(l);
                post(&mut self.by_lead, id);
                id + 1
            }
            None => 0,
        };
        let workflow = match fields.workflow {
            Some(w) => {
                let id = self.workflows.intern(w);
                post(&mut self.by_workflow, id);
                id + 1
            }
            None => 0,
        };
        if let Some(key) = fields.idempotency_key {
            let hash = self.key_hash.of(key);
            match self.keys.entry(hash) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(seq);
                }
                std::collections::hash_map::Entry::Occupied(_) => {
                    self.colliding_keys.entry(key.to_owned()).or_insert(seq);
                }
            }
        }
        // Timestamps never decrease along seq; clamp a damaged file's
        // backwards step so binary searches stay valid.
        let timestamp = self
            .metas
            .last()
            .map_or(timestamp, |m| m.timestamp.max(timestamp));
        self.metas.push(Entry {
            offset,
            len,
            segment,
            timestamp,
            event_type,
            actor,
            lead,
            workflow,
        });
    }

    /// Tests: every idempotency key hashes alike from now on.
    #[cfg(test)]
    pub(crate) fn hash_keys_alike(&mut self) {
        self.key_hash = KeyHash::Constant;
    }

    /// The first indexed record.
    pub(crate) fn first(&self) -> Option<Meta> {
        self.meta(0)
    }

    /// The last indexed record.
    pub(crate) fn last(&self) -> Option<Meta> {
        self.meta(self.metas.len().checked_sub(1)?)
    }

    /// The record at `position` in `metas`, with its seq.
    fn meta(&self, position: usize) -> Option<Meta> {
        let e = self.metas.get(position)?;
        Some(Meta {
            seq: self.seq_at(position),
            offset: e.offset,
            len: e.len,
            segment: e.segment,
            timestamp: e.timestamp,
        })
    }

    /// The seq of the record at `position` (which must be in `metas`).
    fn seq_at(&self, position: usize) -> u64 {
        let run = self.runs.partition_point(|&(p, _)| p <= position);
        match run.checked_sub(1).and_then(|r| self.runs.get(r)) {
            Some(&(start, seq)) => seq + (position - start) as u64,
            None => 0,
        }
    }

    /// How many records have a seq up to and including `seq`.
    fn through(&self, seq: u64) -> usize {
        match self.position(seq) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// How many records have a seq below `seq`.
    fn below(&self, seq: u64) -> usize {
        match self.position(seq) {
            Ok(i) | Err(i) => i,
        }
    }

    /// Where the record written with idempotency key `key` may be: the
    /// seq of the first record whose key had its hash (or was `key` itself,
    /// for a key whose hash another had first). The caller must check the
    /// record's key: a different key with the same hash is not a duplicate.
    pub(crate) fn idempotent_seq(&self, key: &str) -> Option<u64> {
        self.colliding_keys
            .get(key)
            .or_else(|| self.keys.get(&self.key_hash.of(key)))
            .copied()
    }

    /// The record with `seq`.
    pub(crate) fn get(&self, seq: u64) -> Option<Meta> {
        self.meta(self.position(seq).ok()?)
    }

    /// For the record `seq` in a plain segment (whose records lie in the
    /// file in seq order): the first and last seq of the records of that
    /// segment that end past byte `len`, the ones a file `len` bytes long
    /// no longer holds; `None` when none does (or `seq` is not indexed).
    /// Linear in the segment's records: only a failed read asks.
    pub(crate) fn past_end(&self, seq: u64, len: u64) -> Option<(u64, u64)> {
        let at = self.position(seq).ok()?;
        let segment = self.metas[at].segment;
        let start = self.metas[..at]
            .iter()
            .rposition(|e| e.segment != segment)
            .map_or(0, |p| p + 1);
        let end = self.metas[at..]
            .iter()
            .position(|e| e.segment != segment)
            .map_or(self.metas.len(), |p| at + p);
        let held = self.metas[start..end]
            .partition_point(|e| e.offset.saturating_add(u64::from(e.len)) <= len);
        (start + held < end).then(|| (self.seq_at(start + held), self.seq_at(end - 1)))
    }

    /// Index into `metas` of `seq`, or where it would be (as a binary
    /// search answers): found in its run of consecutive seqs, one search
    /// among the runs (an undamaged log has one).
    fn position(&self, seq: u64) -> Result<usize, usize> {
        let run = self.runs.partition_point(|&(_, s)| s <= seq);
        let Some(&(start, first)) = run.checked_sub(1).and_then(|r| self.runs.get(r)) else {
            return Err(0);
        };
        let end = self.runs.get(run).map_or(self.metas.len(), |&(p, _)| p);
        match usize::try_from(seq - first) {
            Ok(n) if n < end - start => Ok(start + n),
            _ => Err(end),
        }
    }

    /// Up to `limit` records matching `filter` with seq strictly after
    /// `after` (oldest first) or strictly before `before` (newest first), and
    /// never above `max_seq`.
    pub(crate) fn select(
        &self,
        filter: &Filter,
        order: Order,
        cursor: Option<u64>,
        max_seq: u64,
        limit: usize,
    ) -> Vec<Meta> {
        let Some(resolved) = self.resolve(filter) else {
            return Vec::new();
        };
        // The window of positions in `metas` that time, cursor and max_seq allow.
        let mut lo = filter
            .since
            .map_or(0, |t| self.metas.partition_point(|m| m.timestamp < t));
        let mut hi = filter
            .until
            .map_or(self.metas.len(), |t| {
                self.metas.partition_point(|m| m.timestamp < t)
            })
            .min(self.through(max_seq));
        match (order, cursor) {
            (Order::OldestFirst, Some(after)) => {
                lo = lo.max(self.through(after));
            }
            (Order::NewestFirst, Some(before)) => {
                hi = hi.min(self.below(before));
            }
            _ => {}
        }
        if lo >= hi {
            return Vec::new();
        }
        let pick = |p: usize| {
            self.metas
                .get(p)
                .filter(|e| resolved.matches(e))
                .and_then(|_| self.meta(p))
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        match self.postings(&resolved) {
            // Walk the shortest posting list that applies, within the window.
            Some(list) => {
                let positions = list[within(list, lo, hi)].iter().map(|&p| p as usize);
                match order {
                    Order::OldestFirst => out.extend(positions.filter_map(pick).take(limit)),
                    Order::NewestFirst => out.extend(positions.rev().filter_map(pick).take(limit)),
                }
            }
            None => {
                let window = lo..hi;
                match order {
                    Order::OldestFirst => out.extend(window.filter_map(pick).take(limit)),
                    Order::NewestFirst => out.extend(window.rev().filter_map(pick).take(limit)),
                }
            }
        }
        out
    }

    /// Looks the filter's strings up; `None` when one names a value that
    /// never occurs, so nothing can match.
    fn resolve(&self, filter: &Filter) -> Option<Resolved> {
        let types: Vec<u32> = filter
            .event_types
            .iter()
            .filter_map(|t| self.types.get(t))
            .collect();
        if !filter.event_types.is_empty() && types.is_empty() {
            return None;
        }
        let lookup = |interner: &Interner, value: &Option<String>, offset: u32| match value {
            None => Some(None),
            Some(v) => interner.get(v).map(|id| Some(id + offset)),
        };
        Some(Resolved {
            types,
            lead: lookup(&self.leads, &filter.lead_id, 1)?,
            workflow: lookup(&self.workflows, &filter.workflow, 1)?,
            actor: lookup(&self.actors, &filter.actor, 0)?,
        })
    }

    /// The shortest posting list among the filter's fields, if any has one
    /// (none once a record was left unposted).
    fn postings(&self, r: &Resolved) -> Option<&[u32]> {
        if self.unposted {
            return None;
        }
        let mut candidates: Vec<&[u32]> = Vec::new();
        if let Some(lead) = r.lead {
            candidates.push(Self::list(&self.by_lead, lead - 1));
        }
        if let Some(wf) = r.workflow {
            candidates.push(Self::list(&self.by_workflow, wf - 1));
        }
        if let [t] = r.types[..] {
            candidates.push(Self::list(&self.by_type, t));
        }
        candidates.into_iter().min_by_key(|l| l.len())
    }

    /// The posting list of `id` in `lists` (empty if it has none).
    fn list(lists: &[Postings], id: u32) -> &[u32] {
        lists.get(id as usize).map_or(&[], Postings::as_slice)
    }
}

/// The part of a posting list that falls in the positions `lo..hi` (none
/// when `lo >= hi`).
fn within(list: &[u32], lo: usize, hi: usize) -> std::ops::Range<usize> {
    let below = |bound: usize| list.partition_point(|&p| (p as usize) < bound);
    let end = below(hi);
    below(lo).min(end)..end
}

/// The string fields of one record, borrowed from wherever they were read.
struct Fields<'a> {
    event_type: &'a str,
    actor: &'a str,
    lead: Option<&'a str>,
    workflow: Option<&'a str>,
    idempotency_key: Option<&'a str>,
}

/// A filter with its strings replaced by interned ids.
#[derive(Debug)]
struct Resolved {
    types: Vec<u32>,
    lead: Option<u32>,
    workflow: Option<u32>,
    actor: Option<u32>,
}

impl Resolved {
    fn matches(&self, m: &Entry) -> bool {
        (self.types.is_empty() || self.types.contains(&m.event_type))
            && self.lead.is_none_or(|l| m.lead == l)
            && self.workflow.is_none_or(|w| m.workflow == w)
            && self.actor.is_none_or(|a| m.actor == a)
    }
}

#[cfg(test)]
mod tests;
