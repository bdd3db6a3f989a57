//! A typed Rust client for the auditlog service.
//!
//! ```no_run
//! # async fn demo() -> Result<(), auditlog_client::Error> {
//! use auditlog_client::{Client, NewEvent, Query};
//!
//! let client = Client::connect("http://127.0.0.1:50051").await?;
//! let receipt = client.log(NewEvent::lead_ingested("LEAD-001", "webform")).await?;
//! println!("logged seq {} ({})", receipt.seq, receipt.signature);
//!
//! let history = client.lead_history("LEAD-001").await?;
//! let errors = client.query(Query::new().event_type("error").limit(10)).await?;
//! # let _ = (history, errors);
//! # Ok(()) }
//! ```
//!
//! The generated protobuf types are re-exported as [`pb`]; every method
//! returns them, so nothing is lost between the wire and the caller.

mod client;
mod error;
mod event;
mod options;
mod query;

pub use auditlog_proof as proof;
pub use auditlog_proto::v1 as pb;
pub use client::{
    Builder, Client, EventStream, FollowStream, Followed, LineStream, ProvenReceipts, ProvenRecord,
    ReceiptsProof, Retry, VerifiedCheckpoint, check_receipt_proofs,
};
pub use error::Error;
pub use event::{NewEvent, details_of};
pub use options::{Credentials, Options};
pub use query::Query;

pub use auditlog_proof::stored_seq;
