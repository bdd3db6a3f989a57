//! A bundle built here from a tree in memory and a signer: it verifies, and
//! each change (a line, a proof hash, a dropped or a doubled record, a
//! record from beyond the checkpoint, another key, another log) is named.

use super::*;
use crate::{MemoryTree, NoteSigner, inclusion_proof};

const ORIGIN: &str = "auditlog/test";

/// The log's line at `seq`; seq 11 was cut, and the tree holds its gap leaf.
fn line(seq: u64) -> String {
    if seq == 11 {
        return String::from_utf8(crate::gap_line(seq)).unwrap();
    }
    format!(r#"{{"seq":{seq},"event_type":"lead_ingested","lead_id":"LEAD-{seq}"}}"#)
}

/// A log of 13 records, a checkpoint of it, and a bundle of `seqs`.
fn bundle(seqs: &[u64]) -> (Bundle, VerifierKey) {
    let signer = NoteSigner::new(ORIGIN, &[7; 32]).unwrap();
    let mut tree = MemoryTree::default();
    for seq in 1..=13 {
        tree.push(leaf_hash(line(seq).as_bytes()));
    }
    let checkpoint = Checkpoint {
        origin: ORIGIN.into(),
        size: 13,
        root: crate::merkle::root(&tree, 13).unwrap(),
    };
    let records = seqs
        .iter()
        .map(|&seq| {
            let proof = inclusion_proof(&tree, seq - 1, 13).unwrap().unwrap();
            BundleRecord::new(seq, line(seq), &leaf_hash(line(seq).as_bytes()), &proof)
        })
        .collect();
    let b = Bundle {
        format: FORMAT.into(),
        selection: "lead LEAD-1".into(),
        verifier_key: signer.verifier_key(),
        checkpoint: signer.sign_checkpoint(&checkpoint),
        seqs: Some(seqs.to_vec()),
        records,
    };
    let key = VerifierKey::parse(&signer.verifier_key()).unwrap();
    (b, key)
}

/// The one problem `b` has, as a line.
fn problem(b: &Bundle, key: &VerifierKey) -> String {
    let report = b.verify(key).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    report.problems[0].to_string()
}

#[test]
fn a_bundle_verifies_and_round_trips_through_json() {
    let (b, key) = bundle(&[1, 2, 5, 8, 13]);
    let json = serde_json::to_vec_pretty(&b).unwrap();
    let read = Bundle::parse(&json).unwrap();
    assert_eq!(read, b);
    assert_eq!(read.own_key().unwrap(), key);
    let report = read.verify(&key).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.verified, report.listed), (5, Some(5)));
    assert_eq!(report.checkpoint.size, 13);
}

#[test]
fn each_change_is_named() {
    let (b, key) = bundle(&[1, 2, 5, 8, 13]);

    let mut changed = b.clone();
    changed.records[2].line = changed.records[2].line.replace("LEAD-5", "LEAD-6");
    let p = problem(&changed, &key);
    assert!(p.starts_with("seq 5: the line was changed"), "{p}");

    let mut bad_proof = b.clone();
    bad_proof.records[1].proof[0] = bad_proof.records[0].proof[1].clone();
    let p = problem(&bad_proof, &key);
    assert!(p.starts_with("seq 2: the inclusion proof is wrong"), "{p}");

    let mut dropped = b.clone();
    dropped.records.remove(3);
    let p = problem(&dropped, &key);
    assert!(
        p.starts_with("seq 8: listed") && p.contains("dropped"),
        "{p}"
    );

    let mut doubled = b.clone();
    doubled.records.push(doubled.records[0].clone());
    assert!(problem(&doubled, &key).contains("twice"));

    let mut beyond = b.clone();
    beyond.records[4].seq = 14;
    beyond.records[4].leaf_index = 13;
    let report = beyond.verify(&key).unwrap();
    let p = report.problems.iter().find(|p| p.seq == 14).unwrap();
    assert!(p.what.contains("seqs 1 to 13"), "{report:?}");

    let mut garbled = b.clone();
    garbled.records[0].proof[0] = "not base64!".into();
    assert!(problem(&garbled, &key).contains("proof hash 0"));

    // Without a completeness claim a dropped record cannot show.
    let mut unlisted = dropped.clone();
    unlisted.seqs = None;
    assert!(unlisted.verify(&key).unwrap().ok());
}

#[test]
fn another_key_or_another_log_is_refused() {
    let (b, _) = bundle(&[3]);
    let other = NoteSigner::new(ORIGIN, &[8; 32]).unwrap();
    let other_key = VerifierKey::parse(&other.verifier_key()).unwrap();
    let err = b.verify(&other_key).unwrap_err();
    assert!(
        matches!(err, BundleError::Checkpoint(NoteError::NoSignature { .. })),
        "{err}"
    );

    // Another log's checkpoint under our own key name.
    let elsewhere = NoteSigner::new("auditlog/elsewhere", &[7; 32]).unwrap();
    let mut foreign = b.clone();
    foreign.checkpoint = elsewhere.sign_checkpoint(&Checkpoint {
        origin: "auditlog/elsewhere".into(),
        size: 13,
        root: [0; 32],
    });
    let (_, key) = bundle(&[3]);
    assert!(foreign.verify(&key).is_err());

    let mut json = serde_json::to_value(&b).unwrap();
    json["format"] = "auditlog-bundle/9".into();
    let err = Bundle::parse(json.to_string().as_bytes()).unwrap_err();
    assert!(matches!(err, BundleError::Format(_)), "{err}");
    assert!(matches!(Bundle::parse(b"{}"), Err(BundleError::Json(_))));
}

#[test]
fn a_gap_line_is_never_a_record_though_its_proof_holds() {
    let (b, key) = bundle(&[10, 11, 12]);
    let found = problem(&b, &key);
    assert!(found.starts_with("seq 11: "), "{found}");
    assert!(found.contains("gap line"), "{found}");
}
