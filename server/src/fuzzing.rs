//! Entry points for the fuzz targets in `fuzz/` and for their replay on
//! stable in `tests/fuzz_regressions.rs`: each takes arbitrary bytes, runs
//! them through the code that reads untrusted input, and checks what must
//! hold whatever the input. A panic is a finding: either the code under test
//! panicked, or one of the properties asserted here does not hold.
//!
//! Not part of the API: the modules under test stay private, and this one
//! only reaches into them through `pub(crate)` hooks.

use std::collections::HashMap;
use std::path::Path;

use auditlog_proto::v1 as pb;
use prost::Message as _;
use tonic::Code;

use crate::keys::Keyring;
use crate::service::{self, MAX_BATCH, MAX_DETAILS_BYTES, MAX_QUERY_LIMIT, PageToken};
use crate::store::chain::Verifier;
use crate::store::manifest::{Manifest, SegmentEntry};
use crate::store::record::{GENESIS, IndexFields, MacCheck, NewEvent, Record, RecordHead};
use crate::store::{self, LOG_FILE, Order, QUARANTINE_FILE};

/// The id of the key every target signs and checks with.
pub const KEY_ID: &str = "k1";
/// The key itself: seeds signed with it carry valid MACs.
pub const KEY: &[u8] = b"auditlog fuzzing key, not a secret";

/// The keyring the targets use.
pub fn keyring() -> Keyring {
    Keyring::new(KEY_ID, KEY.to_vec())
}

/// `n` chained records from seq 1, signed with [`KEY`], as a log file. With
/// `batch = Some((seq, size))` the record at `seq` opens a batch of `size`.
pub fn sample_log(n: u64, batch: Option<(u64, u32)>) -> Vec<u8> {
    let keys = keyring();
    let mut prev = GENESIS.to_owned();
    let mut log = Vec::new();
    for seq in 1..=n {
        let mut details = serde_json::Map::new();
        details.insert("n".into(), serde_json::Value::from(seq));
        let event = NewEvent {
            event_type: "lead_ingested".into(),
            actor: "system".into(),
            lead_id: Some(format!("LEAD-{seq:03}")),
            workflow: (seq % 2 == 0).then(|| "sales".to_owned()),
            details,
            idempotency_key: None,
        };
        let size = batch.filter(|b| b.0 == seq).map(|b| b.1);
        let timestamp = 1_770_000_000_000_000 + seq as i64;
        let (record, line) = Record::seal(
            event,
            seq,
            format!("id-{seq}"),
            timestamp,
            size,
            &prev,
            &keys,
        );
        prev = record.signature;
        log.extend_from_slice(&line);
    }
    log
}

