//! The targets of the request floor: what callers send, checked by the
//! service before anything reaches the store.

use auditlog_proto::v1 as pb;
use prost::Message as _;
use tonic::Code;

use super::sample::keyring;
use crate::service::WireDetails;
use crate::service::{self, MAX_BATCH, MAX_DETAILS_BYTES, MAX_QUERY_LIMIT, PageToken, api};
use crate::store::Order;
use crate::store::record::{GENESIS, MacCheck, NewEvent, Record, RecordHead};
use crate::wire::{DETAILS_TOO_DEEP, MAX_DETAILS_DEPTH};

/// `page_token`: a Query `page_token` as a caller may send it.
///
/// Properties: decoding never panics, and a token that decodes is one the
/// server issues: encoding what it holds gives it back byte for byte.
pub fn page_token(data: &[u8]) {
    let token = String::from_utf8_lossy(data);
    let fingerprint = PageToken::fingerprint(&Default::default(), Order::NewestFirst);
    let _ = PageToken::decode(&token, fingerprint);
    if let Some((seq, fp)) = PageToken::parse(&token) {
        assert_eq!(
            PageToken::encode(seq, fp),
            token,
            "a token the server never issues is accepted"
        );
        assert_eq!(PageToken::decode(&token, fp).ok(), Some(seq));
    }
}

/// The server's own decoding of events (`details` straight into JSON
/// text) against prost's generic one: both decode or neither does, and each
/// event's details are the text the generic path wrote (the JSON object
/// `struct_into_json` gives, serialized), or refused at the same path.
fn same_decoding<E: std::fmt::Debug>(
    ours: Result<Vec<&api::EventInput>, &E>,
    generic: Result<Vec<&pb::EventInput>, &prost::DecodeError>,
) {
    let (ours, generic) = match (ours, generic) {
        (Ok(ours), Ok(generic)) => (ours, generic),
        (Err(_), Err(_)) => return,
        // Ours refuses details past MAX_DETAILS_DEPTH levels of objects and
        // lists; prost's recursion limit counts messages, and lets lists
        // through deeper (a list level is two messages, an object three).
        (Err(e), Ok(generic))
            if format!("{e:?}").contains(DETAILS_TOO_DEEP)
                && generic.iter().any(|g| {
                    g.details
                        .as_ref()
                        .is_some_and(|d| struct_depth(d) > MAX_DETAILS_DEPTH)
                }) =>
        {
            return;
        }
        (ours, generic) => panic!("the decodings disagree: ours {ours:?}, prost's {generic:?}"),
    };
    assert_eq!(ours.len(), generic.len());
    for (o, g) in ours.into_iter().zip(generic) {
        assert_eq!(
            (
                o.event_type.as_str(),
                o.actor.as_str(),
                o.lead_id.as_str(),
                o.workflow.as_str(),
                o.idempotency_key.as_str(),
                o.details_json.as_str()
            ),
            (
                g.event_type.as_str(),
                g.actor.as_str(),
                g.lead_id.as_str(),
                g.workflow.as_str(),
                g.idempotency_key.as_str(),
                g.details_json.as_str()
            )
        );
        same_json_text(&o.details_json);
        let text = o
            .details
            .clone()
            .map(|d| d.into_details().map(|d| d.as_str().to_owned()));
        let expected = g.details.clone().map(|s| {
            auditlog_proto::json::struct_into_json(s)
                .map(|m| serde_json::to_string(&m).unwrap_or_default())
        });
        assert_eq!(text, expected, "the details' JSON differs");
    }
}

/// Details sent as JSON text write what the same object sent as a `Struct`
/// writes (serde_json's reading of the text, made a `Struct` the generic
/// way), or are refused; ours refuses more only past MAX_DETAILS_DEPTH
/// levels (serde_json's own limit is 128).
fn same_json_text(json: &str) {
    if json.is_empty() {
        return;
    }
    let ours = WireDetails::of_json_text(json)
        .map_err(|e| e.contains(DETAILS_TOO_DEEP))
        .map(|w| w.into_details().map(|d| d.as_str().to_owned()).ok());
    let generic = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json)
        .ok()
        .and_then(|m| {
            auditlog_proto::json::struct_into_json(auditlog_proto::json::json_to_struct(&m)).ok()
        })
        .map(|m| serde_json::to_string(&m).unwrap_or_default());
    match ours {
        Ok(text) => assert_eq!(text, generic, "details_json {json:?}"),
        Err(too_deep) => assert!(too_deep || generic.is_none(), "refused: {json:?}"),
    }
}

