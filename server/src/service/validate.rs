//! Checking requests before anything is written or read: the limits on an
//! event and a batch, and the translation of each request into the store's
//! terms ([`NewEvent`], [`Filter`], [`StatsQuery`]).
//!
//! A batch is all valid or refused whole, and its refusal names every
//! violation of every event (`events[3].event_type ...`), so a caller fixes
//! everything in one round.

use auditlog_proto::v1 as pb;
use tonic::Status;
use tonic_types::ErrorDetails;

use super::api;
use super::details::WireDetails;
use super::edge::{self, check_violations, invalid, micros_of};
use crate::auth::Caller;
use crate::performance;
use crate::store::{Filter, Name, NewEvent, StatsQuery};

/// The most events one LogBatch may carry.
pub(crate) const MAX_BATCH: usize = 1000;
/// The most bytes `details` may take once encoded as JSON.
pub(crate) const MAX_DETAILS_BYTES: usize = 64 * 1024;
/// The longest `event_type`.
pub(crate) const MAX_EVENT_TYPE_LEN: usize = 64;
/// The longest actor, lead id, workflow or idempotency key.
pub(crate) const MAX_FIELD_LEN: usize = 256;

/// Checks a Log request made by `caller` (`None` when auth is off).
pub(crate) fn validate_log(
    req: api::LogRequest,
    caller: Option<&Caller>,
) -> Result<NewEvent, Status> {
    let input = req.event.ok_or_else(|| invalid("event", "is required"))?;
    validate_event(input, "event", caller)
}

/// Checks a LogBatch request's events: all of them are valid or none is
/// written, and every violation of every event is reported.
pub(crate) fn validate_batch(
    inputs: Vec<api::EventInput>,
    caller: Option<&Caller>,
) -> Result<Vec<NewEvent>, Status> {
    if inputs.is_empty() {
        return Err(invalid("events", "must hold at least one event"));
    }
    if inputs.len() > MAX_BATCH {
        return Err(invalid(
            "events",
            &format!(
                "holds {} events; a batch holds at most {MAX_BATCH}, split it",
                inputs.len()
            ),
        ));
    }
    let mut details = ErrorDetails::new();
    let mut events = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        let path = || format!("events[{i}]");
        events.extend(check_event(input, &path, caller, &mut details));
    }
    check_violations(
        details,
        "the batch has invalid events, nothing was written: ",
    )?;
    // Without tokens there is no actor to check (nor a path to name).
    if caller.is_some() {
        for (i, event) in events.iter().enumerate() {
            check_actor(event, &format!("events[{i}]"), caller)?;
        }
    }
    Ok(events)
}

/// Checks a TrackPerformance request and turns it into the `performance`
/// event it records.
pub(super) fn validate_track(
    req: pb::TrackPerformanceRequest,
    caller: Option<&Caller>,
) -> Result<NewEvent, Status> {
    let mut violations = ErrorDetails::new();
    if let Err(reason) = performance::check_operation(&req.operation) {
        violations.add_bad_request_violation("operation", reason);
    }
    let ms = req.duration_ms;
    if let Err(reason) = performance::check_duration(ms) {
        violations.add_bad_request_violation("duration_ms", reason);
    }
    check_violations(violations, "")?;
    let mut details = req.details.unwrap_or_default();
    for (key, value) in [
        (
            "operation",
            prost_types::value::Kind::StringValue(req.operation),
        ),
        ("duration_ms", prost_types::value::Kind::NumberValue(ms)),
    ] {
        details
            .fields
            .insert(key.to_owned(), prost_types::Value { kind: Some(value) });
    }
    let details = WireDetails::of_struct(&details).map_err(|e| {
        invalid(
            "details",
            &format!("does not decode as a google.protobuf.Struct: {e}"),
        )
    })?;
    let input = api::EventInput {
        event_type: performance::EVENT_TYPE.into(),
        actor: req.actor.into(),
        lead_id: req.lead_id.into(),
        workflow: req.workflow.into(),
        details: Some(details),
        idempotency_key: req.idempotency_key.into(),
        details_json: String::new(),
    };
    validate_event(input, "request", caller)
}

