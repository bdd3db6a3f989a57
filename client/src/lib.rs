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

/// The seq of a stored record's line (`{"seq":N,...`), as
/// [`Client::stream_lines`] yields it; `None` for a line that does not
/// start like a record.
pub fn stored_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || rest.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::stored_seq;

    #[test]
    fn a_records_seq_is_read_from_its_head_and_nothing_else_has_one() {
        assert_eq!(stored_seq(br#"{"seq":1,"id":"x"}"#), Some(1));
        assert_eq!(
            stored_seq(br#"{"seq":18446744073709551615,"#),
            Some(u64::MAX)
        );
        for line in [
            &br#"{"seq":,"id":"x"}"#[..],
            br#"{"seq":12"#,
            br#"{"seq":1x,"#,
            br#"{"seq":18446744073709551616,"#,
            br#"{ "seq":1,"#,
            b"auditlog gap at seq 4",
            b"",
        ] {
            assert_eq!(stored_seq(line), None, "{}", String::from_utf8_lossy(line));
        }
    }
}
