//! Live fan-out for StreamEvents: history from the file, then committed
//! groups as the writer publishes them, with no gap and no duplicate.
//!
//! How a subscription stays exact: it subscribes to the writer's broadcast
//! *before* reading history up to the head it sees, so every group committed
//! after that read is in the broadcast; it tracks the next seq it owes and
//! skips what it already sent. A subscriber that falls behind (its consumer
//! is slow, the broadcast overflows) never slows the writer: it is told it
//! lagged and reads the missed range from the file before rejoining live.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::store::{Filter, Order, Page, Record, Store, StoreError};

/// How many records one history read takes from the file.
const PAGE: usize = 256;

/// What one subscription asks for.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub filter: Filter,
    /// The first seq to send (1 for the start of the log).
    pub from_seq: u64,
    /// Keep sending live events after the history.
    pub follow: bool,
}

/// Sends the events of `sub` into `tx` until the history is done (without
/// `follow`), the receiver goes away, or `cancel` fires (server shutdown).
pub(crate) async fn run(
    store: Arc<Store>,
    sub: Subscription,
    cancel: CancellationToken,
    tx: mpsc::Sender<Result<Record, StoreError>>,
) {
    let Subscription {
        filter,
        from_seq,
        follow,
    } = sub;
    let _open = store.metrics().live.open();
    let mut live = store.subscribe();
    let head = store.head();
    let mut next = from_seq.max(1);
    let out = Out {
        tx: &tx,
        cancel: &cancel,
    };
    if !catch_up(&store, &filter, &mut next, head, &out).await || !follow {
        return;
    }
    loop {
        let received = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tx.closed() => return,
            r = live.recv() => r,
        };
        match received {
            Ok(group) => {
                let (Some(first), Some(last)) = (group.first(), group.last()) else {
                    continue;
                };
                if last.seq < next {
                    continue;
                }
                if first.seq > next
                    && !catch_up(&store, &filter, &mut next, first.seq - 1, &out).await
                {
                    return;
                }
                for record in group.iter().filter(|r| r.seq >= next) {
                    if filter.matches(record) && !out.send(Ok(record.clone())).await {
                        return;
                    }
                }
                next = last.seq + 1;
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(missed, next, "subscriber lagged; reading from the file");
                store.metrics().live.lagged();
                let head = store.head();
                if !catch_up(&store, &filter, &mut next, head, &out).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The sending side of a subscription.
struct Out<'a> {
    tx: &'a mpsc::Sender<Result<Record, StoreError>>,
    cancel: &'a CancellationToken,
}

impl Out<'_> {
    /// Sends one item; false when the stream should end.
    async fn send(&self, item: Result<Record, StoreError>) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            sent = self.tx.send(item) => sent.is_ok(),
        }
    }
}

/// Sends every matching record from `*next` up to `until` from the file and
/// moves `*next` past `until`. False when the stream should end.
async fn catch_up(
    store: &Arc<Store>,
    filter: &Filter,
    next: &mut u64,
    until: u64,
    out: &Out<'_>,
) -> bool {
    let mut cursor = Some(*next - 1);
    while *next <= until {
        let reader = Arc::clone(store);
        let f = filter.clone();
        let page = tokio::task::spawn_blocking(move || {
            reader.page(&f, Order::OldestFirst, cursor, until, PAGE)
        })
        .await;
        let Page {
            records,
            next: more,
        }: Page = match page {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => {
                // Everything before a damaged segment is sent before the
                // error, so an export holds all it could read, and the error
                // says where to read on.
                if let StoreError::SegmentDamaged { first_seq, .. } = &e
                    && *first_seq > *next
                    && !Box::pin(catch_up(store, filter, next, first_seq - 1, out)).await
                {
                    return false;
                }
                out.send(Err(e)).await;
                return false;
            }
            Err(join) => {
                out.send(Err(StoreError::Read(std::io::Error::other(
                    join.to_string(),
                ))))
                .await;
                return false;
            }
        };
        for record in records {
            if !out.send(Ok(record)).await {
                return false;
            }
        }
        match more {
            Some(last) => {
                *next = last + 1;
                cursor = Some(last);
            }
            // Nothing more matches up to `until`.
            None => break,
        }
    }
    *next = (*next).max(until + 1);
    true
}
