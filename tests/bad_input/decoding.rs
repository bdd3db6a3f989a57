//! Requests that do not decode (not UTF-8, truncated, no message at all)
//! and details that nest deeper than the documented depth, as objects or
//! lists.

use std::collections::BTreeMap;

use prost_types::{ListValue, Struct, Value, value::Kind};
use tonic::Code;

use crate::bad_input::raw::{log_request, refused, send_raw};
use crate::common::TestServer;

/// `details` nesting `depth` objects: `{"k":{"k":...{"k":1}}}`.
fn nested(depth: usize) -> Struct {
    nested_as(depth, |_| false)
}

/// `details` nesting `depth` levels, the top one an object and level `l`
/// (from 2) a list where `list_at(l)`: `{"k":[{"k":[1]}]}` is 4.
fn nested_as(depth: usize, list_at: impl Fn(usize) -> bool) -> Struct {
    let mut value = Value {
        kind: Some(Kind::NumberValue(1.0)),
    };
    for level in (2..=depth).rev() {
        let kind = if list_at(level) {
            Kind::ListValue(ListValue {
                values: vec![value],
            })
        } else {
            Kind::StructValue(Struct {
                fields: BTreeMap::from([("k".to_owned(), value)]),
            })
        };
        value = Value { kind: Some(kind) };
    }
    Struct {
        fields: BTreeMap::from([("k".to_owned(), value)]),
    }
}

#[tokio::test]
async fn requests_that_do_not_decode_are_invalid_arguments_that_say_why() {
    let server = TestServer::start().await;

    // A string that is not UTF-8: encode a valid request, then swap the
    // actor's bytes for invalid ones of the same length.
    let mut bytes = log_request("ZZZZ", None);
    let at = bytes.windows(4).position(|w| w == b"ZZZZ").unwrap();
    bytes[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xc0, 0x80]);
    let status = refused("non-UTF-8 actor", send_raw(&server, "Log", bytes).await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("EventInput.actor") && status.message().contains("UTF-8"),
        "{status:?}"
    );

    // A truncated message.
    let mut bytes = log_request("crm-sync", None);
    bytes.truncate(bytes.len() - 3);
    let status = refused("truncated", send_raw(&server, "Log", bytes).await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("not a valid protobuf message"),
        "{status:?}"
    );

    // Bytes that are no message at all, on a streaming method too.
    let status = refused(
        "garbage",
        send_raw(&server, "GetStats", vec![0xff; 16]).await,
    );
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // The server still serves.
    server.client().await.stats(None).await.unwrap();
}

#[tokio::test]
async fn details_nest_to_the_documented_depth_and_deeper_is_refused_by_name() {
    const DEPTH: usize = 33; // docs/limits.md
    let server = TestServer::start().await;
    let deepest = log_request("a", Some(nested(DEPTH)));
    send_raw(&server, "Log", deepest).await.unwrap();
    let status = refused(
        "one level deeper",
        send_raw(&server, "Log", log_request("a", Some(nested(DEPTH + 1)))).await,
    );
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("details may nest at most 33 levels"),
        "{status:?}"
    );
    assert!(status.message().len() < 400, "{status:?}");
}

/// A list is a level like an object (docs/limits.md): lists alone, or mixed
/// with objects, nest 33 levels and are refused at the 34th as objects are,
/// though protobuf's own limit would let lists alone reach 49.
#[tokio::test]
async fn lists_count_toward_the_depth_as_objects_do() {
    const DEPTH: usize = 33; // docs/limits.md
    let server = TestServer::start().await;
    /// A shape of nesting: its name, and which levels are lists.
    type Shape = (&'static str, fn(usize) -> bool);
    const SHAPES: [Shape; 3] = [
        ("lists", |_| true),
        ("lists in objects", |level| level % 2 == 0),
        ("objects in lists", |level| level % 2 == 1),
    ];
    for (shape, list_at) in SHAPES {
        let deepest = log_request("a", Some(nested_as(DEPTH, list_at)));
        send_raw(&server, "Log", deepest).await.unwrap();
        let deeper = log_request("a", Some(nested_as(DEPTH + 1, list_at)));
        let status = refused(shape, send_raw(&server, "Log", deeper).await);
        assert_eq!(status.code(), Code::InvalidArgument, "{shape}: {status:?}");
        assert!(
            status
                .message()
                .contains("details may nest at most 33 levels"),
            "{shape}: {status:?}"
        );
        assert!(status.message().len() < 400, "{shape}: {status:?}");
    }
    // Far deeper than protobuf's limit: the same refusal.
    let deepest = log_request("a", Some(nested_as(120, |_| true)));
    let status = refused("120 lists", send_raw(&server, "Log", deepest).await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("at most 33 levels"), "{status:?}");
}
