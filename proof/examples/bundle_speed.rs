//! Bundle verification speed: builds a bundle of N records (default
//! 100,000) from a tree in memory, signs its checkpoint, and times
//! `Bundle::verify`, printing records/s. The issue's goal is at least
//! 200,000 records/s; run it in release:
//!
//! ```sh
//! cargo run --release -p auditlog-proof --example bundle_speed -- 100000
//! ```

use std::time::Instant;

use auditlog_proof::bundle::FORMAT;
use auditlog_proof::merkle::root;
use auditlog_proof::{
    Bundle, BundleRecord, Checkpoint, MemoryTree, NoteSigner, VerifierKey, inclusion_proof,
    leaf_hash,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 100_000,
    };
    let line = |seq: u64| {
        format!(
            r#"{{"seq":{seq},"timestamp":"2026-12-03T12:00:00.000000Z","event_type":"lead_ingested","lead_id":"LEAD-{seq}","workflow":"sales","actor":"system","details":{{"source":"webform"}},"prev":"0000000000000000000000000000000000000000000000000000000000000000","sig":"1111111111111111111111111111111111111111111111111111111111111111"}}"#
        )
    };
    let mut tree = MemoryTree::default();
    for seq in 1..=n {
        tree.push(leaf_hash(line(seq).as_bytes()));
    }
    let signer = NoteSigner::new("auditlog/bench", &[9; 32])?;
    let checkpoint = Checkpoint {
        origin: "auditlog/bench".into(),
        size: n,
        root: root(&tree, n)?,
    };
    let mut records = Vec::new();
    for seq in 1..=n {
        let proof = inclusion_proof(&tree, seq - 1, n)??;
        records.push(BundleRecord::new(
            seq,
            line(seq),
            &leaf_hash(line(seq).as_bytes()),
            &proof,
        ));
    }
    let bundle = Bundle {
        format: FORMAT.into(),
        selection: "bench".into(),
        verifier_key: signer.verifier_key(),
        checkpoint: signer.sign_checkpoint(&checkpoint),
        seqs: Some((1..=n).collect()),
        records,
    };
    let key = VerifierKey::parse(&signer.verifier_key())?;
    let started = Instant::now();
    let report = bundle.verify(&key)?;
    let took = started.elapsed();
    if !report.ok() {
        return Err(format!(
            "the bench's bundle does not verify: {:?}",
            report.problems[0]
        )
        .into());
    }
    println!(
        "verified {} records in {:.3} s: {:.0} records/s",
        report.verified,
        took.as_secs_f64(),
        report.verified as f64 / took.as_secs_f64()
    );
    Ok(())
}
