//! Live fan-out for StreamEvents: history from the file, then committed
//! groups as the writer publishes them, with no gap and no duplicate.
//!
//! How a subscription stays exact: it subscribes to the writer's broadcast
//! *before* reading history up to the head it sees, so every group committed
//! after that read is in the broadcast; it tracks the next seq it owes and
//! skips what it already sent. A subscriber that falls behind (its consumer
//! is slow, the broadcast overflows) never slows the writer: it is told it
//! lagged and reads the missed range from the file before rejoining live.
//!
//! A subscription hands its reader chunks, not events: a live group's
//! matching events, or a page read from the file, in one message each, so
//! a follower costs one channel hand-over per group rather than one per
//! event ([`Receiver`] gives them back one by one).

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::store::{Committed, Filter, Order, Page, Record, Store, StoreError};

/// How many records one history read takes from the file.
const PAGE: usize = 256;
/// How many chunks wait for a slow reader before its subscription waits
/// (and, live, falls behind the broadcast and reads from the file).
const CHUNKS: usize = 8;

/// What a subscription sends: some events, or the error that ends it.
type Chunk<F> = Result<Vec<F>, StoreError>;

/// What one subscription asks for.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub filter: Filter,
    /// The first seq to send (1 for the start of the log).
    pub from_seq: u64,
    /// Keep sending live events after the history.
    pub follow: bool,
}

/// What a subscription sends for each record: the record, or the form a
/// reader turns it into. A live record's form is asked of its group, so a
/// form that caches (the wire encoding every follower sends alike) is made
/// once for all subscribers.
pub(crate) trait Form: Send + 'static {
    /// Record `i` of a group the writer published.
    fn live(group: &Committed, i: usize) -> Self;
    /// A record read from the file.
    fn read(record: Record) -> Self;
}

impl Form for Record {
    fn live(group: &Committed, i: usize) -> Record {
        group[i].clone()
    }

    fn read(record: Record) -> Record {
        record
    }
}

/// Starts a subscription to `sub`, which runs until the history is done
/// (without `follow`), the receiver goes away, or `cancel` fires (server
/// shutdown).
pub(crate) fn spawn<F: Form>(
    store: Arc<Store>,
    sub: Subscription,
    cancel: CancellationToken,
) -> Receiver<F> {
    let (tx, rx) = mpsc::channel(CHUNKS);
    tokio::spawn(run(store, sub, cancel, tx));
    Receiver {
        rx,
        pending: Vec::new().into_iter(),
    }
}

/// The reading end of a subscription: its events one by one, then `None`
/// once it ended (after an error, if one ended it).
pub(crate) struct Receiver<F> {
    rx: mpsc::Receiver<Chunk<F>>,
    pending: std::vec::IntoIter<F>,
}

impl<F: Send + 'static> Receiver<F> {
    /// The next event. Cancel-safe: an event is taken only when returned.
    pub(crate) async fn recv(&mut self) -> Option<Result<F, StoreError>> {
        loop {
            if let Some(item) = self.pending.next() {
                return Some(Ok(item));
            }
            match self.rx.recv().await? {
                Ok(chunk) => self.pending = chunk.into_iter(),
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Whether no event is ready to be taken now.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.len() == 0 && self.rx.is_empty()
    }

    /// The events as a stream.
    pub(crate) fn into_stream(self) -> impl futures::Stream<Item = Result<F, StoreError>> + Send {
        futures::stream::unfold(self, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
    }
}

/// Sends the events of `sub` into `tx`, see [`spawn`].
async fn run<F: Form>(
    store: Arc<Store>,
    sub: Subscription,
    cancel: CancellationToken,
    tx: mpsc::Sender<Chunk<F>>,
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
                let chunk: Vec<F> = (0..group.len())
                    .filter(|&i| group[i].seq >= next && filter.matches(&group[i]))
                    .map(|i| F::live(&group, i))
                    .collect();
                if !chunk.is_empty() && !out.send(Ok(chunk)).await {
                    return;
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
struct Out<'a, F> {
    tx: &'a mpsc::Sender<Chunk<F>>,
    cancel: &'a CancellationToken,
}

impl<F> Out<'_, F> {
    /// Sends one chunk; false when the stream should end.
    async fn send(&self, item: Chunk<F>) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            sent = self.tx.send(item) => sent.is_ok(),
        }
    }
}

/// Sends every matching record from `*next` up to `until` from the file and
/// moves `*next` past `until`. False when the stream should end.
async fn catch_up<F: Form>(
    store: &Arc<Store>,
    filter: &Filter,
    next: &mut u64,
    until: u64,
    out: &Out<'_, F>,
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
        if !records.is_empty()
            && !out
                .send(Ok(records.into_iter().map(F::read).collect()))
                .await
        {
            return false;
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
