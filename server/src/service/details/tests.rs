//! The decoder against prost's generic decoding of the same bytes, followed
//! by the conversion the server used before (`struct_into_json`, then
//! serde_json): the same text, or the same refusal.

use auditlog_proto::json::{NotJson, struct_into_json};
use proptest::prelude::*;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};

use super::WireDetails;
use crate::wire::{DETAILS_TOO_DEEP, MAX_DETAILS_DEPTH};

/// What the generic path makes of `bytes`, a `Struct`'s encoding: `None` if
/// they do not decode.
fn generic(bytes: &[u8]) -> Option<Result<String, NotJson>> {
    let s = Struct::decode(bytes).ok()?;
    Some(struct_into_json(s).map(|m| serde_json::to_string(&m).unwrap()))
}

/// What the server's decoder makes of the same bytes (the one-pass writer
/// tried first, as for a request's details).
fn ours(bytes: &[u8]) -> Option<Result<String, NotJson>> {
    if let Some(text) = direct(bytes) {
        return Some(Ok(text));
    }
    let d = WireDetails::decode(bytes).ok()?;
    Some(d.into_details().map(|d| d.as_str().to_owned()))
}

/// What the one-pass writer makes of the bytes, if it writes them: the
/// text the tree writes, always (checked by every test through `ours`).
fn direct(bytes: &[u8]) -> Option<String> {
    let text = super::direct::json_of_struct(bytes);
    if let Some(text) = &text {
        let tree =
            WireDetails::decode(bytes).map(|d| d.into_details().map(|d| d.as_str().to_owned()));
        assert_eq!(
            tree.ok(),
            Some(Ok(text.clone())),
            "written straight: {bytes:?}"
        );
    }
    text
}

/// Whether `v` holds only what the one-pass writer takes: a member set, a
/// finite number, non-empty keys, at most `levels` more levels of nesting.
fn plain(v: &Value, levels: usize) -> bool {
    match &v.kind {
        None => false,
        Some(Kind::NumberValue(n)) => n.is_finite(),
        Some(Kind::StructValue(s)) => levels > 0 && plain_fields(s, levels - 1),
        Some(Kind::ListValue(l)) => levels > 0 && l.values.iter().all(|v| plain(v, levels - 1)),
        Some(_) => true,
    }
}

fn plain_fields(s: &Struct, levels: usize) -> bool {
    s.fields
        .iter()
        .all(|(k, v)| !k.is_empty() && plain(v, levels))
}

fn value(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

/// A length-delimited field `tag` holding `payload`.
fn field(tag: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(tag, WireType::LengthDelimited, &mut out);
    encode_varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// A `Struct` map entry, as its own bytes (so entries can be sent in any
/// order, and repeated).
fn entry(key: &str, v: &Value) -> Vec<u8> {
    let mut payload = field(1, key.as_bytes());
    payload.extend(field(2, &v.encode_to_vec()));
    field(1, &payload)
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(value(Kind::NullValue(0))),
        Just(Value { kind: None }),
        any::<bool>().prop_map(|b| value(Kind::BoolValue(b))),
        any::<f64>().prop_map(|n| value(Kind::NumberValue(n))),
        prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(7.0),
            Just(-1200.5),
            Just(9_007_199_254_740_992.0),
            Just(9_007_199_254_740_994.0),
            Just(1e21),
            Just(5e-324),
            Just(f64::NAN),
            Just(f64::INFINITY),
        ]
        .prop_map(|n| value(Kind::NumberValue(n))),
        text().prop_map(|s| value(Kind::StringValue(s))),
    ]
}