/// The seed inputs of every target, as `(target, name, bytes)`: valid
/// inputs the fuzzer starts from and mutates (records signed with [`KEY`],
/// a signed manifest, issued page tokens, accepted requests).
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let log = sample_log(6, Some((3, 3)));
    let lines: Vec<&[u8]> = log.split_inclusive(|&b| b == b'\n').collect();
    let strip = |l: &[u8]| l.strip_suffix(b"\n").unwrap_or(l).to_vec();
    let mut gz = Vec::new();
    {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = encoder.write_all(&log);
        let _ = encoder.finish();
    }
    let mut seeds = vec![
        ("record", "first", strip(lines[0])),
        ("record", "batch_head", strip(lines[2])),
        ("verify", "clean", [&[0u8][..], &log].concat()),
        ("verify", "gzip", [&[13u8][..], &gz].concat()),
        ("recovery", "clean", log.clone()),
        ("recovery", "torn_tail", log[..log.len() - 20].to_vec()),
        ("recovery", "open_batch", lines[..4].concat()),
    ];
    let mut manifest = Manifest {
        version: 1,
        segments: vec![SegmentEntry {
            file: "audit.20260101T000000.000000Z.log.gz".into(),
            index: "audit.20260101T000000.000000Z.idx".into(),
            first_seq: 1,
            last_seq: 6,
            first_timestamp: "2026-01-01T00:00:00.000001Z".into(),
            last_timestamp: "2026-01-01T00:00:00.000006Z".into(),
            events: 6,
            first_prev: GENESIS.into(),
            last_signature: "ab".repeat(32),
            sha256: "cd".repeat(32),
            bytes: 1234,
            index_sha256: "ef".repeat(32),
            summary: store::manifest::Summary {
                event_types: [("lead_ingested".to_owned(), 6)].into(),
                workflows: [("sales".to_owned(), 3)].into(),
                leads: 6,
            },
        }],
        purged: Some(store::manifest::Purged {
            through_seq: 0,
            last_signature: GENESIS.into(),
        }),
        key_id: String::new(),
    };
    if let Ok(bytes) = manifest.signed_bytes(&keyring()) {
        seeds.push(("manifest", "signed", bytes));
    }
    let chunk = |offset, plain| store::segment::Chunk {
        offset,
        compressed: 100,
        plain,
    };
    let span = |chunk, offset, bytes| store::leads::Span {
        chunk,
        offset,
        bytes,
    };
    seeds.push((
        "lead_index",
        "two_leads",
        store::leads::encode(
            &[chunk(0, 900), chunk(100, 400)],
            &[
                ("LEAD-001", span(0, 0, 900)),
                ("LEAD-002", span(1, 120, 280)),
            ],
        ),
    ));
    let fingerprint = PageToken::fingerprint(&Default::default(), Order::NewestFirst);
    seeds.push((
        "page_token",
        "issued",
        PageToken::encode(42, fingerprint).into_bytes(),
    ));
    let details = prost_types::Struct {
        fields: [
            (
                "source",
                prost_types::value::Kind::StringValue("web".into()),
            ),
            ("score", prost_types::value::Kind::NumberValue(87.5)),
            ("count", prost_types::value::Kind::NumberValue(3.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), prost_types::Value { kind: Some(v) }))
        .collect(),
    };
    let event = pb::EventInput {
        event_type: "lead_ingested".into(),
        actor: "crm".into(),
        lead_id: "LEAD-001".into(),
        workflow: "sales".into(),
        details: Some(details),
        idempotency_key: "key-1".into(),
    };
    let log_req = pb::LogRequest {
        event: Some(event.clone()),
    };
    let batch = pb::LogBatchRequest {
        events: vec![event.clone(), event],
    };
    let query = pb::QueryRequest {
        filter: Some(pb::EventFilter {
            event_types: vec!["lead_ingested".into()],
            lead_id: "LEAD-001".into(),
            since: Some(prost_types::Timestamp {
                seconds: 1_770_000_000,
                nanos: 5000,
            }),
            until: Some(prost_types::Timestamp {
                seconds: 1_780_000_000,
                nanos: 0,
            }),
            ..Default::default()
        }),
        limit: 50,
        oldest_first: true,
        page_token: PageToken::encode(7, 1),
    };
    seeds.push((
        "validation",
        "log",
        [&[0u8][..], &log_req.encode_to_vec()].concat(),
    ));
    seeds.push((
        "validation",
        "batch",
        [&[1u8][..], &batch.encode_to_vec()].concat(),
    ));
    seeds.push((
        "validation",
        "query",
        [&[2u8][..], &query.encode_to_vec()].concat(),
    ));
    seeds
}

/// Whether `line` is a record the server could have written: it parses and
/// its MAC is valid under [`KEY`].
fn is_valid(line: &[u8], keys: &Keyring) -> Option<Record> {
    let record = Record::parse(line).ok()?;
    (record.check_mac(line, keys) == MacCheck::Valid).then_some(record)
}

/// `record`: one line through the parser, the fixed-position reader
/// verification uses, the index reader, and a verifier at seq 1.
///
/// Properties: where the full parse and the fixed-position read both
/// succeed they agree on seq, `prev` and signature; a line whose MAC is
/// valid parses; the index reader agrees with the full parse.
pub fn record(line: &[u8]) {
    let keys = keyring();
    let parsed = Record::parse(line);
    let head = RecordHead::peek(line);
    if let Some(head) = &head {
        let mac = head.check_mac(line, &keys);
        if mac == MacCheck::Valid {
            assert!(parsed.is_ok(), "a line with a valid MAC does not parse");
        }
    }
    if let (Ok(record), Some(head)) = (&parsed, &head) {
        assert_eq!(record.seq, head.seq, "seq");
        assert_eq!(record.prev, head.prev, "prev");
        assert_eq!(record.signature, head.signature, "signature");
        let _ = record.check_mac(line, &keys);
    }
    if let (Ok(record), Some(fields)) = (&parsed, IndexFields::parse(line)) {
        assert_eq!(record.seq, fields.seq, "index seq");
        assert_eq!(record.timestamp, fields.timestamp, "index timestamp");
        assert_eq!(record.event_type, fields.event_type, "index event_type");
    }
    let none = HashMap::new();
    let mut verifier = Verifier::new(&keys, &none, 1, GENESIS);
    let seq = verifier.check_line(LOG_FILE, 1, line);
    assert_eq!(seq, head.map(|h| h.seq), "the verifier reads the head");
    let report = verifier.finish();
    if report.findings.is_empty() {
        assert!(is_valid(line, &keys).is_some(), "a bad line verified clean");
    }
}

