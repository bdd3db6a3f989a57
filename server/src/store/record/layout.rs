//! The indexed fields of a line read by the record's fixed layout, the one
//! [`super::Record::seal`] writes, without parsing `details` (a JSON parse spends
//! most of its time there, even skipping it): the sealer's pass over a
//! segment.
//!
//! A line with the layout gives the fields a JSON parse gives. A changed line
//! may be read by the layout where a JSON parse refuses it (damage inside
//! `details`, a field given twice): its row then points at a line that fails
//! its MAC when read, as any changed line does (reads check every line they
//! serve), and verification reports it either way.
//!
//! The layout: `{"seq":N,"id":S,"timestamp":S,"event_type":S,"actor":S`,
//! then `,"caller":S` if any, `,"lead_id":S|null,"workflow":S|null`,
//! `,"details":{...}`, then `,"idempotency_key":S` and `,"batch":N` if any,
//! and `,"key_id":S,"prev":S,"signature":S}`, where `S` is a JSON string.
//! Anything else is not read here: the caller parses the line as JSON.

use std::borrow::Cow;

use super::{IndexFields, RecordHead, SIG_SUFFIX_LEN};

const KEY_HEAD: &[u8] = b",\"key_id\":\"";
const PREV_HEAD: &[u8] = b"\",\"prev\":\"";

impl<'a> IndexFields<'a> {
    /// The indexed fields of one line (without its newline): read by the
    /// layout, else parsed as JSON ([`IndexFields::parse`]).
    pub(crate) fn read(line: &'a [u8]) -> Option<IndexFields<'a>> {
        RecordHead::peek(line)
            .and_then(|head| by_layout(line, &head))
            .or_else(|| IndexFields::parse(line))
    }
}

/// The fields of a line written by [`super::Record::seal`]; `None` where the line
/// does not have that layout.
fn by_layout<'a>(line: &'a [u8], head: &RecordHead<'a>) -> Option<IndexFields<'a>> {
    // The head: `{"seq":N` as `peek` read it, then fields in their order.
    let digits = line
        .get(7..)?
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let mut front = Fields {
        rest: line.get(7 + digits..)?,
    };
    front.token("id")?;
    let timestamp = crate::clock::parse_timestamp(front.plain_string("timestamp")?)?;
    let event_type = front.string("event_type")?;
    let actor = front.string("actor")?;
    if front.rest.starts_with(b",\"caller\":") {
        front.string("caller")?;
    }
    let lead_id = front.string_or_null("lead_id")?;
    let workflow = front.string_or_null("workflow")?;
    if !front.rest.starts_with(b",\"details\":{") {
        return None;
    }
    // The tail, from the end: `key_id`, `prev` and `signature` as `peek`
    // read them (so their lengths say where they start), and before them
    // `batch` and `idempotency_key` if any.
    let tail = KEY_HEAD.len() + head.key_id.len() + PREV_HEAD.len() + 64 + 1 + SIG_SUFFIX_LEN;
    let key_at = line.len().checked_sub(tail)?;
    if !line[key_at..].starts_with(KEY_HEAD) {
        return None;
    }
    let mut middle = &line[..key_at];
    let batch_digits = middle
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if batch_digits > 0 {
        middle = middle[..middle.len() - batch_digits].strip_suffix(b",\"batch\":")?;
    }
    let idempotency_key = match middle.last() {
        Some(b'}') => None,
        Some(b'"') => {
            let start = string_start(middle)?;
            middle[..start].strip_suffix(b",\"idempotency_key\":")?;
            Some(decode(&middle[start..])?)
        }
        _ => return None,
    };
    Some(IndexFields {
        seq: head.seq,
        timestamp,
        event_type,
        actor,
        lead_id,
        workflow,
        idempotency_key,
        prev: Cow::Borrowed(head.prev),
        signature: Cow::Borrowed(head.signature),
        details: serde::de::IgnoredAny,
    })
}

/// The fields after `seq`, read in order.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The JSON string token of field `name`, which must come next.
    fn token(&mut self, name: &str) -> Option<&'a [u8]> {
        let rest = self.rest.strip_prefix(b",\"")?;
        let rest = rest.strip_prefix(name.as_bytes())?;
        let rest = rest.strip_prefix(b"\":")?;
        let len = string_len(rest)?;
        self.rest = &rest[len..];
        Some(&rest[..len])
    }

    fn string(&mut self, name: &str) -> Option<Cow<'a, str>> {
        decode(self.token(name)?)
    }

    /// A string field without escapes, as the timestamp always is.
    fn plain_string(&mut self, name: &str) -> Option<&'a str> {
        match decode(self.token(name)?)? {
            Cow::Borrowed(s) => Some(s),
            Cow::Owned(_) => None,
        }
    }

    fn string_or_null(&mut self, name: &str) -> Option<Option<Cow<'a, str>>> {
        let null = self
            .rest
            .strip_prefix(b",\"")
            .and_then(|r| r.strip_prefix(name.as_bytes()))
            .and_then(|r| r.strip_prefix(b"\":null"));
        if let Some(rest) = null {
            self.rest = rest;
            return Some(None);
        }
        self.string(name).map(Some)
    }
}