/// Strings that stress escaping: quotes, backslashes, every control
/// character, DEL, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{0,8}",
        "[\\x00-\\x1f\"\\\\\\x7f é€😀a-c]{0,12}",
        any::<String>(),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|values| value(Kind::ListValue(ListValue { values }))),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|fields| value(Kind::StructValue(Struct { fields }))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A record's details text, read back into the tree and encoded from
    /// it, is the `Struct` a reader of the text would build.
    #[test]
    fn details_text_encodes_as_the_struct_it_reads_as(
        fields in prop::collection::btree_map(text(), tree(), 0..8),
    ) {
        let bytes = Struct { fields }.encode_to_vec();
        if let Some(Ok(text)) = ours(&bytes) {
            let tree = WireDetails::from_json(&text).unwrap();
            let direct = tree.encode_to_vec();
            prop_assert_eq!(direct.len(), tree.encoded_len());
            let read: auditlog_proto::json::StructFromJson = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(Struct::decode(direct.as_slice()).unwrap(), read.0);
        }
    }

    #[test]
    fn a_struct_becomes_the_text_the_generic_path_wrote(
        fields in prop::collection::btree_map(text(), tree(), 0..8),
    ) {
        let bytes = Struct { fields }.encode_to_vec();
        let expected = generic(&bytes);
        prop_assert!(expected.is_some());
        prop_assert_eq!(ours(&bytes), expected);
    }

    /// A map as prost and most encoders write it (keys in order, each
    /// value one member) is written in one pass, unless it holds what only
    /// the tree reads (a number JSON cannot hold, an empty key, a value
    /// with no member).
    #[test]
    fn a_struct_in_the_common_shape_is_written_in_one_pass(
        fields in prop::collection::btree_map(text(), tree(), 0..8),
    ) {
        let s = Struct { fields };
        let bytes = s.encode_to_vec();
        prop_assert_eq!(direct(&bytes).is_some(), plain_fields(&s, 8));
    }

    /// Other languages' clients send map entries in any order; a repeated
    /// key keeps its last value, whatever came between.
    #[test]
    fn entries_in_any_order_and_repeated_keys_read_as_protobuf_says(
        entries in prop::collection::vec(("[a-d]{0,2}", tree()), 0..10),
    ) {
        let bytes: Vec<u8> = entries.iter().flat_map(|(k, v)| entry(k, v)).collect();
        prop_assert_eq!(ours(&bytes), generic(&bytes));
    }

    /// Damaged or hostile bytes: both decodings refuse them, or both
    /// accept them with the same text.
    #[test]
    fn any_bytes_decode_alike(
        fields in prop::collection::btree_map(text(), tree(), 0..4),
        cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = Struct { fields }.encode_to_vec();
        for (at, b) in cuts {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
        }
        prop_assert_eq!(ours(&bytes), generic(&bytes));
        let cut = bytes.len() / 2;
        prop_assert_eq!(ours(&bytes[..cut]), generic(&bytes[..cut]));
    }
}

#[test]
fn only_an_object_reads_from_json() {
    for text in ["[]", "1", "\"x\"", "null", "{", "{} x", ""] {
        assert!(WireDetails::from_json(text).is_none(), "{text}");
    }
    assert!(WireDetails::from_json(" {} ").is_some());
}

