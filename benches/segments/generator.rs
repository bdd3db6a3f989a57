//! The segments bench's events: a deterministic PRNG and the generator that
//! makes every batch of the log from its own seed, with the event types'
//! shares, workflows and details.

use auditlog_client::NewEvent;

/// A deterministic PRNG (SplitMix64): the same seed gives the same log.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Event types and their share of the log, in percent.
const TYPES: &[(&str, u64)] = &[
    ("email_sent", 24),
    ("crm_update", 18),
    ("email_scheduled", 12),
    ("lead_qualified", 10),
    ("lead_routed", 8),
    ("lead_ingested", 7),
    ("crm_create", 7),
    ("email_cancelled", 5),
    ("error", 5),
    ("workflow_started", 2),
    ("workflow_stopped", 2),
];
const WORKFLOWS: &[&str] = &["onboarding", "nurture", "reactivation", "sales_outreach"];
const TEMPLATES: &[&str] = &[
    "welcome",
    "follow_up_1",
    "follow_up_2",
    "demo_invite",
    "case_study",
];
const SUBJECTS: &[&str] = &[
    "Welcome aboard",
    "Quick follow-up",
    "Can we help?",
    "Your demo is ready",
    "How Acme cut costs by 30%",
];
const CRMS: &[&str] = &["hubspot", "salesforce"];
const FIELDS: &[&str] = &["stage", "owner", "score", "phone", "company", "title"];
const SOURCES: &[&str] = &["webform", "import", "api", "chat", "event"];
const ERRORS: &[(&str, &str)] = &[
    ("Timeout", "CRM did not answer within 10s"),
    ("RateLimited", "email provider returned 429"),
    ("ValidationError", "lead has no email address"),
];

/// Builds the log's events: each batch from its own seed, so the log is the
/// same whatever order the batches are written in.
#[derive(Clone, Copy)]
pub(crate) struct Generator {
    pub(crate) leads: u64,
}

pub(crate) fn lead_id(n: u64) -> String {
    format!("LEAD-{n:06}")
}

impl Generator {
    pub(crate) fn batch(&self, batch: u64, size: u64) -> Vec<NewEvent> {
        let mut rng = Rng(batch.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xA5A5_5A5A);
        (0..size).map(|_| self.event(&mut rng)).collect()
    }

    fn event(&self, rng: &mut Rng) -> NewEvent {
        let mut roll = rng.below(100);
        let mut kind = TYPES[0].0;
        for &(t, share) in TYPES {
            if roll < share {
                kind = t;
                break;
            }
            roll -= share;
        }
        let n = rng.below(self.leads);
        let lead = lead_id(n);
        let workflow = WORKFLOWS[(n % WORKFLOWS.len() as u64) as usize];
        let template = rng.pick(TEMPLATES);
        let record_id = format!("{:010}", rng.below(10_000_000_000));
        let event = match kind {
            "email_sent" => {
                NewEvent::email_sent(lead, &format!("lead{n}@example.com"), rng.pick(SUBJECTS))
                    .actor("mailer")
                    .detail("template", template)
                    .detail("message_id", format!("msg-{:016x}", rng.next()))
            }
            "crm_update" => {
                let fields = [rng.pick(FIELDS), rng.pick(FIELDS)];
                NewEvent::crm_update(lead, rng.pick(CRMS), &record_id, &fields)
                    .actor("crm-sync")
                    .detail("changed_by", "workflow")
            }
            "email_scheduled" => NewEvent::email_scheduled(lead, template, "2026-03-01T09:00:00Z")
                .actor("scheduler")
                .detail("sequence_step", rng.below(6) + 1),
            "lead_qualified" => {
                let score = rng.below(1000) as f64 / 10.0;
                NewEvent::lead_qualified(lead, score, score >= 60.0)
                    .actor("scoring")
                    .detail("model", "scoring-v3")
            }
            "lead_routed" => NewEvent::lead_routed(lead, &format!("rep-{}", rng.below(40)))
                .actor("router")
                .detail("team", rng.pick(&["emea", "amer", "apac"]))
                .detail("rule", format!("r{}", rng.below(12))),
            "lead_ingested" => NewEvent::lead_ingested(lead, rng.pick(SOURCES))
                .actor("ingest-api")
                .detail("campaign", format!("cmp-{}", rng.below(30)))
                .detail("country", rng.pick(&["DE", "FR", "US", "GB", "ES"])),
            "crm_create" => NewEvent::crm_create(lead, rng.pick(CRMS), &record_id)
                .actor("crm-sync")
                .detail("owner", format!("rep-{}", rng.below(40))),
            "email_cancelled" => NewEvent::email_cancelled(lead, "lead replied")
                .actor("scheduler")
                .detail("template", template)
                .detail("sequence_step", rng.below(6) + 1),
            "error" => {
                let (error_type, message) = ERRORS[rng.below(ERRORS.len() as u64) as usize];
                NewEvent::error(error_type, message)
                    .lead(lead)
                    .actor("orchestrator")
                    .detail("step", rng.pick(&["crm_update", "email_sent", "routing"]))
                    .detail("attempt", rng.below(3) + 1)
            }
            "workflow_started" => NewEvent::workflow_started(workflow)
                .actor("orchestrator")
                .detail("run_id", format!("run-{:08x}", rng.next() as u32))
                .detail("trigger", "schedule"),
            _ => NewEvent::workflow_stopped(workflow, "completed")
                .actor("orchestrator")
                .detail("run_id", format!("run-{:08x}", rng.next() as u32)),
        };
        event.workflow(workflow)
    }
}