/// Checks one event; `path` names it in violations (`event`, `request`).
fn validate_event(
    input: api::EventInput,
    path: &str,
    caller: Option<&Caller>,
) -> Result<NewEvent, Status> {
    let mut violations = ErrorDetails::new();
    let event = check_event(input, &|| path.to_owned(), caller, &mut violations);
    check_violations(violations, "")?;
    let event = event.ok_or_else(|| edge::internal("an invalid event without a violation"))?;
    check_actor(&event, path, caller)?;
    Ok(event)
}

/// PERMISSION_DENIED when the token may not log as the event's actor.
fn check_actor(event: &NewEvent, path: &str, caller: Option<&Caller>) -> Result<(), Status> {
    match caller {
        Some(c) if !c.may_act_as(&event.actor) => Err(edge::actor_denied(
            &format!("{path}.actor"),
            &event.actor,
            &c.name,
            c.actors.as_deref().unwrap_or_default(),
        )),
        _ => Ok(()),
    }
}

/// Checks one event, adding each violation to `violations` under the name
/// `path` gives it (built only when there is one: `events[3]`); the event
/// once it has none.
fn check_event(
    mut input: api::EventInput,
    path: &dyn Fn() -> String,
    caller: Option<&Caller>,
    violations: &mut ErrorDetails,
) -> Option<NewEvent> {
    let mut valid = true;
    let mut violate = |field: &str, reason: String| {
        valid = false;
        violations.add_bad_request_violation(format!("{}.{field}", path()), reason);
    };
    let t = &input.event_type;
    if t.is_empty() {
        violate("event_type", "is required".into());
    } else if t.len() > MAX_EVENT_TYPE_LEN {
        violate(
            "event_type",
            format!("is {} characters; at most {MAX_EVENT_TYPE_LEN}", t.len()),
        );
    } else if !is_snake_case(t) {
        violate(
            "event_type",
            format!("{t:?} is not lower_snake_case (a-z first, then a-z, 0-9 or _)"),
        );
    }
    for (field, value) in [
        ("actor", &input.actor),
        ("lead_id", &input.lead_id),
        ("workflow", &input.workflow),
        ("idempotency_key", &input.idempotency_key),
    ] {
        // No more characters than bytes: most values need no count.
        if value.len() > MAX_FIELD_LEN && value.chars().count() > MAX_FIELD_LEN {
            violate(
                field,
                format!(
                    "is {} characters; at most {MAX_FIELD_LEN}",
                    value.chars().count()
                ),
            );
        } else if let Some(reason) = control_in(value) {
            violate(field, reason);
        }
    }
    // Where the details came from, to name in a violation.
    let field = match input.details_json.is_empty() {
        true => "details",
        false => "details_json",
    };
    let wire = match (input.details.take(), input.details_json.is_empty()) {
        (wire, true) => wire,
        (None, false) => match WireDetails::of_json_text(&input.details_json) {
            Ok(wire) => Some(wire),
            Err(reason) => {
                violate("details_json", reason);
                None
            }
        },
        (Some(_), false) => {
            violate(
                "details_json",
                "is set beside details: send the details once, as a Struct in details or as \
                 JSON text in details_json"
                    .into(),
            );
            None
        }
    };
    let details = match wire.map(WireDetails::into_details).transpose() {
        Ok(d) => d.unwrap_or_default(),
        Err(e) => {
            violate(&format!("{field}.{}", e.path), e.reason.to_owned());
            Default::default()
        }
    };
    let size = details.len();
    if size > MAX_DETAILS_BYTES {
        violate(
            field,
            format!("is {size} bytes as JSON; at most {MAX_DETAILS_BYTES}"),
        );
    }
    valid.then(|| NewEvent {
        event_type: input.event_type,
        // Without a name the event is the token's own, or the system's
        // when auth is off.
        actor: some(input.actor)
            .unwrap_or_else(|| Name::from(caller.map_or("system", |c| c.name.as_str()))),
        caller: caller.map(|c| Name::from(c.name.as_str())),
        lead_id: some(input.lead_id),
        workflow: some(input.workflow),
        details,
        idempotency_key: some(input.idempotency_key),
    })
}