/// `verify`: a whole file through the verifier. The first byte chooses
/// between the active log (plain lines) and a compressed segment.
///
/// Property (plain): a report without findings means every line is a
/// record with a valid MAC, seqs run 1, 2, 3, ... and each `prev` is the
/// signature before it.
pub fn verify(data: &[u8]) {
    let keys = keyring();
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        let entry = SegmentEntry {
            file: "audit.20260101T000000.000000Z.log.gz".into(),
            first_seq: 1,
            last_seq: u64::from(mode >> 1),
            first_prev: GENESIS.into(),
            ..SegmentEntry::default()
        };
        let _ = store::check_gzip_bytes(bytes, &entry, &keys);
        return;
    }
    let report = store::check_log_bytes(bytes, &keys);
    let lines = bytes.split_inclusive(|&b| b == b'\n');
    assert!(report.events_checked <= lines.clone().count() as u64);
    if report.findings.is_empty() {
        let mut prev = GENESIS.to_owned();
        let mut n = 0u64;
        for line in lines {
            let line = line
                .strip_suffix(b"\n")
                .unwrap_or_else(|| panic!("a torn last line verified clean"));
            let record = is_valid(line, &keys)
                .unwrap_or_else(|| panic!("an invalid line verified clean: {line:?}"));
            n += 1;
            assert_eq!(record.seq, n, "seqs verified clean out of order");
            assert_eq!(record.prev, prev, "a broken chain verified clean");
            prev = record.signature;
        }
        assert_eq!(report.events_checked, n);
        assert_eq!(report.head_seq, n);
    }
}

/// `recovery`: `data` as the active log in `dir`, recovered as on start,
/// then the store opened on it and one event appended. `dir` is emptied
/// first; it must hold nothing else of value.
///
/// Properties: recovery succeeds; it only cuts the end of the log, at a
/// line boundary, and moves exactly what it cut to the quarantine file; it
/// never drops a complete line with a valid MAC, except the records of a
/// batch the log ends inside of (the cut then starts at that batch's first
/// record, valid and announcing more records than follow). The store then
/// opens without cutting more, and appends a valid record after what it
/// kept, with the seq after the last one indexed and chained to it.
pub fn recovery(dir: &Path, data: &[u8]) {
    let keys = keyring();
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_default();
    clear(dir);
    write(dir, LOG_FILE, data);
    let (len, last) = store::recover_summary(dir, &keys)
        .unwrap_or_else(|e| panic!("recovery failed on a readable directory: {e}"));
    let kept = read(LOG_FILE);
    assert_eq!(len, kept.len() as u64, "the length recovery reports");
    assert!(
        data.starts_with(&kept),
        "recovery changed more than the end"
    );
    assert!(
        kept.is_empty() || kept.ends_with(b"\n"),
        "recovery kept a torn line"
    );
    let cut = &data[kept.len()..];
    let quarantined = read(QUARANTINE_FILE);
    if cut.is_empty() {
        assert!(quarantined.is_empty(), "quarantined without cutting");
    } else {
        let mut expected = cut.to_vec();
        if !expected.ends_with(b"\n") {
            expected.push(b'\n');
        }
        assert_eq!(quarantined, expected, "the quarantine is what was cut");
    }
    let complete: Vec<&[u8]> = cut
        .split_inclusive(|&b| b == b'\n')
        .filter_map(|l| l.strip_suffix(b"\n"))
        .collect();
    if let Some(first) = complete.first() {
        let head = is_valid(first, &keys).unwrap_or_else(|| {
            panic!(
                "recovery cut complete lines after {} bytes without a batch",
                kept.len()
            )
        });
        let size = head.batch.unwrap_or(0) as usize;
        assert!(
            size > complete.len(),
            "recovery cut a batch of {size} with all {} of its records",
            complete.len()
        );
    }
    append_after_recovery(dir, keys, last);
    let log = read(LOG_FILE);
    assert!(log.starts_with(&kept), "opening the store cut more");
    assert_eq!(read(QUARANTINE_FILE), quarantined, "opening the store cut");
}

