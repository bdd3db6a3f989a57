//! The auditlog gRPC API, `auditlog.v1`, generated at build time from
//! `proto/auditlog/v1/audit.proto`, the one source of truth for every
//! language. Nothing generated is committed.
//!
//! The proto's comments are the API reference; they are carried over into the
//! doc comments of the generated types.

/// The generated messages, client and server of package `auditlog.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("auditlog.v1");
}

/// The encoded `FileDescriptorSet` of the API (with its imports), for gRPC
/// server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/auditlog_descriptor.bin"));

/// Conversions between `google.protobuf.Struct` (how `details` travels) and
/// JSON (how it is stored and how Rust callers build it).
pub mod json {
    use std::collections::BTreeMap;
    use std::fmt;

    use prost_types::value::Kind;
    use prost_types::{ListValue, Struct, Value};
    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value as Json};

    /// Why a `Struct` cannot be represented as JSON.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct NotJson {
        /// Where in the struct, as a dotted path (`a.b[2]`).
        pub path: String,
        /// What is wrong there.
        pub reason: &'static str,
    }

    /// Converts a protobuf `Struct` to a JSON object. A number without a
    /// fractional part within ±2^53 becomes a JSON integer, so `7` stays `7`
    /// on disk rather than `7.0`. NaN and infinities have no JSON form and are
    /// rejected.
    pub fn struct_to_json(s: &Struct) -> Result<Map<String, Json>, NotJson> {
        struct_into_json(s.clone())
    }

    /// [`struct_to_json`] taking the `Struct`: its keys and strings move into
    /// the JSON object instead of being copied (the server's ingest path).
    pub fn struct_into_json(s: Struct) -> Result<Map<String, Json>, NotJson> {
        let mut map = Map::with_capacity(s.fields.len());
        for (k, v) in s.fields {
            match value_into_json(v) {
                Ok(v) => {
                    map.insert(k, v);
                }
                Err(e) => return Err(e.under_key(&k)),
            }
        }
        Ok(map)
    }

    impl NotJson {
        /// This error, found in the value under `key` of an object.
        pub fn under_key(mut self, key: &str) -> NotJson {
            self.path = match self.path.chars().next() {
                None => key.to_owned(),
                Some('[') => format!("{key}{}", self.path),
                Some(_) => format!("{key}.{}", self.path),
            };
            self
        }

        /// This error, found in item `i` of a list.
        pub fn under_item(mut self, i: usize) -> NotJson {
            self.path = match self.path.chars().next() {
                None | Some('[') => format!("[{i}]{}", self.path),
                Some(_) => format!("[{i}].{}", self.path),
            };
            self
        }
    }

    /// The path of an error is built on the way out, so a valid value (the
    /// common case) costs no path strings.
    fn value_into_json(v: Value) -> Result<Json, NotJson> {
        Ok(match v.kind {
            None | Some(Kind::NullValue(_)) => Json::Null,
            Some(Kind::BoolValue(b)) => Json::Bool(b),
            Some(Kind::StringValue(s)) => Json::String(s),
            Some(Kind::NumberValue(n)) => {
                const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
                if !n.is_finite() {
                    return Err(NotJson {
                        path: String::new(),
                        reason: "NaN and infinity cannot be stored as JSON",
                    });
                }
                if n.fract() == 0.0 && n.abs() <= EXACT {
                    Json::Number(Number::from(n as i64))
                } else {
                    Number::from_f64(n).map_or(Json::Null, Json::Number)
                }
            }
            Some(Kind::StructValue(s)) => Json::Object(struct_into_json(s)?),
            Some(Kind::ListValue(l)) => Json::Array(
                l.values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| value_into_json(v).map_err(|e| e.under_item(i)))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// Converts a JSON object to a protobuf `Struct`. Numbers become doubles,
    /// as `Struct` has no integer type: integers beyond ±2^53 lose precision,
    /// so send such ids as strings.
    pub fn json_to_struct(map: &Map<String, Json>) -> Struct {
        Struct {
            fields: map
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        }
    }

    /// Converts any JSON value to a protobuf `Value`.
    pub fn json_to_value(v: &Json) -> Value {
        let kind = match v {
            Json::Null => Kind::NullValue(0),
            Json::Bool(b) => Kind::BoolValue(*b),
            Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
            Json::String(s) => Kind::StringValue(s.clone()),
            Json::Array(a) => Kind::ListValue(ListValue {
                values: a.iter().map(json_to_value).collect(),
            }),
            Json::Object(m) => Kind::StructValue(json_to_struct(m)),
        };
        Value { kind: Some(kind) }
    }

    /// A JSON object read straight into a protobuf `Struct`, with no JSON
    /// tree in between: the same result as [`json_to_struct`] on the parsed
    /// object, for a fraction of the allocations. Anything but an object is
    /// an error.
    #[derive(Debug, Clone, PartialEq)]
    pub struct StructFromJson(pub Struct);

    impl<'de> serde::Deserialize<'de> for StructFromJson {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            match d.deserialize_map(ValueVisitor)?.kind {
                Some(Kind::StructValue(s)) => Ok(StructFromJson(s)),
                _ => Err(de::Error::custom("expected a JSON object")),
            }
        }
    }

    struct ValueVisitor;

    fn value(kind: Kind) -> Value {
        Value { kind: Some(kind) }
    }

    impl<'de> Visitor<'de> for ValueVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
            Ok(value(Kind::BoolValue(b)))
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
            Ok(value(Kind::NumberValue(n as f64)))
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
            Ok(value(Kind::NumberValue(n as f64)))
        }

        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
            Ok(value(Kind::NumberValue(n)))
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
            Ok(value(Kind::StringValue(s.to_owned())))
        }

        fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
            Ok(value(Kind::StringValue(s)))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
            Ok(value(Kind::NullValue(0)))
        }

        fn visit_none<E: de::Error>(self) -> Result<Value, E> {
            self.visit_unit()
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(v) = seq.next_element_seed(ValueSeed)? {
                values.push(v);
            }
            Ok(value(Kind::ListValue(ListValue { values })))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut fields = BTreeMap::new();
            while let Some(k) = map.next_key::<String>()? {
                let v = map.next_value_seed(ValueSeed)?;
                fields.insert(k, v);
            }
            Ok(value(Kind::StructValue(Struct { fields })))
        }
    }

    struct ValueSeed;

    impl<'de> DeserializeSeed<'de> for ValueSeed {
        type Value = Value;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(ValueVisitor)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn struct_from_json_is_json_to_struct() {
            let text = r#"{"n": 7, "big": 18446744073709551615, "neg": -3, "f": 0.1,
                "s": "x\n\u00e9", "t": true, "z": null, "dup": 1, "dup": 2,
                "l": [null, false, {"d": -3.5, "e": []}, [1, [2]]], "o": {}}"#;
            let parsed: Map<String, Json> = serde_json::from_str(text).unwrap();
            let direct: StructFromJson = serde_json::from_str(text).unwrap();
            assert_eq!(direct.0, json_to_struct(&parsed));
        }

        #[test]
        fn struct_from_json_wants_an_object() {
            for text in ["[1]", "\"x\"", "3", "null"] {
                assert!(
                    serde_json::from_str::<StructFromJson>(text).is_err(),
                    "{text}"
                );
            }
        }

        #[test]
        fn round_trip_keeps_integers_integers() {
            let Json::Object(map) =
                serde_json::json!({"n": 7, "f": 1.5, "s": "x", "l": [null, true, {"d": -3}]})
            else {
                unreachable!()
            };
            let back = struct_to_json(&json_to_struct(&map)).unwrap();
            assert_eq!(back, map);
            assert_eq!(
                serde_json::to_string(&back).unwrap(),
                r#"{"f":1.5,"l":[null,true,{"d":-3}],"n":7,"s":"x"}"#
            );
        }

        #[test]
        fn non_finite_numbers_are_rejected_with_their_path() {
            let mut inner = Struct::default();
            inner.fields.insert(
                "x".into(),
                Value {
                    kind: Some(Kind::NumberValue(f64::NAN)),
                },
            );
            let mut outer = Struct::default();
            outer.fields.insert(
                "a".into(),
                Value {
                    kind: Some(Kind::StructValue(inner)),
                },
            );
            assert_eq!(struct_to_json(&outer).unwrap_err().path, "a.x");
        }

        #[test]
        fn error_paths_name_keys_and_list_items() {
            let nan = || Value {
                kind: Some(Kind::NumberValue(f64::INFINITY)),
            };
            let list = |values| Value {
                kind: Some(Kind::ListValue(ListValue { values })),
            };
            let object = |key: &str, v| Value {
                kind: Some(Kind::StructValue(Struct {
                    fields: [(key.to_owned(), v)].into(),
                })),
            };
            let at = |v| {
                let s = Struct {
                    fields: [("top".to_owned(), v)].into(),
                };
                struct_into_json(s).unwrap_err().path
            };
            assert_eq!(at(nan()), "top");
            assert_eq!(at(list(vec![Value::default(), nan()])), "top[1]");
            assert_eq!(at(list(vec![list(vec![nan()])])), "top[0][0]");
            assert_eq!(at(list(vec![object("x", nan())])), "top[0].x");
            assert_eq!(at(object("x", list(vec![nan()]))), "top.x[0]");
        }
    }
}

