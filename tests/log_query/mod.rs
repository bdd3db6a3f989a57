//! Writing and reading the log through the real client: `Log`, `LogBatch`,
//! `Query` (filters, order, pages), `GetStats`, and idempotency keys.
//!
//! Filter tests log a varied sample one event at a time and keep a model of
//! what they logged; each query must return exactly the model's matching
//! seqs, in the requested order. Every page-token, batch and idempotency
//! test checks what was written (head, totals, the chain), not only what the
//! call answered.
//!
//! One file per concern. Shared: the model of what was logged, the sample
//! events and the common checks (`model.rs`). The tests: filters
//! (`filters.rs`), pages, order and lead histories (`pages.rs`), pages of
//! events too large for one message (`large_events.rs`), writing single
//! events, batches and concurrent writers (`writing.rs`), idempotency keys
//! (`idempotency.rs`), and statistics (`stats.rs`).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod filters;
mod idempotency;
mod large_events;
mod model;
mod pages;
mod stats;
mod writing;
