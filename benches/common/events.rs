//! The realistic events the ingest and peers benchmarks send: what a
//! lead-processing pipeline logs (a lead id, a workflow, a `details` object
//! of 3 to 5 fields), built from a number so every system under test gets
//! exactly the same content.
//!
//! Included by both benchmarks with `#[path = "common/events.rs"]`.

use auditlog_proto::v1 as pb;
use serde_json::json;

/// The fields of one event, in the form every system is given them.
pub(crate) struct Event {
    pub(crate) event_type: &'static str,
    pub(crate) actor: &'static str,
    pub(crate) lead_id: String,
    pub(crate) workflow: &'static str,
    pub(crate) details: serde_json::Map<String, serde_json::Value>,
}

/// The `n`th event, about lead number `lead`.
pub(crate) fn event(n: usize, lead: usize) -> Event {
    const TYPES: [&str; 6] = [
        "lead_ingested",
        "lead_qualified",
        "lead_routed",
        "crm_create",
        "email_sent",
        "crm_update",
    ];
    const SOURCES: [&str; 4] = ["webform", "partner_api", "csv_import", "chat"];
    const WORKFLOWS: [&str; 3] = ["sales", "onboarding", "renewals"];
    const REGIONS: [&str; 3] = ["emea", "amer", "apac"];
    let event_type = TYPES[n % TYPES.len()];
    let details = match event_type {
        "lead_ingested" => json!({
            "source": SOURCES[n % SOURCES.len()],
            "campaign": format!("spring-{}", n % 12),
            "utm_medium": "cpc",
            "score": (n * 37) % 100,
        }),
        "lead_qualified" | "lead_routed" => json!({
            "score": (n * 37) % 100,
            "owner": format!("rep-{}", n % 25),
            "region": REGIONS[n % REGIONS.len()],
        }),
        "email_sent" => json!({
            "template": "welcome_v3",
            "to_domain": "example.com",
            "message_id": format!("<{n:08x}@mail.example.com>"),
            "attempt": 1,
        }),
        _ => json!({
            "crm": "hubspot",
            "record_id": format!("{}", 9_000_000 + lead),
            "fields": ["stage", "owner", "amount"],
            "stage": "qualified",
            "amount": 1200.5,
        }),
    };
    let details = match details {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    Event {
        event_type,
        actor: "lead-pipeline",
        lead_id: format!("LEAD-{lead:06}"),
        workflow: WORKFLOWS[n % WORKFLOWS.len()],
        details,
    }
}

impl Event {
    /// The event as auditlog's API takes it: details as a `Struct`, or with
    /// `json` as JSON text (`details_json`).
    pub(crate) fn to_pb_as(&self, json: bool) -> pb::EventInput {
        let (details, details_json) = match json {
            true => (
                None,
                serde_json::to_string(&self.details).unwrap_or_default(),
            ),
            false => (
                Some(auditlog_proto::json::json_to_struct(&self.details)),
                String::new(),
            ),
        };
        pb::EventInput {
            event_type: self.event_type.to_owned(),
            actor: self.actor.to_owned(),
            lead_id: self.lead_id.clone(),
            workflow: self.workflow.to_owned(),
            details,
            idempotency_key: String::new(),
            details_json,
        }
    }
}