#[test]
fn merges_follow_protobuf() {
    let s = |k: &str, v: Value| Struct {
        fields: [(k.to_owned(), v)].into(),
    };
    // A value's members: the last one wins, and a repeated struct member
    // merges into the one before it.
    let mut v = value(Kind::StringValue("first".into())).encode_to_vec();
    v.extend(value(Kind::StructValue(s("a", value(Kind::BoolValue(true))))).encode_to_vec());
    v.extend(value(Kind::StructValue(s("b", value(Kind::NumberValue(2.0))))).encode_to_vec());
    let mut entry_bytes = field(1, b"k");
    entry_bytes.extend(field(2, &v));
    let mut bytes = field(1, &entry_bytes);
    // A repeated list member appends.
    let list = |n: f64| {
        value(Kind::ListValue(ListValue {
            values: vec![value(Kind::NumberValue(n))],
        }))
        .encode_to_vec()
    };
    let mut l = list(1.0);
    l.extend(list(2.5));
    let mut entry_bytes = field(1, b"l");
    entry_bytes.extend(field(2, &l));
    bytes.extend(field(1, &entry_bytes));
    assert_eq!(
        ours(&bytes),
        Some(Ok(r#"{"k":{"a":true,"b":2},"l":[1,2.5]}"#.to_owned()))
    );
    assert_eq!(ours(&bytes), generic(&bytes));
}

#[test]
fn a_refusal_names_the_first_bad_number_in_key_order() {
    let bad = value(Kind::NumberValue(f64::NAN));
    let nested = value(Kind::ListValue(ListValue {
        values: vec![value(Kind::NullValue(0)), bad.clone()],
    }));
    let mut bytes = entry("z", &bad);
    bytes.extend(entry(
        "a",
        &value(Kind::StructValue(Struct {
            fields: [("b".to_owned(), nested)].into(),
        })),
    ));
    let refused = ours(&bytes).unwrap().unwrap_err();
    assert_eq!(refused.path, "a.b[1]");
    assert_eq!(ours(&bytes), generic(&bytes));
    // A later value for the same key replaces the bad one.
    bytes.extend(entry("a", &value(Kind::NullValue(0))));
    bytes.extend(entry("z", &value(Kind::BoolValue(false))));
    assert_eq!(ours(&bytes), Some(Ok(r#"{"a":null,"z":false}"#.to_owned())));
}

/// The encoding of details `depth` levels deep, the top one an object and
/// level `l` (from 2) a list where `list_at(l)`, the deepest holding `leaf`:
/// `{"a":[{"a":[null]}]}` is 4.
fn nested(depth: usize, list_at: impl Fn(usize) -> bool, leaf: Value) -> Vec<u8> {
    let mut v = leaf;
    for level in (2..=depth).rev() {
        v = if list_at(level) {
            value(Kind::ListValue(ListValue { values: vec![v] }))
        } else {
            value(Kind::StructValue(Struct {
                fields: [("a".to_owned(), v)].into(),
            }))
        };
    }
    Struct {
        fields: [("a".to_owned(), v)].into(),
    }
    .encode_to_vec()
}

/// Objects deeper than the limit are refused as prost refuses them.
#[test]
fn deep_objects_are_refused_as_prost_refuses_them() {
    for depth in [30, 33, 34, 40, 60, 120] {
        let bytes = nested(depth, |_| false, value(Kind::NullValue(0)));
        assert_eq!(
            ours(&bytes).is_some(),
            depth <= MAX_DETAILS_DEPTH,
            "{depth}"
        );
        assert_eq!(ours(&bytes), generic(&bytes), "{depth}");
    }
}

/// Lists are levels like objects, alone or mixed with objects: 33 are
/// decoded, the 34th is refused by name (prost alone would take lists to
/// 49 levels, each costing two messages where an object costs three).
#[test]
fn lists_and_objects_nest_to_the_same_depth() {
    /// A shape of nesting: its name, and which levels are lists.
    type Shape = (&'static str, fn(usize) -> bool);
    const SHAPES: [Shape; 4] = [
        ("objects", |_| false),
        ("lists", |_| true),
        ("lists in objects", |level| level % 2 == 0),
        ("objects in lists", |level| level % 2 == 1),
    ];
    let leaf = || value(Kind::NumberValue(1.0));
    for (shape, list_at) in SHAPES {
        let deepest = nested(MAX_DETAILS_DEPTH, list_at, leaf());
        assert_eq!(ours(&deepest), generic(&deepest), "{shape}");
        assert!(matches!(ours(&deepest), Some(Ok(_))), "{shape}");
        for depth in [MAX_DETAILS_DEPTH + 1, 49, 50, 120] {
            let deeper = nested(depth, list_at, leaf());
            let refused = WireDetails::decode(deeper.as_slice()).unwrap_err();
            assert!(
                refused.to_string().ends_with(DETAILS_TOO_DEEP),
                "{shape} {depth}: {refused}"
            );
        }
        // An empty object or list is a level too.
        for empty in [
            value(Kind::ListValue(ListValue::default())),
            value(Kind::StructValue(Struct::default())),
        ] {
            let at_the_limit = nested(MAX_DETAILS_DEPTH - 1, list_at, empty.clone());
            assert!(matches!(ours(&at_the_limit), Some(Ok(_))), "{shape}");
            let past = nested(MAX_DETAILS_DEPTH, list_at, empty);
            assert_eq!(ours(&past), None, "{shape}");
        }
    }
    // A repeated list member merges into the one before at the same level.
    let mut v = value(Kind::ListValue(ListValue::default())).encode_to_vec();
    v.extend(v.clone());
    let mut entry_bytes = field(1, b"a");
    entry_bytes.extend(field(2, &v));
    assert_eq!(
        ours(&field(1, &entry_bytes)),
        Some(Ok(r#"{"a":[]}"#.to_owned()))
    );
}

#[test]
fn strings_that_are_not_utf8_do_not_decode() {
    let mut payload = field(1, b"k");
    payload.extend(field(2, &field(3, b"\xff\xfe")));
    let bytes = field(1, &payload);
    assert_eq!(ours(&bytes), None);
    assert_eq!(generic(&bytes), None);
    let bytes = field(1, &field(1, b"\xc3"));
    assert_eq!(ours(&bytes), None);
}

#[test]
fn the_struct_given_back_holds_what_was_decoded() {
    let s = Struct {
        fields: [
            ("n".to_owned(), value(Kind::NumberValue(f64::NAN))),
            (
                "l".to_owned(),
                value(Kind::ListValue(ListValue {
                    values: vec![value(Kind::StringValue("x\n".into()))],
                })),
            ),
        ]
        .into(),
    };
    let back = WireDetails::decode(s.encode_to_vec().as_slice())
        .unwrap()
        .to_struct();
    // NaN is not equal to itself: compare the encodings.
    assert_eq!(back.encode_to_vec(), s.encode_to_vec());
}

/// A `Struct`'s map entry marked with another wire type than
/// length-delimited is refused, by prost's generated map fields (since
/// prost 0.14.6; before, they read it whatever its mark) and by the
/// server's decoder alike: the same bytes never get two answers.
#[test]
fn a_map_entry_marked_with_another_wire_type_is_refused_as_prost_refuses_it() {
    let good = entry("k", &value(Kind::StringValue("v".into())));
    assert_eq!(good[0], 0x0a, "field 1, length-delimited");
    let expected = Some(Ok(r#"{"k":"v"}"#.to_owned()));
    assert_eq!((generic(&good), ours(&good)), (expected.clone(), expected));
    for key in [0x08, 0x0d, 0x09] {
        let mut bytes = good.clone();
        bytes[0] = key;
        assert_eq!(generic(&bytes), None, "{key:#x}");
        assert_eq!(ours(&bytes), None, "{key:#x}");
    }
}
