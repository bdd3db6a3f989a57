//! An event's `details` as the writer carries them: the JSON object's text,
//! exactly the bytes its line holds.
//!
//! The ingest path decodes `details` from the wire straight into this text
//! (`service::details`), the writer copies it into the line, and a live
//! record keeps it as one allocation. Code that needs a field parses the
//! text ([`Details::get`], [`Details::to_map`]): alert rules, performance
//! events, retention markers, which look at few records.

use std::fmt;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A JSON object, as text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Details(String);

impl Details {
    /// `{}`.
    pub fn empty() -> Details {
        Details("{}".to_owned())
    }

    /// The object's text, as serde_json writes it.
    pub fn from_map(map: &Map<String, Value>) -> Details {
        // A map with string keys always serializes.
        Details(serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned()))
    }

    /// Takes `text` as the object's text. The caller vouches that it is
    /// one JSON object with no line break outside a string (what the
    /// service's decoder and serde_json write): the writer puts it into a
    /// line as it is.
    pub(crate) fn from_object_text(text: String) -> Details {
        debug_assert!(serde_json::from_str::<Map<String, Value>>(&text).is_ok());
        Details(text)
    }

    /// The object's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the object has no field.
    pub fn is_empty(&self) -> bool {
        self.to_map().is_empty()
    }

    /// The object, parsed.
    pub fn to_map(&self) -> Map<String, Value> {
        // The text is an object by construction; a text that is not (it
        // cannot be) reads as an empty object rather than a panic.
        serde_json::from_str(&self.0).unwrap_or_default()
    }

    /// The value of field `key`, parsed, if the object has it.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.to_map().remove(key)
    }
}

impl Default for Details {
    fn default() -> Details {
        Details::empty()
    }
}

impl fmt::Debug for Details {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Map<String, Value>> for Details {
    fn from(map: Map<String, Value>) -> Details {
        Details::from_map(&map)
    }
}

impl Serialize for Details {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(S::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Details {
    /// Keeps the object's text as the line holds it, without building the
    /// object; anything but an object is refused.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Details, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        if !raw.get().starts_with('{') {
            return Err(D::Error::custom("details is not a JSON object"));
        }
        Ok(Details(Box::<str>::from(raw).into_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_text_is_kept_as_the_line_holds_it() {
        let line = r#"{"details":{ "b": [1, 2.5], "a": "x\n" },"n":1}"#;
        #[derive(Deserialize)]
        struct Row {
            details: Details,
        }
        let row: Row = serde_json::from_str(line).unwrap();
        assert_eq!(row.details.as_str(), r#"{ "b": [1, 2.5], "a": "x\n" }"#);
        assert_eq!(row.details.get("a"), Some(json!("x\n")));
        assert_eq!(row.details.get("c"), None);
        assert!(!row.details.is_empty());
        let again = serde_json::to_string(&json!({ "d": row.details })).unwrap();
        assert_eq!(again, r#"{"d":{"b":[1,2.5],"a":"x\n"}}"#);
    }

    #[test]
    fn anything_but_an_object_is_refused() {
        for text in ["[1]", "\"x\"", "1", "null"] {
            assert!(serde_json::from_str::<Details>(text).is_err(), "{text}");
        }
        assert!(serde_json::from_str::<Details>("{}").unwrap().is_empty());
    }

    #[test]
    fn a_map_becomes_the_text_serde_json_writes() {
        let Value::Object(map) = json!({"z": 1, "a": {"b": null}}) else {
            unreachable!()
        };
        let details = Details::from(map.clone());
        assert_eq!(details.as_str(), serde_json::to_string(&map).unwrap());
        assert_eq!(details.to_map(), map);
    }
}
