//! Building events: a generic builder and one typed constructor for each
//! well-known event type of the sales-automation orchestrator.

use serde_json::{Map, Value, json};

use crate::Error;
use crate::pb;

/// An event to log. Build it with [`NewEvent::new`] for any type, or with the
/// constructor of a well-known type, then add fields:
///
/// ```
/// use auditlog_client::NewEvent;
/// let event = NewEvent::email_sent("LEAD-7", "ana@example.com", "Welcome")
///     .workflow("onboarding")
///     .actor("mailer")
///     .idempotency_key("mail-7-welcome");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    event_type: String,
    actor: String,
    lead_id: String,
    workflow: String,
    details: Value,
    idempotency_key: String,
}

impl NewEvent {
    /// An event of any type (lower_snake_case, at most 64 characters).
    pub fn new(event_type: impl Into<String>) -> NewEvent {
        NewEvent {
            event_type: event_type.into(),
            actor: String::new(),
            lead_id: String::new(),
            workflow: String::new(),
            details: Value::Object(Map::new()),
            idempotency_key: String::new(),
        }
    }

    /// Who did it (default "system").
    pub fn actor(mut self, actor: impl Into<String>) -> NewEvent {
        self.actor = actor.into();
        self
    }

    /// The lead the event is about.
    pub fn lead(mut self, lead_id: impl Into<String>) -> NewEvent {
        self.lead_id = lead_id.into();
        self
    }

    /// The workflow the event belongs to.
    pub fn workflow(mut self, workflow: impl Into<String>) -> NewEvent {
        self.workflow = workflow.into();
        self
    }

    /// Replaces the details with `details`, which must be a JSON object.
    pub fn details(mut self, details: Value) -> NewEvent {
        self.details = details;
        self
    }

    /// Sets one detail field.
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> NewEvent {
        if let Value::Object(map) = &mut self.details {
            map.insert(key.into(), value.into());
        }
        self
    }

