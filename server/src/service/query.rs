//! Query planning: what a Query request selects, in which order, how many,
//! and where its page token resumes; and the page as it is sent.

use auditlog_proto::v1 as pb;
use tonic::Status;

use super::edge::invalid;
use super::event_bytes::{self, EventBytes, encode_only};
use super::page_token::PageToken;
use super::validate::filter_of;
use crate::store::{Filter, Order};

/// The most events one Query page returns.
pub(crate) const MAX_QUERY_LIMIT: u32 = 1000;
/// The page size when the caller gives none.
pub(crate) const DEFAULT_QUERY_LIMIT: u32 = 100;

/// A Query request, checked: what to select and where to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryPlan {
    pub filter: Filter,
    pub order: Order,
    /// Records per page, 1 to [`MAX_QUERY_LIMIT`].
    pub limit: usize,
    /// The seq the page token resumes after (oldest first) or before.
    pub cursor: Option<u64>,
    /// Binds the next page token to this filter and order.
    pub fingerprint: u64,
}

/// Checks a Query request. `lead_filter` maps the filter before the page
/// token is bound to it (compliance mode swaps a lead id for its token).
pub(crate) fn plan_query(
    req: pb::QueryRequest,
    lead_filter: impl FnOnce(Filter) -> Result<Filter, Status>,
) -> Result<QueryPlan, Status> {
    let filter = lead_filter(filter_of(req.filter)?)?;
    let limit = match req.limit {
        0 => DEFAULT_QUERY_LIMIT,
        n if n > MAX_QUERY_LIMIT => {
            return Err(invalid(
                "limit",
                &format!("is {n}; at most {MAX_QUERY_LIMIT} per page, use page_token for more"),
            ));
        }
        n => n,
    } as usize;
    let order = if req.oldest_first {
        Order::OldestFirst
    } else {
        Order::NewestFirst
    };
    let fingerprint = PageToken::fingerprint(&filter, order);
    let cursor = if req.page_token.is_empty() {
        None
    } else {
        Some(PageToken::decode(&req.page_token, fingerprint)?)
    };
    Ok(QueryPlan {
        filter,
        order,
        limit,
        cursor,
        fingerprint,
    })
}

/// A `QueryResponse`, its events already encoded (`event_bytes`) on the
/// thread that read them. The generated `AuditService` (build.rs) takes it
/// where the message would be; a client cannot tell the difference.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EncodedPage {
    pub(super) events: Vec<EventBytes>,
    pub(super) next_page_token: String,
}

/// `QueryResponse.next_page_token`'s field number.
const PAGE_TOKEN: u32 = 2;

encode_only!(
    EncodedPage,
    |self, buf| {
        for event in &self.events {
            buf.put_slice(&event.bytes);
        }
        event_bytes::put_string(PAGE_TOKEN, &self.next_page_token, buf);
    },
    |self| {
        self.events.iter().map(|e| e.bytes.len()).sum::<usize>()
            + event_bytes::string_len(PAGE_TOKEN, &self.next_page_token)
    }
);

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::service::edge;
    use crate::store::{Decoded, Record};

    /// A page sent as `EncodedPage` decodes as the `QueryResponse` prost
    /// would have sent for the same records: every kind of field and value,
    /// with and without a next page, and an empty page.
    #[test]
    fn an_encoded_page_decodes_as_the_message_it_stands_for() {
        let lines = event_bytes::sample_lines();
        let records: Vec<Record> = lines
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let events: Vec<EventBytes> = lines
            .iter()
            .map(|line| EventBytes::from_line(line.as_bytes()).unwrap())
            .collect();
        for (n, token) in [
            (records.len(), String::new()),
            (records.len(), "next-page".to_owned()),
            (1, "x".repeat(200)),
            (0, String::new()),
        ] {
            let expected = pb::QueryResponse {
                events: records[..n].iter().cloned().map(edge::event_pb).collect(),
                next_page_token: token.clone(),
            };
            let page = EncodedPage {
                events: events[..n].to_vec(),
                next_page_token: token,
            };
            let wire = page.encode_to_vec();
            assert_eq!(wire.len(), page.encoded_len());
            assert_eq!(pb::QueryResponse::decode(&wire[..]).unwrap(), expected);
        }
    }

    /// A line whose details cannot become a `Struct` (a number past what a
    /// double holds) is an error for the page, never an event with other
    /// details than its line's.
    #[test]
    fn details_that_cannot_be_encoded_refuse_the_line() {
        let line = event_bytes::sample_lines()[0].replacen(r#""score":3"#, r#""score":1e400"#, 1);
        assert!(line.contains("1e400"));
        assert!(EventBytes::from_line(line.as_bytes()).is_err());
    }
}
