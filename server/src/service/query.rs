//! Query planning: what a Query request selects, in which order, how many,
//! and where its page token resumes; and the page as it is sent.

use auditlog_proto::v1 as pb;
use tonic::Status;

use super::edge::{invalid, status_of};
use super::event_bytes::{self, EventBytes, encode_only};
use super::page_token::PageToken;
use super::validate::filter_of;
use crate::store::{Decoded, Filter, Order, Page, Store};

/// The most events one Query page returns.
pub(crate) const MAX_QUERY_LIMIT: u32 = 1000;
/// The page size when the caller gives none.
pub(crate) const DEFAULT_QUERY_LIMIT: u32 = 100;
/// The most bytes of encoded events one Query page holds: a page ends
/// before the event that would take it past this, however far below
/// `limit` it is, and its `next_page_token` continues after its last event
/// ([`EncodedPage::of`]).
///
/// Every gRPC client receives at most 4 MiB (4,194,304 bytes) in one
/// message unless told otherwise (tonic, grpc-go, grpc-java, grpc-python
/// alike), and a page of 1,000 events of up to 64 KiB of details each could
/// be 64 MB and more. 3 MiB keeps a whole page, its `next_page_token` (36
/// bytes) and the 5-byte gRPC frame prefix a quarter below that limit: room
/// for a client or proxy that counts a little more than the message, or a
/// field added to `QueryResponse` later. One event always fits: the largest
/// a legal event encodes to is some 352 KiB (64 KiB of details as a list of
/// zeros, each 2 bytes of JSON and 11 of `Struct`; a test holds it), so a
/// page is never cut below 8 events by size, and events of 64 KiB of text
/// still come 47 a page.
pub(crate) const PAGE_BYTES: usize = 3 << 20;

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
    /// Answer details as the stored JSON text (`Event.details_json`).
    pub details_json: bool,
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
        details_json: req.details_as_json,
    })
}

/// The page `plan` asks for, read from `store` with each event encoded as
/// `T`: [`EventBytes`] (details as a `Struct`) or
/// [`EventJsonBytes`](super::event_bytes::EventJsonBytes) (as JSON text).
pub(super) fn page_of<T: Decoded + Into<EventBytes>>(
    store: &Store,
    plan: &QueryPlan,
) -> Result<EncodedPage, Status> {
    let page: Page<T> = store
        .page(&plan.filter, plan.order, plan.cursor, u64::MAX, plan.limit)
        .map_err(status_of)?;
    Ok(EncodedPage::of(page, plan.fingerprint))
}

/// A `QueryResponse`, its events already encoded (`event_bytes`) on the
/// thread that read them. The generated `AuditService` (build.rs) takes it
/// where the message would be; a client cannot tell the difference.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EncodedPage {
    pub(super) events: Vec<EventBytes>,
    pub(super) next_page_token: String,
}

impl EncodedPage {
    /// The answer for `page`, its next page token bound to `fingerprint`
    /// (the query's filter and order). Only as many of its events as fit
    /// [`PAGE_BYTES`] are sent, and always the first: when the page is cut
    /// short, its token continues right after the last event sent (the seq
    /// of the last record, as `Store::page` gives it), so following the
    /// tokens returns every event once, in order. The records read past
    /// the cut are dropped (read again by the next page).
    pub(super) fn of<T: Into<EventBytes>>(page: Page<T>, fingerprint: u64) -> EncodedPage {
        let Page { records, mut next } = page;
        let mut events: Vec<EventBytes> = records.into_iter().map(Into::into).collect();
        let mut bytes = 0;
        let fit = events
            .iter()
            .take_while(|event| {
                bytes += event.len();
                bytes <= PAGE_BYTES
            })
            .count()
            .max(1);
        if fit < events.len() {
            events.truncate(fit);
            next = events.last().map(|event| event.seq());
        }
        EncodedPage {
            events,
            next_page_token: next
                .map(|seq| PageToken::encode(seq, fingerprint))
                .unwrap_or_default(),
        }
    }
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
    use crate::service::event_bytes::EventJsonBytes;
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