    /// Makes retries safe: the server writes the event once per key and
    /// answers repeats with the original receipt.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> NewEvent {
        self.idempotency_key = key.into();
        self
    }

    /// The event's type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The request message for this event, its details as a `Struct`.
    pub fn into_input(self) -> Result<pb::EventInput, Error> {
        self.into_input_as(false)
    }

    /// The request message for this event, its details as JSON text
    /// (`details_json`): cheaper to build and send than a `Struct`, and
    /// stored the same. A server older than that field ignores it and
    /// stores `{}`.
    pub fn into_json_input(self) -> Result<pb::EventInput, Error> {
        self.into_input_as(true)
    }

    /// [`NewEvent::into_input`], or with `json` [`NewEvent::into_json_input`].
    pub(crate) fn into_input_as(self, json: bool) -> Result<pb::EventInput, Error> {
        let map = match &self.details {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => return Err(Error::DetailsNotObject(kind(other))),
        };
        let (details, details_json) = match (map, json) {
            // A map of JSON values always serializes.
            (Some(map), true) => (None, serde_json::to_string(map).unwrap_or_default()),
            (Some(map), false) => (
                Some(auditlog_proto::json::json_to_struct(map)),
                String::new(),
            ),
            (None, _) => (Some(Default::default()), String::new()),
        };
        Ok(pb::EventInput {
            event_type: self.event_type,
            actor: self.actor,
            lead_id: self.lead_id,
            workflow: self.workflow,
            details,
            idempotency_key: self.idempotency_key,
            details_json,
        })
    }

    /// A lead entered the pipeline from `source` (web form, import, API...).
    pub fn lead_ingested(lead_id: impl Into<String>, source: &str) -> NewEvent {
        NewEvent::new("lead_ingested")
            .lead(lead_id)
            .details(json!({ "source": source }))
    }

    /// A lead was scored; `qualified` says whether it passed.
    pub fn lead_qualified(lead_id: impl Into<String>, score: f64, qualified: bool) -> NewEvent {
        NewEvent::new("lead_qualified")
            .lead(lead_id)
            .details(json!({ "score": score, "qualified": qualified }))
    }

    /// A lead was routed to `destination`: an owner, team or sequence
    /// (detail `destination`, as the old logger wrote it). Add why with
    /// [`NewEvent::reason`].
    pub fn lead_routed(lead_id: impl Into<String>, destination: &str) -> NewEvent {
        NewEvent::new("lead_routed")
            .lead(lead_id)
            .details(json!({ "destination": destination }))
    }

    /// A CRM record `crm_id` was created for the lead in `crm` (details
    /// `crm` and `crm_id`, as the old logger wrote them).
    pub fn crm_create(lead_id: impl Into<String>, crm: &str, crm_id: &str) -> NewEvent {
        NewEvent::new("crm_create")
            .lead(lead_id)
            .details(json!({ "crm": crm, "crm_id": crm_id }))
    }

    /// The CRM record `crm_id` was updated; `fields` names what changed.
    pub fn crm_update(
        lead_id: impl Into<String>,
        crm: &str,
        crm_id: &str,
        fields: &[&str],
    ) -> NewEvent {
        NewEvent::new("crm_update")
            .lead(lead_id)
            .details(json!({ "crm": crm, "crm_id": crm_id, "fields": fields }))
    }

    /// An email was sent to `recipient` (detail `recipient`, as the old
    /// logger wrote it; compliance mode's default fields pseudonymise it).
    pub fn email_sent(lead_id: impl Into<String>, recipient: &str, subject: &str) -> NewEvent {
        NewEvent::new("email_sent")
            .lead(lead_id)
            .details(json!({ "recipient": recipient, "subject": subject }))
    }

    /// An email was scheduled for `send_at` (RFC 3339).
    pub fn email_scheduled(lead_id: impl Into<String>, template: &str, send_at: &str) -> NewEvent {
        NewEvent::new("email_scheduled")
            .lead(lead_id)
            .details(json!({ "template": template, "send_at": send_at }))
    }

    /// A scheduled email was cancelled.
    pub fn email_cancelled(lead_id: impl Into<String>, reason: &str) -> NewEvent {
        NewEvent::new("email_cancelled")
            .lead(lead_id)
            .details(json!({ "reason": reason }))
    }

    /// A workflow started.
    pub fn workflow_started(workflow: impl Into<String>) -> NewEvent {
        NewEvent::new("workflow_started").workflow(workflow)
    }

    /// A workflow stopped, with why.
    pub fn workflow_stopped(workflow: impl Into<String>, reason: &str) -> NewEvent {
        NewEvent::new("workflow_stopped")
            .workflow(workflow)
            .details(json!({ "reason": reason }))
    }

    /// Something failed. Add a traceback with [`NewEvent::traceback`].
    pub fn error(error_type: &str, error_message: &str) -> NewEvent {
        NewEvent::new("error")
            .details(json!({ "error_type": error_type, "error_message": error_message }))
    }

    /// Adds a traceback to an error event.
    pub fn traceback(self, traceback: &str) -> NewEvent {
        self.detail("traceback", traceback)
    }

    /// Adds why it happened (detail `reason`, the old logger's optional
    /// parameter of routing, qualification and cancellation).
    pub fn reason(self, reason: &str) -> NewEvent {
        self.detail("reason", reason)
    }

    /// Adds the condition that decided it (detail `condition`), such as the
    /// rule a lead matched or the one that cancelled an email.
    pub fn condition(self, condition: &str) -> NewEvent {
        self.detail("condition", condition)
    }

    /// Adds the workflow step it belongs to (detail `step`).
    pub fn step(self, step: &str) -> NewEvent {
        self.detail("step", step)
    }
}

/// An event's details as a JSON object, from whichever form the server
/// answered: the stored text in `details_json` (asked for with
/// [`Query::details_as_json`](crate::Query::details_as_json)), or the
/// `Struct` in `details` (the default, and what a server older than
/// `details_json` answers). No details is an empty object.
/// [`Error::BadDetails`] when neither is a JSON object (a `Struct` holding
/// NaN or an infinity, text that is not an object), which no auditlog
/// server sends.
pub fn details_of(event: &pb::Event) -> Result<Map<String, Value>, Error> {
    let bad = |reason: String| Error::BadDetails {
        seq: event.seq,
        reason,
    };
    if !event.details_json.is_empty() {
        return match serde_json::from_str(&event.details_json) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(bad(format!("details_json holds {}", kind(&other)))),
            Err(e) => Err(bad(format!("details_json is not JSON: {e}"))),
        };
    }
    match &event.details {
        Some(details) => auditlog_proto::json::struct_to_json(details)
            .map_err(|e| bad(format!("details at {:?}: {}", e.path, e.reason))),
        None => Ok(Map::new()),
    }
}