/// The length of the JSON string token at the start of `bytes`, quotes
/// included.
fn string_len(bytes: &[u8]) -> Option<usize> {
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', bytes.get(i..)?)?;
        match bytes[i] {
            b'"' => return Some(i + 1),
            // An escape: the next byte is never the string's end.
            _ => i += 2,
        }
    }
}

/// Where the JSON string token that ends `bytes` starts: at the `"` before
/// it that is not escaped, that is, preceded by an even number of `\`.
fn string_start(bytes: &[u8]) -> Option<usize> {
    let mut end = bytes.len().checked_sub(1)?;
    loop {
        let quote = memchr::memrchr(b'"', &bytes[..end])?;
        let backslashes = bytes[..quote]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return Some(quote);
        }
        end = quote;
    }
}

/// A JSON string token's text: borrowed when it has no escapes.
fn decode(token: &[u8]) -> Option<Cow<'_, str>> {
    let inner = token.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if memchr::memchr(b'\\', inner).is_none() {
        return std::str::from_utf8(inner).ok().map(Cow::Borrowed);
    }
    serde_json::from_slice::<String>(token).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, json};

    use super::*;
    use crate::keys::Keyring;
    use crate::store::record::{GENESIS, NewEvent, Record};

    fn keyring() -> Keyring {
        Keyring::new("k1", vec![5; 32])
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_]{1,12}",
            any::<String>(),
            Just(r#"a"b\c"#.to_owned()),
            Just(r#"\"#.to_owned()),
            Just(r#"x\""#.to_owned()),
            Just(r#"","key_id":""#.to_owned()),
            Just("}".to_owned()),
        ]
    }

    proptest! {
        #[test]
        fn the_layout_gives_what_a_json_parse_gives(
            event_type in text(),
            actor in text(),
            caller in proptest::option::of(text()),
            lead_id in proptest::option::of(text()),
            workflow in proptest::option::of(text()),
            key in proptest::option::of(text()),
            detail in text(),
            batch in proptest::option::of(0u32..100_000),
            seq in 1u64..u64::MAX / 2,
        ) {
            let mut details = Map::new();
            details.insert(detail.clone(), json!({"v": detail, "n": [1, 2.5, null]}));
            let event = NewEvent {
                event_type: event_type.into(),
                actor: actor.into(),
                caller: caller.map(crate::store::Name::from),
                lead_id: lead_id.map(crate::store::Name::from),
                workflow: workflow.map(crate::store::Name::from),
                details: details.into(),
                idempotency_key: key.map(crate::store::Name::from),
            };
            let (_, line) = Record::seal(event, seq, "id".into(), 1_700_000_000_000_000, batch, GENESIS, &keyring());
            let line = &line[..line.len() - 1];
            let head = RecordHead::peek(line).unwrap();
            let read = by_layout(line, &head);
            prop_assert!(read.is_some(), "not read by the layout: {}", String::from_utf8_lossy(line));
            prop_assert_eq!(&read, &IndexFields::parse(line));
            prop_assert_eq!(IndexFields::read(line), read);
        }

        /// Whatever one changed byte does to a line, the layout never reads
        /// other values than a JSON parse that accepts the line.
        #[test]
        fn a_changed_line_is_never_read_otherwise(pos in 0usize..1000, byte in any::<u8>()) {
            let event = NewEvent::for_test(Some("L1".into()), json!({"a": "b\"c"}));
            let (_, line) = Record::seal(event, 3, "id".into(), 5, Some(2), GENESIS, &keyring());
            let mut line = line[..line.len() - 1].to_vec();
            let pos = pos % line.len();
            line[pos] = byte;
            if let (Some(read), Some(parsed)) = (IndexFields::read(&line), IndexFields::parse(&line)) {
                prop_assert_eq!(read, parsed);
            }
        }
    }

    #[test]
    fn string_tokens_end_at_their_unescaped_quote() {
        assert_eq!(string_len(br#""ab"x"#), Some(4));
        assert_eq!(string_len(br#""a\"b"x"#), Some(6));
        assert_eq!(string_len(br#""a\\"x"#), Some(5));
        assert_eq!(string_len(br#""a"#), None);
        assert_eq!(string_len(br#""a\"#), None);
        assert_eq!(string_start(br#"x"ab""#), Some(1));
        assert_eq!(string_start(br#"x"a\"b""#), Some(1));
        assert_eq!(string_start(br#"x"a\\""#), Some(1));
        assert_eq!(string_start(br#"ab""#), None);
    }
}
