//! Readable with standard tools: every segment decompresses as `zcat` does
//! to JSON lines whose seqs and chain run on into `audit.log`.

use serde_json::Value;

use crate::common::{self, TestServer};
use crate::segments::GENESIS;
use crate::segments::compare::logged;
use crate::segments::data_dir::{gz_files, manifest, wait_compressed, zcat};
use crate::segments::tiny;
use crate::segments::writing::{plan, write};

#[tokio::test]
async fn segments_decompress_with_zcat_to_one_chained_log() {
    let server = TestServer::start_with(tiny).await;
    let client = server.client().await;
    let calls = plan(1, 700);
    let receipts = write(&client, &calls).await;
    client.rotate(true).await.unwrap();
    write(&client, &[701..702, 702..703]).await;
    let dir = &server.data_dir;
    wait_compressed(dir).await;

    let gz = gz_files(dir);
    assert!(gz.len() >= 5, "{gz:?}");
    let listed = manifest(dir);
    assert_eq!(
        listed.iter().map(|e| e.file.clone()).collect::<Vec<_>>(),
        gz,
        "the manifest lists every segment, in seq order"
    );
    let mut records: Vec<Value> = Vec::new();
    for (name, entry) in gz.iter().zip(&listed) {
        let text = zcat(&dir.join(name));
        assert!(text.ends_with('\n'), "{name}");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}")))
            .collect();
        assert_eq!(lines[0]["seq"].as_u64(), Some(entry.first), "{name}");
        assert_eq!(
            lines.last().unwrap()["seq"].as_u64(),
            Some(entry.last),
            "{name}"
        );
        records.extend(lines);
    }
    for line in common::read_lines(&server.log_path()) {
        records.push(serde_json::from_str(&line).unwrap());
    }
    let got: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(got, (1..=702).collect::<Vec<_>>());
    let mut prev = GENESIS.to_owned();
    for r in &records {
        assert_eq!(r["prev"].as_str().unwrap(), prev, "seq {}", r["seq"]);
        prev = r["signature"].as_str().unwrap().to_owned();
    }
    for r in &receipts {
        let rec = &records[usize::try_from(r.seq).unwrap() - 1];
        assert_eq!(rec["signature"].as_str().unwrap(), r.signature);
        assert_eq!(rec["details"], logged(r.seq).details);
    }
}