/// Opens the store on a recovered `dir` (recovering it again), appends one
/// event, and checks the record it wrote.
fn append_after_recovery(dir: &Path, keys: Keyring, last: Option<u64>) {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("no tokio runtime: {e}"))
    });
    let config = store::StoreConfig {
        data_dir: dir.to_path_buf(),
        durability: store::Durability::Fsync,
        max_segment_bytes: u64::MAX,
        lead_copies: true,
    };
    let store = store::Store::open(config, keys.clone())
        .unwrap_or_else(|e| panic!("the store does not open on a recovered log: {e}"));
    let head = store.head();
    assert_eq!(
        last.unwrap_or(0),
        head,
        "the store indexes what recovery did"
    );
    let newest: Result<store::Page, _> = store.page(
        &store::Filter::default(),
        Order::NewestFirst,
        None,
        u64::MAX,
        1,
    );
    let prev = match newest {
        Ok(page) => page
            .records
            .last()
            .map_or(GENESIS.to_owned(), |r| r.signature.clone()),
        Err(e) => panic!("the last indexed record cannot be read: {e}"),
    };
    let before = std::fs::read(dir.join(LOG_FILE)).unwrap_or_default();
    let event = NewEvent {
        event_type: "error".into(),
        actor: "fuzz".into(),
        lead_id: None,
        workflow: None,
        details: Default::default(),
        idempotency_key: None,
    };
    let receipts = runtime
        .block_on(store.append(vec![event]))
        .unwrap_or_else(|e| panic!("appending after recovery failed: {e}"));
    store.shutdown();
    let seq = receipts.first().map(|r| r.seq);
    assert_eq!(seq, Some(head + 1), "the seq after the last indexed one");
    let after = std::fs::read(dir.join(LOG_FILE)).unwrap_or_default();
    let line = after
        .strip_prefix(before.as_slice())
        .and_then(|l| l.strip_suffix(b"\n"))
        .unwrap_or_else(|| panic!("the append is not one line after the log"));
    let record = is_valid(line, &keys).unwrap_or_else(|| panic!("the appended record is invalid"));
    assert_eq!(
        record.prev, prev,
        "the appended record chains to the last one"
    );
}

/// `manifest`: a manifest file's bytes through the parser.
///
/// Properties: a manifest that loads names its segment and index files as
/// plain names inside the data directory (nothing with `/` or `..`), and
/// written back and read again it is the same manifest, authentic.
pub fn manifest(data: &[u8]) {
    let keys = keyring();
    let Ok(loaded) = Manifest::parse(data, &keys) else {
        return;
    };
    for entry in &loaded.manifest.segments {
        for name in [&entry.file, &entry.index] {
            let mut parts = Path::new(name).components();
            let plain = matches!(
                (parts.next(), parts.next()),
                (Some(std::path::Component::Normal(_)), None)
            );
            assert!(
                plain,
                "the manifest names a file outside the data directory: {name:?}"
            );
        }
    }
    let mut manifest = loaded.manifest;
    let bytes = manifest
        .signed_bytes(&keys)
        .unwrap_or_else(|e| panic!("a loaded manifest cannot be written: {e}"));
    let again = Manifest::parse(&bytes, &keys)
        .unwrap_or_else(|e| panic!("a written manifest does not load: {e}"));
    assert!(again.authentic, "a written manifest is not authentic");
    assert_eq!(again.manifest, manifest, "the manifest changed on the way");
}

/// `lead_index`: a lead copy's `.leads.idx` bytes through its decoder.
///
/// Properties: a decoded index has every span inside its chunk, and encoded
/// again it decodes to the same chunks and spans.
pub fn lead_index(data: &[u8]) {
    let Ok((chunks, spans)) = store::leads::decode(data) else {
        return;
    };
    for (lead, span) in &spans {
        let chunk = chunks
            .get(span.chunk as usize)
            .unwrap_or_else(|| panic!("{lead:?} names chunk {} of {}", span.chunk, chunks.len()));
        assert!(
            u64::from(span.offset) + u64::from(span.bytes) <= u64::from(chunk.plain),
            "{lead:?}'s span runs past its chunk"
        );
    }
    let listed: Vec<(&str, store::leads::Span)> =
        spans.iter().map(|(l, s)| (l.as_ref(), *s)).collect();
    let again = store::leads::decode(&store::leads::encode(&chunks, &listed))
        .unwrap_or_else(|e| panic!("an index written back does not decode: {e}"));
    assert_eq!(again, (chunks, spans), "the index changed on the way");
}

/// `page_token`: a Query `page_token` as a caller may send it.
///
/// Properties: decoding never panics, and a token that decodes is one the
/// server issues: encoding what it holds gives it back byte for byte.
pub fn page_token(data: &[u8]) {
    let token = String::from_utf8_lossy(data);
    let fingerprint = PageToken::fingerprint(&Default::default(), Order::NewestFirst);
    let _ = PageToken::decode(&token, fingerprint);
    if let Some((seq, fp)) = PageToken::parse(&token) {
        assert_eq!(
            PageToken::encode(seq, fp),
            token,
            "a token the server never issues is accepted"
        );
        assert_eq!(PageToken::decode(&token, fp).ok(), Some(seq));
    }
}

