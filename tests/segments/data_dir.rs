//! The data directory behind the server's back: the compressed segments,
//! the manifest, and gzip as the standard tools write and read it.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::{files, plain_sealed};
use crate::segments::PATIENCE;

/// The compressed segments in `dir`, in name (= seq) order.
pub(crate) fn gz_files(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|n| n.starts_with("audit.") && n.ends_with(".log.gz"))
        .collect()
}

/// Waits until the sealer has compressed every sealed segment.
pub(crate) async fn wait_compressed(dir: &Path) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !plain_sealed(dir).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sealed segments were not compressed: {:?}",
            files(dir)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A manifest entry: the segment's file and seq range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) file: String,
    pub(crate) first: u64,
    pub(crate) last: u64,
}

/// The segments `manifest.json` lists, in order.
pub(crate) fn manifest(dir: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    value["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Entry {
            file: s["file"].as_str().unwrap().to_owned(),
            first: s["first_seq"].as_u64().unwrap(),
            last: s["last_seq"].as_u64().unwrap(),
        })
        .collect()
}

/// The `.idx` file of a segment.
pub(crate) fn idx_of(gz: &str) -> String {
    format!("{}.idx", gz.strip_suffix(".log.gz").unwrap())
}

/// A `.gz` file decompressed as `zcat` does (every gzip member in turn).
pub(crate) fn zcat(path: &Path) -> String {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// `text` compressed as one gzip member, as `gzip` would.
pub(crate) fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}
