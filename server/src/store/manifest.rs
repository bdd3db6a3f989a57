//! The manifest: `manifest.json`, the list of sealed segments in seq order.
//!
//! Each entry records the segment's file and index names, seq and time
//! ranges, event count, first `prev` and last `signature`, the SHA-256 of the
//! `.gz` and of the `.idx`, and a summary (counts by type and workflow,
//! distinct leads). `purged` records the last retention purge.
//!
//! The server writes it as one line of JSON signed like a record: its last
//! field is `"mac":"<64 hex>"`, an HMAC-SHA256 under `key_id` of the bytes
//! before `,"mac":…` followed by `}`. An edit made without the key (say,
//! dropping an entry to hide a deleted segment) is therefore detected. A
//! reader checks the MAC over that canonical form of the content it decoded,
//! so the same manifest laid out another way (pretty-printed, keys
//! reordered) still verifies, and a changed value never does.
//!
//! It is replaced atomically (`crate::durable`): written to
//! `manifest.json.tmp`, fsynced, renamed over `manifest.json`, and the
//! directory fsynced. A crash leaves
//! either the old or the new manifest, never a mix.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::record::MAX_SEQ;
use super::segment::SealedInfo;
use crate::clock::{format_timestamp, parse_timestamp};
use crate::durable;
use crate::keys::Keyring;

pub(crate) const MANIFEST_FILE: &str = "manifest.json";
const MAC_HEAD: &[u8] = b",\"mac\":\"";

/// The list of sealed segments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub version: u32,
    pub segments: Vec<SegmentEntry>,
    #[serde(default)]
    pub purged: Option<Purged>,
    /// The key the MAC is made with.
    #[serde(default)]
    pub key_id: String,
}

/// One sealed segment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SegmentEntry {
    pub file: String,
    pub index: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_timestamp: String,
    pub last_timestamp: String,
    pub events: u64,
    pub first_prev: String,
    pub last_signature: String,
    pub sha256: String,
    pub bytes: u64,
    pub index_sha256: String,
    pub summary: Summary,
}

/// What occurs in a segment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Summary {
    pub event_types: BTreeMap<String, u64>,
    pub workflows: BTreeMap<String, u64>,
    pub leads: u64,
}

/// The last retention purge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Purged {
    /// Every seq up to this one is gone.
    pub through_seq: u64,
    /// The signature of that last purged record: the `prev` of the first
    /// record kept.
    pub last_signature: String,
}

/// A manifest as read from disk.
#[derive(Debug, Clone, Default)]
pub(crate) struct Loaded {
    pub manifest: Manifest,
    /// False when the MAC does not match: the file was edited.
    pub authentic: bool,
}

/// Why the manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {MANIFEST_FILE}: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "{MANIFEST_FILE} is not a valid manifest ({0}); it lists the compressed segments, so the \
         server does not start without it: restore it from a backup"
    )]
    Invalid(String),
    #[error(
        "{MANIFEST_FILE} is missing, but the data directory shows a log that had one: {0}. It \
         lists the compressed segments and what retention purged; without it the server would \
         serve only the seqs in plain files, as if the others had never been written, so it \
         does not start: restore {MANIFEST_FILE} from a backup of the data directory"
    )]
    Missing(String),
}

impl SegmentEntry {
    /// The entry for a segment just compressed.
    pub(crate) fn new(file: String, index: String, info: &SealedInfo) -> SegmentEntry {
        SegmentEntry {
            file,
            index,
            first_seq: info.first_seq,
            last_seq: info.last_seq,
            first_timestamp: format_timestamp(info.first_timestamp),
            last_timestamp: format_timestamp(info.last_timestamp),
            events: info.events,
            first_prev: info.first_prev.clone(),
            last_signature: info.last_signature.clone(),
            sha256: info.sha256.clone(),
            bytes: info.bytes,
            index_sha256: info.index_sha256.clone(),
            summary: Summary {
                event_types: info.event_types.clone(),
                workflows: info.workflows.clone(),
                leads: info.leads,
            },
        }
    }

