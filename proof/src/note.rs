//! Signed checkpoints: the C2SP tlog-checkpoint body, signed as a C2SP
//! signed note with Ed25519.
//!
//! A checkpoint body is three lines, each ending in a newline:
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <root hash, standard base64>
//! ```
//!
//! The note is the body, an empty line, and one line per signature:
//! `— <key name> <base64(key id ‖ Ed25519 signature of the body)>`, where
//! the dash is U+2014 followed by a space. The key id is the first four
//! bytes of SHA-256(key name ‖ "\n" ‖ 0x01 ‖ public key), and the verifier
//! key is written `<name>+<key id, 8 hex digits>+<base64(0x01 ‖ public
//! key)>`. The server signs with a key named after the log's origin, so a
//! checkpoint of another log is told apart by its origin as well as by its
//! key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signature algorithm byte of Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;
/// What starts every signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note, a checkpoint or a verifier key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed verifier key: {0}")]
    BadKey(&'static str),
    #[error("malformed signed note: {0}")]
    Malformed(&'static str),
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(&'static str),
    #[error("the note has no signature by key {name}+{id:08x}")]
    NoSignature { name: String, id: u32 },
    #[error(
        "the signature by key {name}+{id:08x} does not match the note: it was changed or signed by another key"
    )]
    BadSignature { name: String, id: u32 },
    #[error("the checkpoint is of log \"{got}\", not of \"{want}\" (the key's name)")]
    WrongOrigin { got: String, want: String },
}

/// A checkpoint: a tree size and its root, for the log named `origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint body (the text a note signs).
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Reads a checkpoint body; extension lines after the root are allowed
    /// and ignored.
    pub fn parse(body: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = body.split_inclusive('\n');
        let mut line = || {
            lines
                .next()
                .and_then(|l| l.strip_suffix('\n'))
                .ok_or(NoteError::BadCheckpoint(
                    "it needs an origin, a size and a root hash, each on its own line",
                ))
        };
        let origin = line()?;
        let size = line()?;
        let root = line()?;
        if origin.is_empty() {
            return Err(NoteError::BadCheckpoint("the origin line is empty"));
        }
        let size_ok = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size: u64 = size
            .parse()
            .ok()
            .filter(|_| size_ok)
            .ok_or(NoteError::BadCheckpoint(
                "the tree size is not a decimal number",
            ))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(NoteError::BadCheckpoint(
                "the root hash is not 32 bytes in base64",
            ))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// A note's signer: an Ed25519 key and its name.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    id: u32,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer named `name` (no spaces, newlines or `+`) with the Ed25519
    /// private key `seed`.
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<NoteSigner, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(seed);
        let id = key_id(name, &key.verifying_key());
        Ok(NoteSigner {
            name: name.to_owned(),
            key,
            id,
        })
    }

    /// The verifier key, `name+keyid+base64(0x01 ‖ public key)`.
    pub fn verifier_key(&self) -> String {
        let mut typed = vec![ALG_ED25519];
        typed.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, STANDARD.encode(typed))
    }

    /// The signed note of `text` (which must end in a newline).
    pub fn sign(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        )
    }

    /// The signed note of `checkpoint`.
    pub fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> String {
        self.sign(&checkpoint.body())
    }

    /// `note` with this key's signature added after the ones it has: a
    /// note co-signed by several keys (a key rotation's handover, signed by
    /// the old key and the new one).
    pub fn cosign(&self, note: &str) -> Result<String, NoteError> {
        let (text, sigs) = split_note(note)?;
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{sigs}{SIG_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

/// A note's text (ending in a newline) and its signature lines (each
/// ending in a newline).
///
/// This is the strict reading of the C2SP signed-note format, for notes as
/// they come over the wire: the note ends with its last signature line's
/// newline, nothing after it. A caller reading a note a person kept in a
/// file (where a shell or an editor may add a newline) trims that first
/// (the CLI does).
fn split_note(note: &str) -> Result<(&str, &str), NoteError> {
    if note.ends_with("\n\n") {
        // Without this, the last empty line would be taken for the one
        // before the signatures, and the note refused for a signature line
        // missing its newline: the opposite of what is wrong.
        return Err(NoteError::Malformed(
            if note.trim_end_matches('\n').contains("\n\n") {
                "it ends with blank lines after its last signature line (a signed note ends with \
                 that line's newline)"
            } else {
                "no signature lines after the empty line"
            },
        ));
    }
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no empty line before the signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(NoteError::Malformed(
            "the last signature line does not end in a newline",
        ));
    }
    Ok((text, sigs))
}

/// The key name and key id of each signature line of `note`, in order: who
/// signed it, as the note claims (nothing is verified).
pub fn note_signers(note: &str) -> Result<Vec<(String, u32)>, NoteError> {
    let (_, sigs) = split_note(note)?;
    sigs.lines()
        .map(|line| {
            let (name, blob) = line
                .strip_prefix(SIG_PREFIX)
                .and_then(|rest| rest.split_once(' '))
                .ok_or(NoteError::Malformed(
                    "a signature line is not '— NAME SIGNATURE'",
                ))?;
            let blob = STANDARD
                .decode(blob)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            let id: [u8; 4] =
                blob.get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(NoteError::Malformed(
                        "a signature is shorter than its key id",
                    ))?;
            Ok((name.to_owned(), u32::from_be_bytes(id)))
        })
        .collect()
}

/// A verifier key as printed by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub id: u32,
    key: VerifyingKey,
}

