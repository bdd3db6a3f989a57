//! The targets of the request floor: what callers send, checked by the
//! service before anything reaches the store.

use auditlog_proto::v1 as pb;
use prost::Message as _;
use tonic::Code;

use super::sample::keyring;
use crate::service::{self, MAX_BATCH, MAX_DETAILS_BYTES, MAX_QUERY_LIMIT, PageToken};
use crate::store::Order;
use crate::store::record::{GENESIS, MacCheck, NewEvent, Record, RecordHead};

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
            let Ok(req) = pb::LogRequest::decode(bytes) else {
                return;
            };
            match service::validate_log(req, None) {
                Ok(event) => accepted_event(event),
                Err(status) => rejected(&status),
            }
        }
        1 => {
            let Ok(req) = pb::LogBatchRequest::decode(bytes) else {
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