    /// Checks that the entry names its files the way the sealer does:
    /// `audit.<stamp>.log.gz` and `audit.<stamp>.idx`, the stamp of ASCII
    /// letters, digits and dots. Recovery opens and rewrites these files and
    /// retention deletes them, all relative to the data directory, so a name
    /// with a `/` or `..`, or naming another file there (`hmac.key`), must
    /// never get that far, signed or not.
    fn check_names(&self) -> Result<(), String> {
        let stem = self
            .file
            .strip_prefix("audit.")
            .and_then(|s| s.strip_suffix(".log.gz"))
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
        match stem {
            None => Err(format!(
                "segment file {:?} is not a name the server gives (audit.<stamp>.log.gz)",
                self.file
            )),
            Some(stem) if self.index != format!("audit.{stem}.idx") => Err(format!(
                "segment {:?} has index file {:?}, not audit.{stem}.idx",
                self.file, self.index
            )),
            Some(_) => Ok(()),
        }
    }

    /// The time of the newest event, in microseconds.
    pub(crate) fn last_micros(&self) -> Option<i64> {
        parse_timestamp(&self.last_timestamp)
    }
}

impl Manifest {
    /// Reads the manifest in `dir`; an absent one is empty (and authentic):
    /// whether it may be absent is `trust`'s to say at start.
    pub(crate) fn load(dir: &Path, keyring: &Keyring) -> Result<Loaded, ManifestError> {
        let bytes = match std::fs::read(dir.join(MANIFEST_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Loaded {
                    manifest: Manifest {
                        version: 1,
                        ..Manifest::default()
                    },
                    authentic: true,
                });
            }
            Err(e) => return Err(e.into()),
        };
        Manifest::parse(&bytes, keyring)
    }

    /// Decodes the bytes of a manifest file and checks its MAC. Any JSON
    /// layout of the object is read (say, pretty-printed by hand): the MAC
    /// is checked over the manifest's canonical form, the compact one the
    /// server writes, so it vouches for the content whatever the spacing.
    pub(crate) fn parse(bytes: &[u8], keyring: &Keyring) -> Result<Loaded, ManifestError> {
        let mut value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid(e.to_string()))?;
        let mac = match value.as_object_mut().and_then(|map| map.remove("mac")) {
            Some(serde_json::Value::String(mac)) => mac,
            _ => {
                return Err(ManifestError::Invalid(
                    "it has no \"mac\" string field".into(),
                ));
            }
        };
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|e| ManifestError::Invalid(e.to_string()))?;
        for entry in &manifest.segments {
            entry.check_names().map_err(ManifestError::Invalid)?;
        }
        let seqs = manifest
            .segments
            .iter()
            .flat_map(|s| [s.first_seq, s.last_seq]);
        if let Some(seq) = seqs
            .chain(manifest.purged.as_ref().map(|p| p.through_seq))
            .find(|&seq| seq > MAX_SEQ)
        {
            return Err(ManifestError::Invalid(format!(
                "it names seq {seq}, above the highest seq a record can have"
            )));
        }
        let mut content = serde_json::to_vec(&manifest).map_err(std::io::Error::other)?;
        // The MAC covers the canonical bytes without their closing brace.
        content.pop();
        let authentic = keyring
            .get(&manifest.key_id)
            .is_some_and(|key| hex::decode(mac).is_ok_and(|m| key.verify(&content, &m)));
        Ok(Loaded {
            manifest,
            authentic,
        })
    }

    /// Replaces the manifest in `dir` atomically, signed with the active key.
    pub(crate) fn store(&mut self, dir: &Path, keyring: &Keyring) -> std::io::Result<()> {
        let bytes = self.signed_bytes(keyring)?;
        durable::replace(&dir.join(MANIFEST_FILE), &bytes)
    }

    /// The file's bytes: the manifest signed with the keyring's active key,
    /// which it then names.
    pub(crate) fn signed_bytes(&mut self, keyring: &Keyring) -> std::io::Result<Vec<u8>> {
        let (key_id, key) = keyring.active();
        key_id.clone_into(&mut self.key_id);
        let mut bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        // Drop the closing brace, sign what is left, and close with the MAC.
        bytes.pop();
        let mac = hex::encode(key.sign(&bytes));
        bytes.extend_from_slice(MAC_HEAD);
        bytes.extend_from_slice(mac.as_bytes());
        bytes.extend_from_slice(b"\"}\n");
        Ok(bytes)
    }

    /// The entry whose segment file is `file`.
    pub(crate) fn entry(&self, file: &str) -> Option<&SegmentEntry> {
        self.segments.iter().find(|s| s.file == file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::new("k1", vec![9; 32])
    }

    fn sample() -> Manifest {
        Manifest {
            version: 1,
            segments: vec![SegmentEntry {
                file: "audit.x.log.gz".into(),
                index: "audit.x.idx".into(),
                first_seq: 1,
                last_seq: 10,
                ..SegmentEntry::default()
            }],
            purged: None,
            key_id: String::new(),
        }
    }

    #[test]
    fn stored_manifest_loads_back_authentic() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = sample();
        m.store(dir.path(), &keyring()).unwrap();
        let loaded = Manifest::load(dir.path(), &keyring()).unwrap();
        assert!(loaded.authentic);
        assert_eq!(loaded.manifest, m);
        assert!(!dir.path().join("manifest.json.tmp").exists());
    }

    #[test]
    fn an_edited_manifest_is_not_authentic() {
        let dir = tempfile::tempdir().unwrap();
        sample().store(dir.path(), &keyring()).unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"last_seq\":10", "\"last_seq\":11")).unwrap();
        let loaded = Manifest::load(dir.path(), &keyring()).unwrap();
        assert!(!loaded.authentic);
        assert_eq!(loaded.manifest.segments[0].last_seq, 11);
        let other = Keyring::new("k1", vec![1; 32]);
        std::fs::write(&path, text).unwrap();
        assert!(!Manifest::load(dir.path(), &other).unwrap().authentic);
    }

    #[test]
    fn only_names_the_sealer_gives_are_accepted() {
        // Found by the manifest fuzz target: any name loaded, so a manifest
        // edited to name `../x` or `/etc/x` (or `hmac.key`) sent recovery's
        // index rebuild and retention's deletes outside the segments.
        let keys = keyring();
        let cases = [
            ("audit.x.log.gz", "audit.x.idx", true),
            (
                "audit.20260101T000000.000000Z.log.gz",
                "audit.20260101T000000.000000Z.idx",
                true,
            ),
            ("audit.x.log.gz", "audit.y.idx", false),
            ("audit.x.log.gz", "../audit.x.idx", false),
            ("audit.x.log.gz", "audit.x/../../a.idx", false),
            ("/etc/audit.x.log.gz", "audit.x.idx", false),
            ("audit.a/b.log.gz", "audit.a/b.idx", false),
            ("audit...log.gz", "audit...idx", true),
            ("audit..log.gz", "audit..idx", false),
            ("audit.log.gz", "audit.idx", false),
            ("hmac.key", "hmac.key", false),
            ("", "", false),
        ];
        for (file, index, ok) in cases {
            let mut m = sample();
            m.segments[0].file = file.into();
            m.segments[0].index = index.into();
            let bytes = m.signed_bytes(&keys).unwrap();
            let loaded = Manifest::parse(&bytes, &keys);
            assert_eq!(loaded.is_ok(), ok, "{file} {index}: {loaded:?}");
        }
    }

    #[test]
    fn seqs_past_max_seq_are_refused() {
        // The writer continues at the purge's through_seq + 1, which must
        // exist.
        let keys = keyring();
        let mut m = sample();
        m.purged = Some(Purged {
            through_seq: u64::MAX,
            last_signature: String::new(),
        });
        assert!(Manifest::parse(&m.signed_bytes(&keys).unwrap(), &keys).is_err());
        let mut m = sample();
        m.segments[0].last_seq = MAX_SEQ + 1;
        assert!(Manifest::parse(&m.signed_bytes(&keys).unwrap(), &keys).is_err());
        m.segments[0].last_seq = MAX_SEQ;
        assert!(Manifest::parse(&m.signed_bytes(&keys).unwrap(), &keys).is_ok());
    }

    #[test]
    fn any_layout_of_a_signed_manifest_verifies() {
        // A pretty-printed manifest stopped the server: the MAC was looked
        // for at the end of the raw bytes.
        let keys = keyring();
        let bytes = sample().signed_bytes(&keys).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        let loaded = Manifest::parse(&pretty, &keys).unwrap();
        assert!(loaded.authentic);
        let edited = String::from_utf8(pretty)
            .unwrap()
            .replace("\"last_seq\": 10", "\"last_seq\": 11");
        assert!(!Manifest::parse(edited.as_bytes(), &keys).unwrap().authentic);
        assert!(Manifest::parse(b"{\"version\":1}", &keys).is_err());
    }

    #[test]
    fn a_missing_manifest_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = Manifest::load(dir.path(), &keyring()).unwrap();
        assert!(loaded.authentic && loaded.manifest.segments.is_empty());
    }
}