/// `validation`: a request decoded from the bytes after the first, which
/// chooses its kind (Log, LogBatch or Query), through the handler's checks.
///
/// Properties: a rejection is INVALID_ARGUMENT with at least one field
/// violation; an accepted event keeps the documented limits, and written as
/// a record it reads back as it went in, with a valid MAC; an accepted query
/// has a limit of 1 to 1000 and a time range that is not empty.
pub fn validation(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            let Ok(req) = pb::LogRequest::decode(bytes) else {
                return;
            };
            match service::validate_log(req, "system") {
                Ok(event) => accepted_event(event),
                Err(status) => rejected(&status),
            }
        }
        1 => {
            let Ok(req) = pb::LogBatchRequest::decode(bytes) else {
                return;
            };
            match service::validate_batch(req.events, "system") {
                Ok(events) => {
                    assert!((1..=MAX_BATCH).contains(&events.len()));
                    events.into_iter().for_each(accepted_event);
                }
                Err(status) => rejected(&status),
            }
        }
        _ => {
            let Ok(req) = pb::QueryRequest::decode(bytes) else {
                return;
            };
            match service::plan_query(req, Ok) {
                Ok(plan) => {
                    assert!((1..=MAX_QUERY_LIMIT as usize).contains(&plan.limit));
                    if let (Some(since), Some(until)) = (plan.filter.since, plan.filter.until) {
                        assert!(since < until, "an empty time range was accepted");
                    }
                }
                Err(status) => rejected(&status),
            }
        }
    }
}

fn rejected(status: &tonic::Status) {
    use tonic_types::StatusExt as _;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let violations = status
        .get_error_details()
        .bad_request()
        .map_or(0, |b| b.field_violations.len());
    assert!(violations > 0, "a rejection names no field: {status:?}");
}

fn accepted_event(event: NewEvent) {
    let t = &event.event_type;
    assert!(!t.is_empty() && t.len() <= service::MAX_EVENT_TYPE_LEN);
    assert!(
        t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    );
    for value in [
        Some(&event.actor),
        event.lead_id.as_ref(),
        event.workflow.as_ref(),
        event.idempotency_key.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!value.is_empty() && value.chars().count() <= service::MAX_FIELD_LEN);
    }
    let details = serde_json::to_vec(&event.details).map_or(usize::MAX, |d| d.len());
    assert!(details <= MAX_DETAILS_BYTES, "details of {details} bytes");
    let keys = keyring();
    let (record, line) = Record::seal(
        event,
        7,
        "id".into(),
        1_770_000_000_000_000,
        None,
        GENESIS,
        &keys,
    );
    let body = line.strip_suffix(b"\n").unwrap_or(&line);
    let back =
        Record::parse(body).unwrap_or_else(|e| panic!("an accepted event does not read back: {e}"));
    assert_eq!(back, record, "an accepted event reads back changed");
    assert_eq!(back.check_mac(body, &keys), MacCheck::Valid);
    let head = RecordHead::peek(body);
    assert!(head.is_some_and(|h| h.check_mac(body, &keys) == MacCheck::Valid));
}

/// Removes every file in `dir`.
fn clear(dir: &Path) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if let Err(e) = std::fs::remove_file(&path) {
            panic!("cannot remove {}: {e}", path.display());
        }
    }
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    let path = dir.join(name);
    if let Err(e) = std::fs::write(&path, data) {
        panic!("cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_log_passes_every_target() {
        let log = sample_log(5, Some((2, 3)));
        let mut input = vec![0];
        input.extend_from_slice(&log);
        verify(&input);
        assert!(store::check_log_bytes(&log, &keyring()).findings.is_empty());
        for line in log.split_inclusive(|&b| b == b'\n') {
            record(&line[..line.len() - 1]);
        }
        let dir = tempfile::tempdir().unwrap();
        recovery(dir.path(), &log);
        recovery(dir.path(), &log[..log.len() - 10]);
    }

    #[test]
    fn a_sample_log_cut_inside_its_batch_loses_the_batch() {
        let log = sample_log(4, Some((2, 3)));
        let lines: Vec<&[u8]> = log.split_inclusive(|&b| b == b'\n').collect();
        let dir = tempfile::tempdir().unwrap();
        recovery(dir.path(), &lines[..3].concat());
        let quarantined = std::fs::read(dir.path().join(QUARANTINE_FILE)).unwrap();
        assert_eq!(quarantined, lines[1..3].concat());
        let log = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        assert!(log.starts_with(lines[0]) && log[lines[0].len()..].starts_with(b"{\"seq\":2,"));
    }
}