impl std::fmt::Display for VerifierKey {
    /// The key as the server prints it, `name+keyid+base64(0x01 ‖ key)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut typed = vec![ALG_ED25519];
        typed.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.id,
            STANDARD.encode(typed)
        )
    }
}

impl VerifierKey {
    /// Reads `name+keyid+base64(0x01 ‖ public key)`.
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("expected NAME+KEYID+KEY"));
        };
        check_name(name)?;
        if id.len() != 8 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(NoteError::BadKey(
                "the key id is not 8 lower-case hex digits",
            ));
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| NoteError::BadKey("bad key id"))?;
        let typed = STANDARD
            .decode(key)
            .map_err(|_| NoteError::BadKey("the key is not base64"))?;
        let Some((&ALG_ED25519, public)) = typed.split_first() else {
            return Err(NoteError::BadKey(
                "the key is not an Ed25519 key (type 0x01)",
            ));
        };
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| NoteError::BadKey("an Ed25519 key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError::BadKey("not a valid Ed25519 public key"))?;
        if key_id(name, &key) != id {
            return Err(NoteError::BadKey(
                "the key id does not match the name and the key",
            ));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// Checks `note`'s signature by this key and returns its text.
    pub fn open<'n>(&self, note: &'n str) -> Result<&'n str, NoteError> {
        let (text, sigs) = split_note(note)?;
        let mut found = false;
        for line in sigs.lines() {
            let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
                "a signature line does not start with '— '",
            ))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or(NoteError::Malformed("a signature line has no signature"))?;
            let blob = STANDARD
                .decode(blob)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            if name != self.name || blob.len() < 4 || blob[..4] != self.id.to_be_bytes() {
                continue;
            }
            found = true;
            let signature =
                Signature::from_slice(&blob[4..]).map_err(|_| NoteError::BadSignature {
                    name: self.name.clone(),
                    id: self.id,
                })?;
            self.key
                .verify_strict(text.as_bytes(), &signature)
                .map_err(|_| NoteError::BadSignature {
                    name: self.name.clone(),
                    id: self.id,
                })?;
        }
        if !found {
            return Err(NoteError::NoSignature {
                name: self.name.clone(),
                id: self.id,
            });
        }
        Ok(text)
    }

    /// Checks a signed checkpoint: the signature by this key, and that its
    /// origin is this key's name.
    pub fn open_checkpoint(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let checkpoint = Checkpoint::parse(self.open(note)?)?;
        if checkpoint.origin != self.name {
            return Err(NoteError::WrongOrigin {
                got: checkpoint.origin,
                want: self.name.clone(),
            });
        }
        Ok(checkpoint)
    }
}

