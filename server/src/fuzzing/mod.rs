//! Entry points for the fuzz targets in `fuzz/` and for their replay on
//! stable in `tests/fuzz_regressions.rs`: each takes arbitrary bytes, runs
//! them through the code that reads untrusted input, and checks what must
//! hold whatever the input. A panic is a finding: either the code under test
//! panicked, or one of the properties asserted here does not hold.
//!
//! Not part of the API: the modules under test stay private, and this one
//! only reaches into them through `pub(crate)` hooks. One file per floor:
//! `log` for what is read from the data directory (a record line, a log or
//! segment file, recovery, the manifest, a lead copy's index), `requests`
//! for what callers send (validation, page tokens), `proofs` for what an
//! auditor's verifier reads from a server or a file it does not trust
//! (proofs, signed notes, bundles, a witness's mirror), `stream` for what a
//! cluster node's replica appends from the replicated stream, `sample` the
//! key, the sample log and the helpers they share; this module holds the
//! seeds.

mod log;
mod proofs;
mod requests;
mod sample;
mod stream;

use auditlog_proto::v1 as pb;
use prost::Message as _;

pub use log::{lead_index, manifest, record, recovery, verify};
pub use proofs::{bundle, merkle, mirror, note};
pub use requests::{page_token, validation};
pub use sample::{KEY, KEY_ID, keyring, sample_log};
pub use stream::apply;

use crate::service::PageToken;
use crate::store::manifest::{Manifest, SegmentEntry};
use crate::store::record::GENESIS;
use crate::store::{self, Order};

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
        details_json: String::new(),
    };
    let log_req = pb::LogRequest {
        event: Some(event.clone()),
        with_proof: false,
    };
    let batch = pb::LogBatchRequest {
        events: vec![event.clone(), event],
        with_proof: false,
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
        min_seq: 0,
        details_as_json: false,
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
    let json_event = pb::EventInput {
        event_type: "crm_update".into(),
        details: None,
        details_json: r#" {"b": true, "a": {"x": null, "n": 3}, "b": [2, 2.5, "\u00e9"]} "#.into(),
        ..Default::default()
    };
    seeds.push((
        "validation",
        "log_json",
        [
            &[0u8][..],
            &pb::LogRequest {
                event: Some(json_event),
                with_proof: false,
            }
            .encode_to_vec(),
        ]
        .concat(),
    ));
    // The proof targets read their input as choices (sizes, indexes,
    // edits), so any bytes are a case; these start from a few of each kind.
    seeds.push(("merkle", "each_kind", b"\x00\x40\x00\x01\x00\x20\x00\x03\x02\x00\x05\x11\x01\x00\x30\x00\x07\x05\x00\x01\x00\x02\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x00\x20".to_vec()));
    seeds.push(("note", "checkpoint", signed_note_seed()));
    // Three groups of the replica's chain, each `from, length - 1, edit`
    // and three bytes for the edit: seqs 1 to 3, a torn line refused,
    // then 2 to 9, its first two re-delivered.
    seeds.push((
        "apply",
        "deliveries",
        vec![0, 2, 0, 0, 0, 0, 3, 2, 6, 1, 0, 40, 1, 7, 0, 0, 0, 0],
    ));
    seeds.push((
        "bundle",
        "three_of_five",
        b"\x00\x04\x00\x01\x00\x01\x00\x00\x00\x02\x02".to_vec(),
    ));
    // A log of seven with seq 3 cut, a checkpoint of five, one line doubled.
    seeds.push((
        "mirror",
        "seven_one_cut",
        b"\x00\x06\x01\x01\x00\x01\x01\x01\x01\x00\x05\x00\x00\x00\x02\x02\x01".to_vec(),
    ));
    seeds
}

/// A signed checkpoint note as the server writes one: read as text by the
/// `note` target, and its bytes are also the choices of its edits.
fn signed_note_seed() -> Vec<u8> {
    let checkpoint = auditlog_proof::Checkpoint {
        origin: "fuzz.example/log".to_owned(),
        size: 5,
        root: auditlog_proof::empty_root(),
    };
    auditlog_proof::NoteSigner::new("fuzz.example/log", &[7; 32])
        .map(|s| s.sign_checkpoint(&checkpoint).into_bytes())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LOG_FILE, QUARANTINE_FILE};

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
