//! [`Query`]: the filter and page request of Query and StreamEvents, built
//! one condition at a time.

use crate::{Error, pb};

/// A filter and page request for [`Client::query`](crate::Client::query); the same filter serves
/// [`Client::stream`](crate::Client::stream).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub request: pb::QueryRequest,
}

impl Query {
    /// Every event, newest first, 100 per page.
    pub fn new() -> Query {
        Query::default()
    }

    /// A lead's whole timeline, oldest first, 1,000 per page. An empty
    /// `lead_id` is [`Error::EmptyLeadId`]: as a filter it would match every
    /// event.
    pub(crate) fn lead_history(lead_id: &str) -> Result<Query, Error> {
        if lead_id.trim().is_empty() {
            return Err(Error::EmptyLeadId);
        }
        Ok(Query::new().lead(lead_id).oldest_first().limit(1000))
    }

    fn filter(&mut self) -> &mut pb::EventFilter {
        self.request.filter.get_or_insert_with(Default::default)
    }

    /// Also match events of `event_type` (any of the types given).
    pub fn event_type(mut self, event_type: impl Into<String>) -> Query {
        self.filter().event_types.push(event_type.into());
        self
    }

    /// Only this lead's events.
    pub fn lead(mut self, lead_id: impl Into<String>) -> Query {
        self.filter().lead_id = lead_id.into();
        self
    }

    /// Only this workflow's events.
    pub fn workflow(mut self, workflow: impl Into<String>) -> Query {
        self.filter().workflow = workflow.into();
        self
    }

    /// Only this actor's events.
    pub fn actor(mut self, actor: impl Into<String>) -> Query {
        self.filter().actor = actor.into();
        self
    }

    /// Only events at or after this time.
    pub fn since(mut self, t: std::time::SystemTime) -> Query {
        self.filter().since = Some(t.into());
        self
    }

    /// Only events strictly before this time.
    pub fn until(mut self, t: std::time::SystemTime) -> Query {
        self.filter().until = Some(t.into());
        self
    }

    /// At most `n` events per page (1 to 1,000).
    pub fn limit(mut self, n: u32) -> Query {
        self.request.limit = n;
        self
    }

    /// Oldest first instead of newest first.
    pub fn oldest_first(mut self) -> Query {
        self.request.oldest_first = true;
        self
    }

    /// Read only once the server holds `seq` (a receipt's seq), waiting for
    /// it within the call's deadline: in cluster mode, a node's replica
    /// may not have the write another node acknowledged yet.
    pub fn min_seq(mut self, seq: u64) -> Query {
        self.request.min_seq = seq;
        self
    }

    /// Answer each event's details as the stored JSON text
    /// (`Event::details_json`) instead of a `Struct` (`Event::details`), in
    /// a query's pages and in [`Client::stream`](crate::Client::stream)'s
    /// events: the same values, cheaper for both ends.
    /// A server older than the field answers with `details`, so read
    /// whichever is set. A lead's history this way:
    /// [`Client::lead_history_as_json`](crate::Client::lead_history_as_json).
    pub fn details_as_json(mut self) -> Query {
        self.request.details_as_json = true;
        self
    }

    /// Continue after a previous page.
    pub fn page_token(mut self, token: impl Into<String>) -> Query {
        self.request.page_token = token.into();
        self
    }
}