/// Checks a GetStats request's range, buckets and filter values.
pub(super) fn stats_query_of(req: &pb::GetStatsRequest) -> Result<StatsQuery, Status> {
    check_filter_values("", &req.event_types, &[("workflow", &req.workflow)])?;
    let (since, until) = range_of(req.since.as_ref(), req.until.as_ref(), "")?;
    Ok(StatsQuery {
        workflow: non_empty(req.workflow.clone()),
        since,
        until,
        bucket_micros: (req.bucket_seconds > 0).then(|| i64::from(req.bucket_seconds) * 1_000_000),
        leads_by_type: req.leads_by_type,
        event_types: req.event_types.clone(),
    })
}

/// Checks a VerifyIntegrity request's seq range.
pub(super) fn check_verify(req: &pb::VerifyIntegrityRequest) -> Result<(), Status> {
    if req.to_seq != 0 && req.from_seq > req.to_seq {
        return Err(invalid(
            "to_seq",
            &format!(
                "is {} but from_seq is {}; to_seq must not be below it",
                req.to_seq, req.from_seq
            ),
        ));
    }
    Ok(())
}

/// Checks a VerifyIntegrity request's `from_seq` against the log's
/// acknowledged `head`: past `head + 1` it asks about seqs never
/// acknowledged (`edge::verify_past_head`). `head + 1` itself is taken, and
/// checks nothing: a caller that verifies the log as it grows asks from
/// after the last seq it verified, which on an up-to-date log is that.
pub(super) fn check_verify_start(
    from_seq: u64,
    head: u64,
    single_node: bool,
) -> Result<(), Status> {
    if from_seq > head.saturating_add(1) {
        return Err(edge::verify_past_head(from_seq, head, single_node));
    }
    Ok(())
}

/// Checks an ExportSubject request's identifier.
pub(super) fn check_identifier(identifier: &str) -> Result<(), Status> {
    if identifier.trim().is_empty() {
        return Err(invalid(
            "identifier",
            "is required: the subject's email, phone number, lead id or name",
        ));
    }
    if identifier.chars().count() > MAX_FIELD_LEN {
        return Err(invalid(
            "identifier",
            &format!("is longer than {MAX_FIELD_LEN} characters"),
        ));
    }
    if let Some(reason) = control_in(identifier) {
        return Err(invalid("identifier", &reason));
    }
    Ok(())
}

/// The largest page MailReport mails, and its plain-text alternative.
const MAX_MAIL_HTML: usize = 3 << 20;
const MAX_MAIL_TEXT: usize = 64 << 10;

/// Checks a MailReport request: a short subject without control characters
/// (it becomes a mail header), a page, and sizes a mail relay takes.
pub(super) fn check_mail(req: &pb::MailReportRequest) -> Result<(), Status> {
    let subject_len = req.subject.chars().count();
    if subject_len == 0 || subject_len > 200 {
        return Err(invalid("subject", "must be 1 to 200 characters"));
    }
    if req.subject.chars().any(char::is_control) {
        return Err(invalid(
            "subject",
            "must not hold control characters (line breaks, tabs)",
        ));
    }
    if req.html.is_empty() {
        return Err(invalid("html", "is empty: send the page to mail"));
    }
    if req.html.len() > MAX_MAIL_HTML {
        return Err(invalid("html", "is over 3 MiB: mail a shorter period"));
    }
    if req.text.len() > MAX_MAIL_TEXT {
        return Err(invalid("text", "is over 64 KiB"));
    }
    Ok(())
}