impl NewEvent {
    /// The first field the stored record `record` (a proved line, as JSON)
    /// does not hold as this event sent it; none when it is this event's
    /// record. A `duplicate` receipt of a keyed event is the first record
    /// written with the key, whatever else it holds: then only the key is
    /// compared. Fields the server fills in are compared only when sent:
    /// `actor` (the token's name or "system" without one), and a `_trace`
    /// detail sent as `true` (the trace id in its place). A lead id or a
    /// detail stored as a compliance-mode pseudonym stands for whatever was
    /// sent there: only the server holds the key that made it.
    pub(crate) fn differs_from(&self, record: &Value, duplicate: bool) -> Option<&'static str> {
        // A field the server writes as null when it is empty.
        let text = |field: &str| match record.get(field) {
            None | Some(Value::Null) => Some(""),
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => None,
        };
        if text("idempotency_key") != Some(self.idempotency_key.as_str()) {
            return Some("idempotency_key");
        }
        if duplicate && !self.idempotency_key.is_empty() {
            return None;
        }
        let sent = [
            ("event_type", &self.event_type),
            ("lead_id", &self.lead_id),
            ("workflow", &self.workflow),
        ];
        for (field, value) in sent {
            let stored = text(field);
            // Compliance mode may store the lead id as its pseudonym.
            let pseudonym =
                field == "lead_id" && !value.is_empty() && stored.is_some_and(is_pseudonym);
            if stored != Some(value.as_str()) && !pseudonym {
                return Some(field);
            }
        }
        if !self.actor.is_empty() && text("actor") != Some(self.actor.as_str()) {
            return Some("actor");
        }
        let empty = Map::new();
        let details = match &self.details {
            Value::Object(map) => map,
            _ => &empty,
        };
        let stored = match record.get("details") {
            Some(Value::Object(map)) => map,
            None | Some(Value::Null) => &empty,
            Some(_) => return Some("details"),
        };
        let traced = |k: &str, v: &Value| {
            k == "_trace" && details.get(k) == Some(&Value::Bool(true)) && v.is_string()
        };
        let same = details.len() == stored.len()
            && stored.iter().all(|(k, v)| {
                details
                    .get(k)
                    .is_some_and(|sent| same_json(sent, v) || traced(k, v))
            });
        (!same).then_some("details")
    }
}

/// Whether two JSON values are the same, numbers by value: details sent as
/// a `Struct` travel as doubles, and the server stores a whole one as an
/// integer.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        // A value compliance mode replaced by its keyed token before the
        // record was signed: the client, without the pseudonymisation key,
        // cannot tell which value it stands for.
        (_, Value::String(token)) if is_pseudonym(token) => true,
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Whether `s` is a pseudonym compliance mode stores in place of a PII
/// value: `pii:hmac:` and 32 lowercase hex characters.
fn is_pseudonym(s: &str) -> bool {
    s.strip_prefix("pii:hmac:").is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// What kind of JSON value `value` is, for an error message.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_read_from_either_form() {
        let details = json!({"source": "web", "score": 87, "tags": ["a"], "x": {"y": null}});
        let Value::Object(map) = details.clone() else {
            unreachable!()
        };
        let as_struct = pb::Event {
            details: Some(auditlog_proto::json::json_to_struct(&map)),
            ..Default::default()
        };
        let as_text = pb::Event {
            details_json: details.to_string(),
            ..Default::default()
        };
        assert_eq!(details_of(&as_struct).unwrap(), map);
        assert_eq!(details_of(&as_text).unwrap(), map);
        assert_eq!(details_of(&pb::Event::default()).unwrap(), Map::new());
        for (text, says) in [("[1]", "an array"), ("{not json", "not JSON")] {
            let event = pb::Event {
                seq: 7,
                details_json: text.into(),
                ..Default::default()
            };
            let err = details_of(&event).unwrap_err().to_string();
            assert!(err.contains("seq 7") && err.contains(says), "{err}");
        }
    }

    #[test]
    fn typed_constructors_fill_type_lead_and_details() {
        let input = NewEvent::crm_update("L1", "hubspot", "42", &["stage"])
            .workflow("sales")
            .into_input()
            .unwrap();
        assert_eq!(input.event_type, "crm_update");
        assert_eq!(input.lead_id, "L1");
        assert_eq!(input.workflow, "sales");
        let details = auditlog_proto::json::struct_into_json(input.details.unwrap()).unwrap();
        assert_eq!(
            Value::Object(details),
            json!({"crm": "hubspot", "crm_id": "42", "fields": ["stage"]})
        );
        let err = NewEvent::error("Timeout", "CRM did not answer").traceback("at x");
        let details = err.into_input().unwrap().details.unwrap();
        assert!(details.fields.contains_key("traceback"));
    }

    #[test]
    fn details_must_be_an_object() {
        for json in [false, true] {
            let err = NewEvent::new("x")
                .details(json!([1]))
                .into_input_as(json)
                .unwrap_err();
            assert!(matches!(err, Error::DetailsNotObject("an array")));
        }
    }

    #[test]
    fn details_go_as_json_text_in_place_of_the_struct() {
        let input = NewEvent::lead_ingested("L1", "webform")
            .detail("score", 87)
            .into_json_input()
            .unwrap();
        assert_eq!(input.details, None);
        let sent: Value = serde_json::from_str(&input.details_json).unwrap();
        assert_eq!(sent, json!({"source": "webform", "score": 87}));
        assert!(
            NewEvent::new("x")
                .into_input()
                .unwrap()
                .details_json
                .is_empty()
        );
    }
}
