//! The JSON side of [`WireDetails`](super::WireDetails): the object's
//! text written from the tree (what a record's line holds), and a JSON
//! text read into the tree (a stored record's details on their way out,
//! and a caller's `details_json`).

use std::ops::Range;

use auditlog_proto::json::NotJson;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{Field, Text, Value};
use crate::wire::DETAILS_TOO_DEEP;

/// Writes an object: keys in byte order, a repeated key's last value.
pub(super) fn write_object(
    bytes: &[u8],
    fields: &mut [Field],
    out: &mut Vec<u8>,
) -> Result<(), NotJson> {
    let key = |f: &Field| &bytes[f.0.clone()];
    if !fields.is_sorted_by(|a, b| key(a) < key(b)) {
        // Stable: of equal keys, the last received stays last.
        fields.sort_by(|a, b| key(a).cmp(key(b)));
    }
    out.push(b'{');
    let mut first = true;
    for i in 0..fields.len() {
        let k = &bytes[fields[i].0.clone()];
        if fields.get(i + 1).is_some_and(|next| key(next) == k) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_string(k, out);
        out.push(b':');
        write_value(bytes, &mut fields[i].1, out)
            .map_err(|e| e.under_key(&String::from_utf8_lossy(k)))?;
    }
    out.push(b'}');
    Ok(())
}

/// Writes one value.
fn write_value(bytes: &[u8], value: &mut Value, out: &mut Vec<u8>) -> Result<(), NotJson> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(*n, out)?,
        Value::String(s) => write_string(&bytes[s.clone()], out),
        Value::Object(fields) => write_object(bytes, fields, out)?,
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter_mut().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(bytes, item, out).map_err(|e| e.under_item(i))?;
            }
            out.push(b']');
        }
    }
    Ok(())
}

/// A number as the JSON path wrote it: within ±2^53 and without a fraction
/// as an integer (`7`, not `7.0`), otherwise as serde_json writes a float.
pub(super) fn write_number(n: f64, out: &mut Vec<u8>) -> Result<(), NotJson> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if !n.is_finite() {
        return Err(NotJson {
            path: String::new(),
            reason: "NaN and infinity cannot be stored as JSON",
        });
    }
    // Writing a number into a Vec cannot fail.
    let _ = if n.fract() == 0.0 && n.abs() <= EXACT {
        serde_json::to_writer(out, &(n as i64))
    } else {
        serde_json::to_writer(out, &n)
    };
    Ok(())
}

/// A string as serde_json escapes it: `"` and `\` with a backslash, the
/// control characters below U+0020 as `\b \t \n \f \r` or `\u00xx`, every
/// other character as it is.
pub(super) fn write_string(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Most strings need no escape: one check over all of it (no early
    // exit, so it vectorises, as the record's own fields are checked) and
    // one copy.
    let plain = s
        .iter()
        .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0a => b'n',
            0x0c => b'f',
            0x0d => b'r',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(&[
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// A JSON value read into the tree (`WireDetails::from_json`).
pub(super) struct JsonSeed<'a> {
    pub(super) text: &'a mut Text,
    /// The levels of objects and lists around the value.
    pub(super) depth: usize,
    /// The most levels allowed.
    pub(super) max_depth: usize,
}

impl Text {
    fn push(&mut self, s: &str) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(s.as_bytes());
        start..self.bytes.len()
    }
}

impl JsonSeed<'_> {
    /// The depth of the object or list this value is; refused past
    /// `max_depth` (for a caller's text [`MAX_DETAILS_DEPTH`], as a
    /// `Struct` nested as deep is).
    fn nested<E: serde::de::Error>(&self) -> Result<usize, E> {
        match self.depth < self.max_depth {
            true => Ok(self.depth + 1),
            false => Err(E::custom(DETAILS_TOO_DEEP)),
        }
    }
}

impl<'de> DeserializeSeed<'de> for JsonSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    // As `StructFromJson` reads them: `Struct` numbers are doubles.
    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n as f64))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n as f64))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Value, E> {
        Ok(Value::Number(n))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(self.text.push(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.nested::<A::Error>()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(JsonSeed {
            text: &mut *self.text,
            depth,
            max_depth: self.max_depth,
        })? {
            items.push(item);
        }
        Ok(Value::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.nested::<A::Error>()?;
        let mut fields = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let key = self.text.push(&key);
            let value = map.next_value_seed(JsonSeed {
                text: &mut *self.text,
                depth,
                max_depth: self.max_depth,
            })?;
            fields.push((key, value));
        }
        Ok(Value::Object(fields))
    }
}