/// The filter of a Query or StreamEvents request, its values checked as
/// [`check_filter_values`] does.
pub(super) fn filter_of(f: Option<pb::EventFilter>) -> Result<Filter, Status> {
    let f = f.unwrap_or_default();
    check_filter_values(
        "filter.",
        &f.event_types,
        &[
            ("lead_id", &f.lead_id),
            ("workflow", &f.workflow),
            ("actor", &f.actor),
        ],
    )?;
    let (since, until) = range_of(f.since.as_ref(), f.until.as_ref(), "filter.")?;
    Ok(Filter {
        event_types: f
            .event_types
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect(),
        lead_id: non_empty(f.lead_id),
        workflow: non_empty(f.workflow),
        actor: non_empty(f.actor),
        since,
        until,
    })
}

/// The event types the server writes itself, outside the callers' rule
/// (lower_snake_case): the retention purge (`store/retention.rs`
/// `PURGE_EVENT_TYPE`; `tests/segment_age.rs` queries it by type).
/// `performance`, TrackPerformance's type, keeps the rule.
const SERVER_EVENT_TYPES: &[&str] = &["auditlog.purge"];

/// Refuses a filter's values that no event could hold, by the rules every
/// event is checked with ([`check_event`]): an event type that is not
/// lower_snake_case (nor one the server writes) or longer than
/// [`MAX_EVENT_TYPE_LEN`], a short field (`fields`: name and value) longer
/// than [`MAX_FIELD_LEN`] characters or holding a control character. Such a
/// filter could only ever match nothing, which looks like an empty log;
/// INVALID_ARGUMENT names each field (`{prefix}event_types[1]`) and the
/// rule. Empty values mean "any" and pass.
fn check_filter_values(
    prefix: &str,
    event_types: &[String],
    fields: &[(&str, &String)],
) -> Result<(), Status> {
    let mut violations = ErrorDetails::new();
    for (i, t) in event_types.iter().enumerate() {
        let reason = if t.is_empty() || SERVER_EVENT_TYPES.contains(&t.as_str()) {
            continue;
        } else if t.chars().count() > MAX_EVENT_TYPE_LEN {
            format!(
                "is {} characters; an event type is at most {MAX_EVENT_TYPE_LEN}",
                t.chars().count()
            )
        } else if !is_snake_case(t) {
            format!(
                "{t:?} is not lower_snake_case (a-z first, then a-z, 0-9 or _), as every event \
                 type is"
            )
        } else {
            continue;
        };
        violations.add_bad_request_violation(
            format!("{prefix}event_types[{i}]"),
            format!("{reason}, so no event could match"),
        );
    }
    for (field, value) in fields {
        let count = value.chars().count();
        let reason = if count > MAX_FIELD_LEN {
            format!("is {count} characters; an event's {field} is at most {MAX_FIELD_LEN}")
        } else if let Some((at, c)) = first_control(value) {
            format!(
                "holds the control character U+{:04X} at character {at}; no event's {field} \
                 holds control characters (newlines, tabs, escapes, NUL)",
                u32::from(c)
            )
        } else {
            continue;
        };
        violations.add_bad_request_violation(
            format!("{prefix}{field}"),
            format!("{reason}, so no event could match"),
        );
    }
    check_violations(violations, "")
}

/// A `since <= time < until` range in microseconds; the fields are named
/// `{prefix}since` and `{prefix}until` in refusals.
pub(super) fn range_of(
    since: Option<&prost_types::Timestamp>,
    until: Option<&prost_types::Timestamp>,
    prefix: &str,
) -> Result<(Option<i64>, Option<i64>), Status> {
    let since = since
        .map(|t| micros_of(t, &format!("{prefix}since")))
        .transpose()?;
    let until = until
        .map(|t| micros_of(t, &format!("{prefix}until")))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(invalid(
            &format!("{prefix}until"),
            &format!("must be after {prefix}since (the range is since <= time < until)"),
        ));
    }
    Ok((since, until))
}

/// `None` for the empty string protobuf sends for an unset field.
pub(super) fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// [`non_empty`] for a [`Name`].
fn some(s: Name) -> Option<Name> {
    (!s.is_empty()).then_some(s)
}

