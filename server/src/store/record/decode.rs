//! Decoding a stored line: what the read path decodes it into
//! ([`Decoded`]: a [`Record`], or a reader's own form such as the service's
//! encoded answer), the borrowed form for readers that only re-encode a
//! line ([`RecordRef`]), the indexed fields the sealer reads
//! ([`IndexFields`]), and why a line is refused ([`LineError`]).

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{Record, signature_of, timestamp_format};

/// A form of `details` a stored line can be decoded into: a JSON object,
/// or a reader's own type (the service decodes it into protobuf).
pub trait DetailsForm: DeserializeOwned + Send + 'static {}

impl<D: DeserializeOwned + Send + 'static> DetailsForm for D {}

/// What the read path decodes a line into: a [`Record`], or a reader's own
/// form of it (the service encodes a Query page's events straight from the
/// line). The read path checks the seq of what it decoded against the seq it
/// expected.
pub trait Decoded: Send + 'static + Sized {
    /// Decodes one line (without its trailing newline).
    fn from_line(line: &[u8]) -> Result<Self, LineError>;
    fn seq(&self) -> u64;
}

impl<D: DetailsForm> Decoded for Record<D> {
    fn from_line(line: &[u8]) -> Result<Self, LineError> {
        parse_row(line)
    }

    fn seq(&self) -> u64 {
        self.seq
    }
}

/// A decoded line's signature field, which [`parse_row`] checks against
/// the trailing one.
pub(crate) trait Signed {
    fn signature(&self) -> &str;
}

impl<D> Signed for Record<D> {
    fn signature(&self) -> &str {
        &self.signature
    }
}

impl Signed for RecordRef<'_> {
    fn signature(&self) -> &str {
        &self.signature
    }
}

/// The lines of `bytes` (a group, a frame), without their newlines and
/// but empty ones, found with `memchr` rather than a byte at a time.
pub(crate) fn lines_of(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    memchr::memchr_iter(b'\n', bytes)
        .chain(std::iter::once(bytes.len()))
        .filter_map(move |end| {
            let line = bytes.get(at..end)?;
            at = end + 1;
            (!line.is_empty()).then_some(line)
        })
}

/// Decodes one line (without its trailing newline) into `T`.
pub(crate) fn parse_row<'a, T: Deserialize<'a> + Signed>(line: &'a [u8]) -> Result<T, LineError> {
    let hex_sig = signature_of(line).ok_or(LineError::NoSignature)?;
    // One UTF-8 check of the whole line, not one per string field.
    let text = std::str::from_utf8(line).map_err(|e| LineError::Json(e.to_string()))?;
    let row: T = serde_json::from_str(text).map_err(|e| LineError::Json(e.to_string()))?;
    // The parsed signature must be the trailing one the MAC check reads,
    // or a line with two signature fields could show one and check another.
    if row.signature().as_bytes() != hex_sig {
        return Err(LineError::SignatureMismatch);
    }
    Ok(row)
}

/// A line's fields as [`Record`] has them, borrowed from the line where
/// they hold no escape: for readers that only re-encode a record (the
/// service's Query pages), with no allocation per field. It refuses what
/// `Record` refuses (a test holds the two alike).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordRef<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(with = "timestamp_format")]
    pub timestamp: i64,
    #[serde(borrow)]
    pub event_type: Cow<'a, str>,
    #[serde(borrow)]
    pub actor: Cow<'a, str>,
    #[serde(borrow, default)]
    pub caller: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub lead_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub workflow: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "object_text")]
    pub details: &'a str,
    #[serde(borrow, default)]
    pub idempotency_key: Option<Cow<'a, str>>,
    #[serde(default)]
    pub batch: Option<u32>,
    #[serde(borrow)]
    pub key_id: Cow<'a, str>,
    #[serde(borrow)]
    pub prev: Cow<'a, str>,
    #[serde(borrow)]
    pub signature: Cow<'a, str>,
}