/// The key id of an Ed25519 key named `name`.
fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '+') {
        return Err(NoteError::BadKey(
            "a key name is not empty and has no spaces, newlines or '+'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of golang.org/x/mod/sumdb/note, used by every signed-note
    /// implementation: a private key, its verifier key and the note it signs.
    const SKEY: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn peter() -> NoteSigner {
        let typed = STANDARD.decode(SKEY).unwrap();
        assert_eq!(typed[0], ALG_ED25519);
        NoteSigner::new("PeterNeumann", &typed[1..].try_into().unwrap()).unwrap()
    }

    #[test]
    fn the_reference_note_is_signed_and_opened_byte_for_byte() {
        let signer = peter();
        assert_eq!(signer.verifier_key(), VKEY);
        let note = signer.sign(TEXT);
        assert_eq!(note, format!("{TEXT}\n{SIG}"));
        let key = VerifierKey::parse(VKEY).unwrap();
        assert_eq!(key.id, 0xc74f20a3);
        assert_eq!(key.open(&note).unwrap(), TEXT);
        let changed = note.replace("cryptography", "cryptographY");
        assert!(matches!(
            key.open(&changed),
            Err(NoteError::BadSignature { .. })
        ));
    }

    #[test]
    fn a_cosigned_note_opens_with_each_key_and_names_its_signers() {
        let old = NoteSigner::new("auditlog/test", &[1; 32]).unwrap();
        let new = NoteSigner::new("auditlog/test", &[2; 32]).unwrap();
        let checkpoint = Checkpoint {
            origin: "auditlog/test".into(),
            size: 3,
            root: [5; 32],
        };
        let note = new.cosign(&old.sign_checkpoint(&checkpoint)).unwrap();
        for signer in [&old, &new] {
            let key = VerifierKey::parse(&signer.verifier_key()).unwrap();
            assert_eq!(key.to_string(), signer.verifier_key());
            assert_eq!(key.open_checkpoint(&note).unwrap(), checkpoint);
        }
        let ids: Vec<u32> = note_signers(&note)
            .unwrap()
            .into_iter()
            .map(|s| s.1)
            .collect();
        assert_eq!(ids, [old.id, new.id]);
        let changed = note.replace("\n3\n", "\n4\n");
        let key = VerifierKey::parse(&new.verifier_key()).unwrap();
        assert!(matches!(
            key.open(&changed),
            Err(NoteError::BadSignature { .. })
        ));
    }

    #[test]
    fn a_note_with_blank_lines_after_its_signatures_is_refused_saying_so() {
        let key = VerifierKey::parse(VKEY).unwrap();
        let note = peter().sign(TEXT);
        for extra in ["\n", "\n\n"] {
            let padded = format!("{note}{extra}");
            let err = key.open(&padded).unwrap_err();
            assert_eq!(
                err,
                NoteError::Malformed(
                    "it ends with blank lines after its last signature line (a signed note ends \
                     with that line's newline)"
                ),
                "{padded:?}"
            );
            assert!(note_signers(&padded).is_err());
        }
        let unsigned = format!("{TEXT}\n");
        assert_eq!(
            key.open(&unsigned).unwrap_err(),
            NoteError::Malformed("no signature lines after the empty line")
        );
        let cut = note.strip_suffix('\n').unwrap();
        assert_eq!(
            key.open(cut).unwrap_err(),
            NoteError::Malformed("the last signature line does not end in a newline")
        );
    }

    #[test]
    fn mangled_verifier_keys_are_refused() {
        for bad in [
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3",
            "PeterNeumann+c74f20a3+!!!!",
        ] {
            assert!(VerifierKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checkpoints_round_trip_and_another_logs_is_refused() {
        let signer = NoteSigner::new("auditlog/test", &[7; 32]).unwrap();
        let key = VerifierKey::parse(&signer.verifier_key()).unwrap();
        let checkpoint = Checkpoint {
            origin: "auditlog/test".into(),
            size: 42,
            root: [9; 32],
        };
        let note = signer.sign_checkpoint(&checkpoint);
        assert!(note.starts_with("auditlog/test\n42\nCQkJ"));
        assert_eq!(key.open_checkpoint(&note).unwrap(), checkpoint);
        let other = NoteSigner::new("auditlog/test", &[8; 32]).unwrap();
        assert!(matches!(
            key.open_checkpoint(&other.sign_checkpoint(&checkpoint)),
            Err(NoteError::NoSignature { .. })
        ));
        let foreign = Checkpoint {
            origin: "auditlog/other".into(),
            ..checkpoint
        };
        assert!(matches!(
            key.open_checkpoint(&signer.sign_checkpoint(&foreign)),
            Err(NoteError::WrongOrigin { .. })
        ));
        for bad in ["o\n01\nAA==\n", "o\n1\n", "o\nx\nAA==\n", "\n1\nCQ==\n"] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
