//! A record's strings held inline: [`Short`] for the ones the writer gives
//! it (its id, key id, `prev` and signature), [`Name`] for the ones the
//! caller gave (event type, actor, caller, lead, workflow, idempotency key).
//!
//! The writer allocated four strings for every record it signed and two more
//! for its receipt, each freed later on another thread (the syncer, the
//! service's workers): glibc's allocator was a fifth of the writer's CPU
//! (issue 20). A UUID is 36 bytes and a MAC in hex 64, so these fit in 64
//! bytes inline; a longer one (a long configured key id, a damaged line read
//! back) goes to the heap and reads the same. The caller's strings are
//! mostly shorter than 24 bytes and there are six of them: [`Name`] keeps
//! them in a `String`'s 24 bytes.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallstr::SmallString;

/// A record's names: its event type, actor, caller, lead, workflow and
/// idempotency key, as the caller gave them. Up to 24 bytes inline, in the
/// 24 bytes a `String` takes (most are shorter: `crm_update`,
/// `LEAD-00123`), longer on the heap. Decoded straight from the request
/// (`service/event_input.rs`), so a typical event's names cost no
/// allocation; a `Short` (80 bytes) each made records larger and the
/// batch path slower (2026-12-07).
pub(crate) type Name = compact_str::CompactString;

/// Up to 64 bytes of text inline, longer on the heap.
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Short(SmallString<[u8; 64]>);

impl Short {
    /// The empty string.
    pub fn new() -> Short {
        Short(SmallString::new())
    }

    /// The text as a `String` (one copy).
    pub fn into_string(self) -> String {
        // `SmallString::into_string` collects an inline string byte by byte.
        self.as_str().to_owned()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Short {
    fn default() -> Short {
        Short::new()
    }
}

impl Clone for Short {
    fn clone(&self) -> Short {
        // One copy of the bytes: `SmallVec`'s own `clone` goes through an
        // iterator, a byte at a time.
        Short(SmallString::from_str(self))
    }
}

impl Deref for Short {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Short {
    fn as_ref(&self) -> &str {
        self
    }
}

impl From<&str> for Short {
    fn from(s: &str) -> Short {
        Short(SmallString::from_str(s))
    }
}

impl From<String> for Short {
    fn from(s: String) -> Short {
        Short::from(s.as_str())
    }
}

impl fmt::Debug for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl PartialEq<str> for Short {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Short {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Short {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl<'de> Deserialize<'de> for Short {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Short, D::Error> {
        SmallString::deserialize(deserializer).map(Short)
    }
}

impl Serialize for Short {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_text_read_back_as_given() {
        for text in ["", "k1", &"f".repeat(64), &"é".repeat(40), &"x".repeat(300)] {
            let short = Short::from(text);
            assert_eq!(short, text);
            assert_eq!(short.clone(), short);
            assert_eq!(short.clone().into_string(), text);
            let json = serde_json::to_string(text).unwrap();
            assert_eq!(serde_json::from_str::<Short>(&json).unwrap(), text);
        }
        // Escaped in JSON, unescaped in the string.
        assert_eq!(
            serde_json::from_str::<Short>(r#""a\"b\u00e9""#).unwrap(),
            "a\"bé"
        );
    }
}