/// How many levels of objects and lists `s` nests (itself the first).
fn struct_depth(s: &prost_types::Struct) -> usize {
    fn value_depth(v: &prost_types::Value) -> usize {
        use prost_types::value::Kind;
        match &v.kind {
            Some(Kind::StructValue(s)) => struct_depth(s),
            Some(Kind::ListValue(l)) => 1 + l.values.iter().map(value_depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    1 + s.fields.values().map(value_depth).max().unwrap_or(0)
}

/// `validation`: a request decoded from the bytes after the first, which
/// chooses its kind (Log, LogBatch or Query), through the handler's checks.
///
/// Properties: a rejection is INVALID_ARGUMENT with at least one field
/// violation; an accepted event keeps the documented limits, and written as
/// a record it reads back as it went in, with a valid MAC; an accepted query
/// has a limit of 1 to 1000 and a time range that is not empty.
pub fn validation(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            let ours = api::LogRequest::decode(bytes);
            let generic = pb::LogRequest::decode(bytes);
            same_decoding(
                ours.as_ref().map(|r| r.event.iter().collect()),
                generic.as_ref().map(|r| r.event.iter().collect()),
            );
            let Ok(req) = ours else {
                return;
            };
            match service::validate_log(req, None) {
                Ok(event) => accepted_event(event),
                Err(status) => rejected(&status),
            }
        }
        1 => {
            let ours = api::LogBatchRequest::decode(bytes);
            let generic = pb::LogBatchRequest::decode(bytes);
            same_decoding(
                ours.as_ref().map(|r| r.events.iter().collect()),
                generic.as_ref().map(|r| r.events.iter().collect()),
            );
            let Ok(req) = ours else {
                return;
            };
            match service::validate_batch(req.events, None) {
                Ok(events) => {
                    assert!((1..=MAX_BATCH).contains(&events.len()));
                    events.into_iter().for_each(accepted_event);
                }
                Err(status) => rejected(&status),
            }
        }
        _ => {
            let Ok(req) = pb::QueryRequest::decode(bytes) else {
                return;
            };
            match service::plan_query(req, Ok) {
                Ok(plan) => {
                    assert!((1..=MAX_QUERY_LIMIT as usize).contains(&plan.limit));
                    if let (Some(since), Some(until)) = (plan.filter.since, plan.filter.until) {
                        assert!(since < until, "an empty time range was accepted");
                    }
                }
                Err(status) => rejected(&status),
            }
        }
    }
}

fn rejected(status: &tonic::Status) {
    use tonic_types::StatusExt as _;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let violations = status
        .get_error_details()
        .bad_request()
        .map_or(0, |b| b.field_violations.len());
    assert!(violations > 0, "a rejection names no field: {status:?}");
}

fn accepted_event(event: NewEvent) {
    let t = &event.event_type;
    assert!(!t.is_empty() && t.len() <= service::MAX_EVENT_TYPE_LEN);
    assert!(
        t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    );
    for value in [
        Some(&event.actor),
        event.lead_id.as_ref(),
        event.workflow.as_ref(),
        event.idempotency_key.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!value.is_empty() && value.chars().count() <= service::MAX_FIELD_LEN);
        assert!(
            !value.chars().any(char::is_control),
            "{value:?} holds a control"
        );
    }
    let details = serde_json::to_vec(&event.details).map_or(usize::MAX, |d| d.len());
    assert!(details <= MAX_DETAILS_BYTES, "details of {details} bytes");
    let keys = keyring();
    let (record, line) = Record::seal(
        event,
        7,
        "id".into(),
        1_770_000_000_000_000,
        None,
        GENESIS,
        &keys,
    );
    let body = line.strip_suffix(b"\n").unwrap_or(&line);
    let back =
        Record::parse(body).unwrap_or_else(|e| panic!("an accepted event does not read back: {e}"));
    assert_eq!(back, record, "an accepted event reads back changed");
    assert_eq!(back.check_mac(body, &keys), MacCheck::Valid);
    let head = RecordHead::peek(body);
    assert!(head.is_some_and(|h| h.check_mac(body, &keys) == MacCheck::Valid));
}