    /// With `details_as_json` each event decodes as the same `pb::Event`
    /// but for its details: `details` unset, and `details_json` the stored
    /// line's details text byte for byte (escapes, numbers a double cannot
    /// hold, and key order as written).
    #[test]
    fn details_as_json_answer_the_stored_text() {
        for line in event_bytes::sample_lines() {
            let record: Record = serde_json::from_str(&line).unwrap();
            let stored = crate::store::record::parse_row::<crate::store::record::RecordRef<'_>>(
                line.as_bytes(),
            )
            .unwrap()
            .details
            .to_owned();
            assert!(line.contains(&format!(r#""details":{stored},"#)), "{line}");
            let expected = pb::Event {
                details: None,
                details_json: stored,
                ..edge::event_pb(record)
            };
            let event = EventJsonBytes::from_line(line.as_bytes()).unwrap();
            let page = EncodedPage {
                events: vec![event.0],
                next_page_token: String::new(),
            };
            let wire = page.encode_to_vec();
            assert_eq!(wire.len(), page.encoded_len());
            let decoded = pb::QueryResponse::decode(&wire[..]).unwrap();
            assert_eq!(decoded.events, vec![expected]);
        }
    }

    /// A stored line of seq `seq` with `details`.
    fn line_with(seq: u64, details: &str) -> String {
        format!(
            r#"{{"seq":{seq},"id":"e-{seq}","timestamp":"2026-12-04T10:00:00.000000Z","event_type":"big","actor":"crm","caller":"svc","lead_id":"L-1","workflow":"w","details":{details},"idempotency_key":"k-{seq}","key_id":"k1","prev":"{prev}","signature":"{prev}"}}"#,
            prev = "0123456789abcdef".repeat(4),
        )
    }

    /// Events of seqs `seqs`, each with `details`.
    fn events_with(seqs: impl Iterator<Item = u64>, details: &str) -> Vec<EventBytes> {
        seqs.map(|seq| EventBytes::from_line(line_with(seq, details).as_bytes()).unwrap())
            .collect()
    }

    /// The page token's seq.
    fn token_seq(page: &EncodedPage) -> Option<u64> {
        (!page.next_page_token.is_empty())
            .then(|| PageToken::decode(&page.next_page_token, 9).unwrap())
    }

    /// 100 events of 60 KiB of details (some 6 MB) in either order: the
    /// page keeps those that fit [`PAGE_BYTES`], and its token continues
    /// after the last one kept, whether or not the page read had a next.
    #[test]
    fn a_page_past_the_byte_budget_ends_at_its_last_whole_event() {
        let details = format!(r#"{{"blob":"{}"}}"#, "x".repeat(60 << 10));
        for (seqs, next) in [
            ((1..=100).collect::<Vec<u64>>(), Some(100)),
            ((1..=100).rev().collect(), None),
        ] {
            let events = events_with(seqs.iter().copied(), &details);
            let fit = PAGE_BYTES / events[0].len();
            assert!((40..100).contains(&fit), "{fit}");
            let page = EncodedPage::of(
                Page {
                    records: events.clone(),
                    next,
                },
                9,
            );
            assert_eq!(page.events, events[..fit]);
            assert!(page.encoded_len() < 4 << 20);
            assert!(page.events.iter().map(EventBytes::len).sum::<usize>() <= PAGE_BYTES);
            assert_eq!(token_seq(&page), Some(seqs[fit - 1]));
        }
    }

    /// A page under the budget is sent whole with the token it was read
    /// with; a single event past the budget (never a legal one) is sent
    /// alone, so a page is never empty and paging always moves on.
    #[test]
    fn a_page_under_the_budget_is_whole_and_one_event_always_fits() {
        for next in [None, Some(3)] {
            let events = events_with(1..=3, r#"{"a":1}"#);
            let page = EncodedPage::of(
                Page {
                    records: events.clone(),
                    next,
                },
                9,
            );
            assert_eq!(page.events, events);
            assert_eq!(token_seq(&page), next);
        }
        let empty = EncodedPage::of(
            Page {
                records: Vec::<EventBytes>::new(),
                next: None,
            },
            9,
        );
        assert_eq!(empty, EncodedPage::default());

        let huge = format!(r#"{{"blob":"{}"}}"#, "x".repeat(PAGE_BYTES));
        let events = events_with([5, 4].into_iter(), &huge);
        let page = EncodedPage::of(
            Page {
                records: events.clone(),
                next: None,
            },
            9,
        );
        assert_eq!(page.events, events[..1]);
        assert_eq!(token_seq(&page), Some(5));
    }

    /// The largest event a client can log (64 KiB of details as JSON, as a
    /// list of zeros: 2 bytes of JSON and 11 of `Struct` each) encodes far
    /// under [`PAGE_BYTES`], so a page is cut only between events and never
    /// passes the budget; [`PAGE_BYTES`]' doc comment quotes this size.
    #[test]
    fn the_largest_legal_event_fits_a_page_many_times() {
        use crate::service::validate::MAX_DETAILS_BYTES;
        let zeros = (MAX_DETAILS_BYTES - r#"{"a":[0]}"#.len()) / 2 + 1;
        let details = format!(r#"{{"a":[{}]}}"#, vec!["0"; zeros].join(","));
        assert_eq!(details.len(), MAX_DETAILS_BYTES - 1);
        let largest = events_with(std::iter::once(u64::MAX >> 1), &details)
            .remove(0)
            .len();
        assert!(largest < 360 << 10, "{largest}");
        assert!(PAGE_BYTES / largest >= 8, "{largest}");
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
