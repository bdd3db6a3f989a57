//! The targets of the log floor: what the server reads from its data
//! directory, where anyone with access to the disk can have put anything.

use std::collections::HashMap;
use std::path::Path;

use super::sample::{clear, is_valid, keyring, runtime};
use crate::keys::Keyring;
use crate::store::chain::{FindingKind, Verifier};
use crate::store::manifest::{Manifest, SegmentEntry};
use crate::store::record::{GENESIS, IndexFields, MacCheck, NewEvent, Record, RecordHead};
use crate::store::{self, LOG_FILE, Order, QUARANTINE_FILE};

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
        assert_eq!(*record.event_type, *fields.event_type, "index event_type");
    }
    // The sealer's layout reading never gives other fields than a JSON
    // parse that accepts the line.
    if let (Some(read), Some(parsed)) = (IndexFields::read(line), IndexFields::parse(line)) {
        assert_eq!(read, parsed, "the layout reads other fields than JSON");
    }
    let none = HashMap::new();
    let mut verifier = Verifier::new(&keys, &none, 1, GENESIS);
    let seq = verifier.check_line(LOG_FILE, 1, line).map(|h| h.seq);
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
            prev = record.signature.into_string();
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
/// line boundary, and moves exactly what it cut to the quarantine file
/// (without zeros, each stretch between them a line); it never drops a
/// complete line with a valid MAC, except the records of a batch the log
/// ends inside of (the cut then starts at that batch's first record, valid
/// and announcing more records than follow) and what follows the log's
/// first zero byte (the cut then starts at the line that holds it). The
/// store then opens without cutting more, and appends a valid record after
/// what it kept, with the seq after the last one indexed, that verification
/// finds chained to the line before it.
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
    if cut.contains(&0) {
        // The zeros written ahead are space, not content: the quarantine
        // holds everything else that was cut, in lines, and no zero.
        let content = |b: &[u8]| -> Vec<u8> {
            b.iter()
                .copied()
                .filter(|&b| b != 0 && b != b'\n')
                .collect()
        };
        assert!(!quarantined.contains(&0), "a zero byte was quarantined");
        assert!(
            quarantined.is_empty() || quarantined.ends_with(b"\n"),
            "the quarantine ends inside a line"
        );
        assert_eq!(
            content(&quarantined),
            content(cut),
            "the quarantine is what was cut"
        );
    } else if cut.is_empty() {
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
    // The log ends at its first zero byte; otherwise only an unfinished
    // batch is cut.
    if let Some(first) = complete.first().filter(|l| !l.contains(&0)) {
        let head = is_valid(first, &keys).unwrap_or_else(|| {
            panic!(
                "recovery cut complete lines after {} bytes without a batch",
                kept.len()
            )
        });
        let size = head.batch.unwrap_or(0) as usize;
        // Lines after the first zero byte are cut whatever they are.
        let before_zero = complete.iter().take_while(|l| !l.contains(&0)).count();
        assert!(
            size > before_zero,
            "recovery cut a batch of {size} with all {before_zero} of its records"
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
    let config = store::StoreConfig {
        data_dir: dir.to_path_buf(),
        durability: store::Durability::Fsync,
        max_segment_bytes: u64::MAX,
        max_segment_age: None,
        lead_copies: true,
        replica: false,
    };
    let store = match store::Store::open(config, keys.clone()) {
        Ok(store) => store,
        // The server signs nothing under a key that the newest records
        // and the oldest all fail while their chain holds (`trust.rs`): a
        // log whose every record was changed looks the same; nor under
        // one that leaves them signed by a key it does not hold. Each
        // record it counts must fail its MAC or name such a key.
        Err(
            store::StoreError::WrongKey { checked, .. }
            | store::StoreError::UnheldKey { checked, .. },
        ) => {
            let log = std::fs::read(dir.join(LOG_FILE)).unwrap_or_default();
            let failing = log
                .split(|&b| b == b'\n')
                .filter_map(|line| Some((RecordHead::peek(line)?, line)))
                .filter(|(head, line)| head.check_mac(line, &keys) != MacCheck::Valid)
                .count();
            assert!(
                checked >= 1 && failing >= checked,
                "refused for its key over {checked} records, {failing} failing"
            );
            return;
        }
        Err(e) => panic!("the store does not open on a recovered log: {e}"),
    };
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
    match newest {
        Ok(page) => assert_eq!(
            page.records.last().map_or(0, |r| r.seq),
            head,
            "the newest record served is not the last indexed"
        ),
        // A last record changed on disk (its MAC fails) is kept by recovery
        // for verification to report, and a read of it is refused.
        Err(store::StoreError::Corrupt { seq, .. }) if seq == head => {}
        Err(e) => panic!("the last indexed record cannot be read: {e}"),
    }
    let before = std::fs::read(dir.join(LOG_FILE)).unwrap_or_default();
    let event = NewEvent {
        event_type: "error".into(),
        actor: "fuzz".into(),
        caller: None,
        lead_id: None,
        workflow: None,
        details: Default::default(),
        idempotency_key: None,
    };
    let receipts = runtime()
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
    is_valid(line, &keys).unwrap_or_else(|| panic!("the appended record is invalid"));
    // Verification chains line by line: whatever damage the log holds is
    // reported where it is, and the server's own record adds no break.
    let appended = after.iter().filter(|&&b| b == b'\n').count() as u64;
    let report = store::check_log_bytes(&after, &keys);
    let broken = report
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::ChainBreak && f.line == appended);
    assert!(
        broken.is_none(),
        "the appended record breaks the chain: {broken:?}"
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
    for (lead, span) in spans.iter() {
        let chunk = chunks
            .get(span.chunk as usize)
            .unwrap_or_else(|| panic!("{lead:?} names chunk {} of {}", span.chunk, chunks.len()));
        assert!(
            u64::from(span.offset) + u64::from(span.bytes) <= u64::from(chunk.plain),
            "{lead:?}'s span runs past its chunk"
        );
    }
    let listed: Vec<(&str, store::leads::Span)> = spans.iter().collect();
    let again = store::leads::decode(&store::leads::encode(&chunks, &listed))
        .unwrap_or_else(|e| panic!("an index written back does not decode: {e}"));
    assert_eq!(again, (chunks, spans), "the index changed on the way");
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    let path = dir.join(name);
    if let Err(e) = std::fs::write(&path, data) {
        panic!("cannot write {}: {e}", path.display());
    }
}