/// `details`' text as the line holds it, refused unless an object (as
/// [`Details`] refuses it).
fn object_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'de str, D::Error> {
    let raw = <&serde_json::value::RawValue>::deserialize(d)?;
    if !raw.get().starts_with('{') {
        return Err(serde::de::Error::custom("details is not a JSON object"));
    }
    Ok(raw.get())
}

/// The fields an index needs, parsed without building `details`: what the
/// sealer reads from each record. `details` is most of a parse, so skipping
/// it makes the sealer's pass over a segment much cheaper.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct IndexFields<'a> {
    pub seq: u64,
    #[serde(with = "timestamp_format")]
    pub timestamp: i64,
    #[serde(borrow)]
    pub event_type: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub actor: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    pub lead_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub workflow: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub idempotency_key: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    pub prev: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub signature: std::borrow::Cow<'a, str>,
    pub(super) details: serde::de::IgnoredAny,
}

impl<'a> IndexFields<'a> {
    /// Reads the indexed fields of one line (without its newline) as JSON.
    pub(crate) fn parse(line: &'a [u8]) -> Option<IndexFields<'a>> {
        serde_json::from_slice(line).ok()
    }
}

/// Why a line is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("the line does not end with a signature field")]
    NoSignature,
    #[error("the line is not a valid record: {0}")]
    Json(String),
    #[error("the signature field does not match the record's signature")]
    SignatureMismatch,
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::tests::sealed;
    use super::*;

    /// A borrowed record as the owned one it reads as.
    pub(in crate::store::record) fn owned(r: &RecordRef<'_>) -> Record {
        let short = |s: &Cow<'_, str>| super::super::Short::from(&**s);
        let name = |s: &Cow<'_, str>| super::super::Name::from(&**s);
        let opt = |s: &Option<Cow<'_, str>>| s.as_ref().map(name);
        Record {
            seq: r.seq,
            id: short(&r.id),
            timestamp: r.timestamp,
            event_type: name(&r.event_type),
            actor: name(&r.actor),
            caller: opt(&r.caller),
            lead_id: opt(&r.lead_id),
            workflow: opt(&r.workflow),
            details: serde_json::from_str(r.details).unwrap(),
            idempotency_key: opt(&r.idempotency_key),
            batch: r.batch,
            key_id: short(&r.key_id),
            prev: short(&r.prev),
            signature: short(&r.signature),
        }
    }

    #[test]
    fn a_borrowed_record_reads_and_refuses_as_a_record_does() {
        let (record, line) = sealed();
        let text = std::str::from_utf8(&line[..line.len() - 1]).unwrap();
        let borrowed: RecordRef<'_> = parse_row(text.as_bytes()).unwrap();
        assert_eq!(owned(&borrowed), record);
        // Strings without escapes are borrowed from the line.
        assert!(matches!(borrowed.event_type, Cow::Borrowed(_)));
        let broken = [
            text.replacen("\"actor\"", "\"extra\":1,\"actor\"", 1),
            text.replacen("\"actor\":\"system\",", "", 1),
            text.replacen("2026-02-04T20:30:45.123456Z", "yesterday", 1),
            text.replacen("\"details\":{", "\"details\":[{", 1)
                .replacen("}},", "}}],", 1),
            text.replacen("\"key_id\"", "\"signature\":\"ab\",\"key_id\"", 1),
            text.replacen("\"seq\":42", "\"seq\":-1", 1),
        ];
        for line in broken {
            assert_ne!(line, text);
            let record = parse_row::<Record>(line.as_bytes());
            let borrowed = parse_row::<RecordRef<'_>>(line.as_bytes());
            assert!(record.is_err() && borrowed.is_err(), "{line}");
        }
    }

    #[test]
    fn lines_are_split_at_newlines_without_empty_ones() {
        let split = |bytes: &'static [u8]| lines_of(bytes).collect::<Vec<_>>();
        assert_eq!(
            split(b"{\"seq\":1}\n{\"seq\":2}\n"),
            [b"{\"seq\":1}", b"{\"seq\":2}"]
        );
        assert_eq!(split(b"a\n\nb"), [b"a".as_slice(), b"b"]);
        assert!(split(b"\n").is_empty());
        assert!(split(b"").is_empty());
    }
}