/// How the tools print a verification report (`auditlog --json integrity`,
/// `auditlog-server --verify --json`): one JSON shape for both.
mod report {
    use serde_json::{Value, json};

    use crate::v1::{ProblemKind, VerifyIntegrityResponse};

    impl ProblemKind {
        /// The kind's name without its `PROBLEM_KIND_` prefix
        /// (`BAD_SIGNATURE`); `UNKNOWN` for a value this build does not know.
        pub fn short_name(kind: i32) -> &'static str {
            ProblemKind::try_from(kind).map_or("UNKNOWN", |k| {
                k.as_str_name()
                    .strip_prefix("PROBLEM_KIND_")
                    .unwrap_or("UNSPECIFIED")
            })
        }
    }

    impl VerifyIntegrityResponse {
        /// The report as text, a line each: for a clean report what was
        /// verified, how fast, and the head it ends at (an empty log has
        /// none to name); otherwise how many problems, then one line per
        /// problem (its kind, seq, line and message, which names the file).
        pub fn text_lines(&self) -> Vec<String> {
            if self.ok {
                let rate = if self.events_checked > 0 && self.events_per_second.is_finite() {
                    format!(" ({:.0} events/s)", self.events_per_second)
                } else {
                    String::new()
                };
                let head = match (self.head_seq, self.head_signature.as_str()) {
                    (0, "") => "head seq 0 (empty log)".to_owned(),
                    (seq, "") => format!("head seq {seq}"),
                    (seq, signature) => format!("head seq {seq} signature {signature}"),
                };
                return vec![format!(
                    "OK: {} events in {} segment file(s) verified in {} ms{rate}; {head}",
                    self.events_checked, self.segments_checked, self.elapsed_ms,
                )];
            }
            let mut lines = vec![format!(
                "FAILED: {} problem(s) in {} events checked",
                self.problems.len(),
                self.events_checked
            )];
            lines.extend(self.problems.iter().map(|p| {
                format!(
                    "  {:<20} seq {:<8} line {:<8} {}",
                    ProblemKind::short_name(p.kind),
                    p.seq,
                    p.line,
                    p.message
                )
            }));
            lines
        }

        /// The report as one JSON object: its fields, each problem's kind by
        /// [`ProblemKind::short_name`].
        pub fn to_json(&self) -> Value {
            json!({
                "ok": self.ok,
                "events_checked": self.events_checked,
                "head_seq": self.head_seq,
                "head_signature": self.head_signature,
                "elapsed_ms": self.elapsed_ms,
                "events_per_second": self.events_per_second,
                "segments_checked": self.segments_checked,
                "problems": self.problems.iter().map(|p| json!({
                    "kind": ProblemKind::short_name(p.kind),
                    "seq": p.seq,
                    "line": p.line,
                    "file": p.file,
                    "message": p.message,
                })).collect::<Vec<_>>(),
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_clean_report_names_its_head_or_says_the_log_is_empty() {
            let mut report = VerifyIntegrityResponse {
                ok: true,
                events_checked: 5,
                segments_checked: 1,
                elapsed_ms: 2,
                events_per_second: 2500.0,
                head_seq: 5,
                head_signature: "ab12".into(),
                ..Default::default()
            };
            assert_eq!(
                report.text_lines(),
                [
                    "OK: 5 events in 1 segment file(s) verified in 2 ms (2500 events/s); head seq 5 \
                  signature ab12"
                ]
            );
            report.events_checked = 0;
            report.events_per_second = f64::NAN;
            report.head_seq = 0;
            report.head_signature.clear();
            assert_eq!(
                report.text_lines(),
                ["OK: 0 events in 1 segment file(s) verified in 2 ms; head seq 0 (empty log)"]
            );
        }
    }
}