/// Why `value` is refused if it holds a control character (C0, DEL or
/// C1: `\n`, `\r`, `\0`, ESC, ...), which would let a short field forge a
/// row or pass a terminal escape to whoever reads it; `None` if it holds
/// none. Details may hold any text: they are JSON, escaped wherever shown.
pub(super) fn control_in(value: &str) -> Option<String> {
    let (at, c) = first_control(value)?;
    Some(format!(
        "holds the control character U+{:04X} at character {at}; control characters \
         (newlines, tabs, escapes, NUL) are not allowed in short fields, put such text in details",
        u32::from(c)
    ))
}

/// The first control character in `value` and its place, counted from 1
/// as a reader counts (the CLI's token check and webhook secrets count
/// the same way).
fn first_control(value: &str) -> Option<(usize, char)> {
    // Printable ASCII, the usual case, has none: one pass over the bytes.
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    value
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control())
        .map(|(i, c)| (i + 1, c))
}

fn is_snake_case(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_rule() {
        for ok in ["error", "lead_ingested", "a1_b2", "x"] {
            assert!(is_snake_case(ok), "{ok}");
        }
        for bad in ["", "Error", "1abc", "_x", "a-b", "a b", "é"] {
            assert!(!is_snake_case(bad), "{bad}");
        }
    }

    /// What an event could hold passes a filter; what none could is
    /// refused naming the field and the rule, every violation at once.
    #[test]
    fn filter_values_no_event_could_hold_are_refused() {
        let filter = |f: pb::EventFilter| filter_of(Some(f));
        let longest = "é".repeat(MAX_FIELD_LEN);
        let ok = filter(pb::EventFilter {
            event_types: vec![
                String::new(),
                "lead_ingested".into(),
                "performance".into(),
                "auditlog.purge".into(),
                "a".repeat(MAX_EVENT_TYPE_LEN),
            ],
            lead_id: longest.clone(),
            workflow: "wf 1\u{a0}".into(),
            actor: "Zoë O'Brien".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ok.event_types.len(), 4);
        assert_eq!(ok.lead_id, Some(longest));

        let status = filter(pb::EventFilter {
            event_types: vec!["lead_ingested".into(), "Bad Type\n".into(), "t".repeat(65)],
            lead_id: "\u{1b}".into(),
            workflow: "w".repeat(10_000),
            actor: "a\nb".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let message = status.message();
        for says in [
            "filter.event_types[1] \"Bad Type\\n\" is not lower_snake_case",
            "filter.event_types[2] is 65 characters; an event type is at most 64",
            "filter.lead_id holds the control character U+001B at character 1",
            "filter.workflow is 10000 characters; an event's workflow is at most 256",
            "filter.actor holds the control character U+000A at character 2",
        ] {
            assert!(message.contains(says), "{says}\n{message}");
        }
        assert!(!message.contains("lead_ingested"), "{message}");

        let stats = |event_types: Vec<String>, workflow: &str| {
            stats_query_of(&pb::GetStatsRequest {
                event_types,
                workflow: workflow.into(),
                ..Default::default()
            })
        };
        assert!(stats(vec!["error".into(), "auditlog.purge".into()], "wf 1").is_ok());
        let status = stats(vec!["Error".into()], "w\u{7f}").unwrap_err();
        assert!(
            status
                .message()
                .contains("event_types[0] \"Error\" is not lower_snake_case")
                && status
                    .message()
                    .contains("workflow holds the control character U+007F"),
            "{status:?}"
        );
    }

    #[test]
    fn control_characters_are_found_and_placed() {
        for ok in ["", "crm-sync", "Zoë O'Brien", "LEAD-001", "a b\u{a0}c"] {
            assert_eq!(control_in(ok), None, "{ok:?}");
        }
        for (bad, code, at) in [
            ("a\nb", "U+000A", 2),
            ("\r", "U+000D", 1),
            ("x\0", "U+0000", 2),
            ("ab\u{1b}[2J", "U+001B", 3),
            ("\u{7f}", "U+007F", 1),
            ("é\u{9b}", "U+009B", 2),
        ] {
            let reason = control_in(bad).unwrap();
            assert!(reason.contains(code), "{bad:?}: {reason}");
            assert!(reason.contains(&format!("at character {at}")), "{reason}");
        }
    }
}
