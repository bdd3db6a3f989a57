//! Query planning: what a Query request selects, in which order, how many,
//! and where its page token resumes.

use auditlog_proto::v1 as pb;
use tonic::Status;

use super::edge::invalid;
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
