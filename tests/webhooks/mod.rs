//! Outgoing webhooks end to end, against real HTTP receivers on 127.0.0.1
//! that authenticate every request themselves, as a Standard Webhooks
//! receiver would: the `webhook-signature` (HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}` with the `whsec_` secret), a
//! recent `webhook-timestamp`, and the bearer token. A request that fails is
//! answered 400 and recorded; every test ends with none.
//!
//! What must hold: every event arrives in seq order, chained (`data.prev` is
//! the previous `data.signature`) and exactly as stored; filters deliver only
//! matching events; an outage (error answers, then a closed port) is made up
//! in order without duplicates; delivery resumes where it stopped after a
//! clean restart and after a crash; status shows the outage and the
//! recovery; an unreachable endpoint never fails a `Log` call nor holds up
//! another endpoint; an endpoint configured by URL alone signs with a secret
//! the server generates once and keeps, which `auditlog webhooks secret`
//! shows; a malformed secret stops the server with an explanation.
//!
//! One file per concern. Shared: the receiver's secrets, endpoint config and
//! request checks (`receiver.rs`), and waiting for deliveries, checking them
//! and reading status (`checks.rs`). The tests: delivery and signatures
//! (`delivery.rs`), filters (`filters.rs`), failures and retries: an outage,
//! `410 Gone`, unreachable endpoints not holding up ingest or another
//! endpoint (`failures.rs`), redirects (`redirects.rs`), where delivery
//! resumes after a restart, a crash or a purge (`restarts.rs`), and
//! configuration: generated secrets, malformed secrets, a zero timeout
//! (`configuration.rs`).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod checks;
mod configuration;
mod delivery;
mod failures;
mod filters;
mod receiver;
mod redirects;
mod restarts;
