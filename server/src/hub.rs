//! Live fan-out for StreamEvents: history from the file, then committed
//! groups as the writer publishes them, with no gap and no duplicate.
//!
//! How a subscription stays exact: each time it joins the writer's
//! broadcast it subscribes *before* reading from the file up to the head it
//! sees, so every group committed after that read is in the broadcast; it
//! tracks the next seq it owes and skips what it already sent. A
//! subscriber that falls behind never slows the writer, nor keeps the
//! writer's groups alive: when the broadcast overflows, or its reader stops
//! taking chunks, it leaves the broadcast and joins it again as above,
//! reading the missed range from the file. The history before the first
//! join is read unsubscribed, so a long history read pins nothing either.
//!
//! A form may not be had from a live group (a group whose lines do not hold
//! its records gives no stored line): the subscription then reads that
//! group's range from the file, as it would after falling behind.
//!
//! A subscription hands its reader chunks, not events: a live group's
//! matching events, or a page read from the file, in one message each, so
//! a follower costs one channel hand-over per group rather than one per
//! event ([`Receiver`] gives them back one by one).

use std::sync::Arc;

use futures::StreamExt as _;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::store::{Committed, Decoded, Filter, Order, Page, Record, Store, StoreError};

/// How many records one history read takes from the file.
const PAGE: usize = 256;
/// The most bytes of stored lines one history read takes (always one
/// record): large events make small pages, so a subscription whose reader
/// stops holds at most [`CHUNKS`] of these, not [`CHUNKS`] pages of 3 MiB.
const PAGE_BYTES: u64 = 128 << 10;
/// How many chunks wait for a slow reader before its subscription waits
/// (and, live, falls behind the broadcast and reads from the file).
const CHUNKS: usize = 8;
/// The most bytes of chunks all subscriptions together hold for their
/// readers: past it, a subscription waits for readers to take theirs
/// (live, it leaves the broadcast and reads from the file later), so many
/// streams whose readers never read cannot exhaust the server's memory.
pub(crate) const BUDGET_BYTES: usize = 256 << 20;

/// What a subscription sends: some events, or the error that ends it;
/// events hold their part of the [`Budget`] until their reader takes them.
type Chunk<F> = (Result<Vec<F>, StoreError>, Option<OwnedSemaphorePermit>);

/// The bytes of chunks waiting for readers, across subscriptions, as KiB
/// permits ([`BUDGET_BYTES`] for the server's streams).
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    permits: Arc<Semaphore>,
    total: u32,
}

impl Budget {
    pub(crate) fn new(bytes: usize) -> Budget {
        let total = u32::try_from((bytes >> 10).max(1)).unwrap_or(u32::MAX >> 3);
        Budget {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// The one budget of every subscription in this process.
    fn shared() -> Budget {
        static SHARED: std::sync::OnceLock<Budget> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| Budget::new(BUDGET_BYTES)).clone()
    }

    /// The permits `bytes` take: one per KiB begun, never more than the
    /// whole budget (so a chunk larger than it still goes, alone).
    fn permits_for(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(1024).max(1))
            .unwrap_or(u32::MAX)
            .min(self.total)
    }

    /// The bytes lent to chunks now, to the KiB.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        (self.total as usize - self.permits.available_permits()) << 10
    }

    /// `bytes` worth of permits, waiting until readers give enough back (`None`
    /// only if the semaphore were closed, which it never is).
    async fn lend(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let n = self.permits_for(bytes);
        Arc::clone(&self.permits).acquire_many_owned(n).await.ok()
    }

    /// Permits for `bytes` if they are there now.
    fn try_lend(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let n = self.permits_for(bytes);
        Arc::clone(&self.permits).try_acquire_many_owned(n).ok()
    }
}

/// The bytes a chunk holds, as its form tells them.
fn bytes_of<F: Form>(chunk: &[F]) -> usize {
    chunk.iter().map(F::bytes).sum()
}

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
pub(crate) trait Form: Send + Sized + 'static {
    /// What a line read from the file is decoded into.
    type Row: Decoded;
    /// Record `i` of a group the writer published; `None` when the group
    /// cannot give it (the subscription then reads the group from the log).
    fn live(group: &Committed, i: usize) -> Option<Self>;
    /// A line read from the file.
    fn read(row: Self::Row) -> Self;
    /// About how many bytes of memory this holds, for the [`Budget`].
    fn bytes(&self) -> usize;
    /// What a subscription keeps of `chunk`, made of `group`'s records,
    /// while its reader has not taken it: by default the chunk as it is.
    /// A form that borrows the group's memory copies out a chunk that holds
    /// little of it, so a slow reader with a narrow filter pins no more than
    /// it is sent.
    fn keep(chunk: Vec<Self>, group: &Committed) -> Vec<Self> {
        let _ = group;
        chunk
    }
}

impl Form for Record {
    type Row = Record;

    fn live(group: &Committed, i: usize) -> Option<Record> {
        Some(group[i].clone())
    }

    fn read(record: Record) -> Record {
        record
    }

    fn bytes(&self) -> usize {
        // The details and the strings beside them, and their headers.
        self.details.as_str().len() + 512
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
    spawn_within(store, sub, cancel, Budget::shared())
}

/// [`spawn`], its chunks lent bytes from `budget`.
pub(crate) fn spawn_within<F: Form>(
    store: Arc<Store>,
    sub: Subscription,
    cancel: CancellationToken,
    budget: Budget,
) -> Receiver<F> {
    let (tx, rx) = mpsc::channel(CHUNKS);
    let taken = Arc::new(Notify::new());
    tokio::spawn(run(store, sub, cancel, tx, budget, Arc::clone(&taken)));
    Receiver {
        rx,
        taken,
        pending: Vec::new().into_iter(),
        _lent: None,
    }
}

/// The reading end of a subscription: its events one by one, then `None`
/// once it ended (after an error, if one ended it).
pub(crate) struct Receiver<F> {
    rx: mpsc::Receiver<Chunk<F>>,
    /// Told each time a chunk is taken, so a subscription waiting for the
    /// budget sees its reader has taken everything.
    taken: Arc<Notify>,
    pending: std::vec::IntoIter<F>,
    /// What `pending` was lent, given back with the next chunk.
    _lent: Option<OwnedSemaphorePermit>,
}

impl<F: Send + 'static> Receiver<F> {
    /// The next event. Cancel-safe: an event is taken only when returned.
    pub(crate) async fn recv(&mut self) -> Option<Result<F, StoreError>> {
        loop {
            if let Some(item) = self.pending.next() {
                return Some(Ok(item));
            }
            let (chunk, lent) = self.rx.recv().await?;
            self.taken.notify_one();
            self._lent = lent;
            match chunk {
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

    /// The events as a stream of the chunks they came in: a live group's
    /// matching events, or a page read from the file (never empty).
    pub(crate) fn into_chunks(
        mut self,
    ) -> impl futures::Stream<Item = Result<Vec<F>, StoreError>> + Send {
        let pending: Vec<F> = std::mem::take(&mut self.pending).collect();
        let first = (!pending.is_empty()).then_some(Ok(pending));
        // A chunk's permits go back as it is handed on.
        let rest = futures::stream::unfold((self.rx, self.taken), |(mut rx, taken)| async move {
            let (chunk, _lent) = rx.recv().await?;
            taken.notify_one();
            Some((chunk, (rx, taken)))
        });
        futures::stream::iter(first).chain(rest)
    }
}

/// Sends the events of `sub` into `tx`, see [`spawn`].
///
/// A subscription holds the writer's broadcast only while its reader keeps
/// up: the history is read before it subscribes, and when its reader stops
/// taking chunks it lets go of the broadcast, waits, and reads what it
/// missed from the file once the reader takes again. So a reader that
/// never reads pins no more than its own channel, however much is written
/// meanwhile (the broadcast keeps a group until every receiver has seen it).
async fn run<F: Form>(
    store: Arc<Store>,
    sub: Subscription,
    cancel: CancellationToken,
    tx: mpsc::Sender<Chunk<F>>,
    budget: Budget,
    taken: Arc<Notify>,
) {
    let Subscription {
        filter,
        from_seq,
        follow,
    } = sub;
    let _open = store.metrics().live.open();
    let mut next = from_seq.max(1);
    let out = Out {
        tx: &tx,
        cancel: &cancel,
        budget: &budget,
        taken: &taken,
    };
    if !catch_up(&store, &filter, &mut next, store.head(), &out).await || !follow {
        return;
    }
    loop {
        // Subscribed before the head is read: every group committed after
        // that read arrives live, and what came before is read from the file.
        let mut live = store.subscribe();
        if !catch_up(&store, &filter, &mut next, store.head(), &out).await {
            return;
        }
        loop {
            let received = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tx.closed() => return,
                r = live.recv() => r,
            };
            let group = match received {
                Ok(group) => group,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, next, "subscriber lagged; reading from the file");
                    store.metrics().live.lagged();
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let (Some(first), Some(last)) = (group.first(), group.last()) else {
                continue;
            };
            if last.seq < next {
                continue;
            }
            if first.seq > next && !catch_up(&store, &filter, &mut next, first.seq - 1, &out).await
            {
                return;
            }
            let chunk: Option<Vec<F>> = (0..group.len())
                .filter(|&i| group[i].seq >= next && filter.matches(&group[i]))
                .map(|i| F::live(&group, i))
                .collect();
            let Some(chunk) = chunk else {
                // The group cannot give this form: it is indexed (published
                // after), so the log gives it instead.
                if !catch_up(&store, &filter, &mut next, last.seq, &out).await {
                    return;
                }
                continue;
            };
            next = last.seq + 1;
            if chunk.is_empty() {
                continue;
            }
            let chunk = F::keep(chunk, &group);
            let Some(lent) = budget.try_lend(bytes_of(&chunk)) else {
                // Readers hold the whole budget: wait for it off the
                // broadcast, as for a reader that is behind.
                tracing::debug!(next, "stream budget spent; leaving the broadcast");
                store.metrics().live.lagged();
                drop((live, group));
                if !out.send(Ok(chunk)).await {
                    return;
                }
                break;
            };
            match tx.try_send((Ok(chunk), Some(lent))) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full((chunk, _))) => {
                    // The reader is behind: stop holding live groups for it.
                    tracing::debug!(next, "subscriber's reader is behind; leaving the broadcast");
                    store.metrics().live.lagged();
                    drop((live, group));
                    if !out.send(chunk).await {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// The sending side of a subscription.
struct Out<'a, F> {
    tx: &'a mpsc::Sender<Chunk<F>>,
    cancel: &'a CancellationToken,
    budget: &'a Budget,
    taken: &'a Notify,
}

impl<F: Form> Out<'_, F> {
    /// Sends one chunk, once the budget lends it its bytes; false when the
    /// stream should end. A chunk for a reader that has taken everything
    /// goes at once, lent or not, also when the reader takes its last chunk
    /// while this one waits for the budget: readers who read always get on,
    /// however many streams that do not read hold the budget (which bounds
    /// the memory at the budget plus a chunk per stream). Before that last
    /// case was seen to, a reader a little slower than its subscription
    /// waited as long as the streams that did not read.
    async fn send(&self, item: Result<Vec<F>, StoreError>) -> bool {
        let lent = match &item {
            Ok(chunk) => {
                let bytes = bytes_of(chunk);
                loop {
                    if self.tx.capacity() == self.tx.max_capacity() {
                        break self.budget.try_lend(bytes);
                    }
                    tokio::select! {
                        _ = self.cancel.cancelled() => return false,
                        _ = self.tx.closed() => return false,
                        lent = self.budget.lend(bytes) => match lent {
                            Some(lent) => break Some(lent),
                            None => return false,
                        },
                        () = self.taken.notified() => {}
                    }
                }
            }
            Err(_) => None,
        };
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            sent = self.tx.send((item, lent)) => sent.is_ok(),
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
            reader.page_within(&f, Order::OldestFirst, cursor, until, PAGE, PAGE_BYTES)
        })
        .await;
        let Page {
            records,
            next: more,
        }: Page<F::Row> = match page {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => {
                // Everything before a damaged segment or record is sent
                // before the error, so an export holds all it could read,
                // and the error says where to read on.
                let damaged = match &e {
                    StoreError::SegmentDamaged { first_seq, .. } => Some(*first_seq),
                    StoreError::Corrupt { seq, .. } => Some(*seq),
                    _ => None,
                };
                if let Some(at) = damaged
                    && at > *next
                    && !Box::pin(catch_up(store, filter, next, at - 1, out)).await
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::keys::Keyring;
    use crate::store::{NewEvent, StoreConfig};

    /// A store in `dir`, and a subscription to all of it from the start,
    /// live.
    fn store_and_follow(dir: &std::path::Path) -> (Arc<Store>, Subscription) {
        let config = StoreConfig::for_test(dir, false);
        let store = Arc::new(Store::open(config, Keyring::new("k1", vec![5; 32])).unwrap());
        let sub = Subscription {
            filter: Filter::default(),
            from_seq: 1,
            follow: true,
        };
        (store, sub)
    }

    /// A form no live group gives (as a group whose lines do not match
    /// its records gives no stored line): read from the log instead.
    struct FromLog(u64);

    impl Form for FromLog {
        type Row = Record;

        fn live(_: &Committed, _: usize) -> Option<FromLog> {
            None
        }

        fn read(record: Record) -> FromLog {
            FromLog(record.seq)
        }

        fn bytes(&self) -> usize {
            8
        }
    }

    /// A live group that cannot give a follower's form is read from the
    /// log: every event still arrives, once, in order.
    #[tokio::test]
    async fn a_group_that_cannot_give_the_form_is_read_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (store, sub) = store_and_follow(dir.path());
        let mut events = spawn::<FromLog>(Arc::clone(&store), sub, CancellationToken::new());
        for n in 0..5 {
            let group = (0..3)
                .map(|i| NewEvent::for_test(None, serde_json::json!({"n": n, "i": i})))
                .collect();
            store.append(group).await.unwrap();
            // Live, not only history: each group after the follower joined.
            for seq in n * 3 + 1..=n * 3 + 3 {
                let got = tokio::time::timeout(Duration::from_secs(10), events.recv())
                    .await
                    .expect("the subscription stalled")
                    .expect("the subscription ended")
                    .unwrap();
                assert_eq!(got.0, seq);
            }
        }
    }

    /// Subscriptions whose readers take nothing wait once they hold the
    /// budget, and give it back when they go; a reader that reads gets
    /// every event meanwhile.
    #[tokio::test]
    async fn readers_that_take_nothing_hold_the_budget_and_a_reader_that_reads_gets_on() {
        let dir = tempfile::tempdir().unwrap();
        let (store, sub) = store_and_follow(dir.path());
        for n in 0..20 {
            let group = (0..10)
                .map(|i| {
                    let pad = "x".repeat(8000);
                    NewEvent::for_test(None, serde_json::json!({"n": n, "i": i, "pad": pad}))
                })
                .collect();
            store.append(group).await.unwrap();
        }
        let budget = Budget::new(256 << 10);
        let stalled: Vec<Receiver<Record>> = (0..5)
            .map(|_| {
                let cancel = CancellationToken::new();
                spawn_within(Arc::clone(&store), sub.clone(), cancel, budget.clone())
            })
            .collect();
        // They fill the budget (8.5 KiB a record, a few records a chunk)
        // and wait: far less than the 8 pages each would hold without it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while budget.held_bytes() < 200 << 10 {
            assert!(
                Instant::now() < deadline,
                "only {} bytes lent",
                budget.held_bytes()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut reader = spawn_within::<Record>(
            Arc::clone(&store),
            sub.clone(),
            CancellationToken::new(),
            budget.clone(),
        );
        // A reader a little slower than its subscription: the second chunk
        // finds the first still there and waits for the budget; it must go
        // once the reader has taken the first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for seq in 1..=200 {
            let record = tokio::time::timeout(Duration::from_secs(10), reader.recv())
                .await
                .expect("a reader that reads was held up by those that do not")
                .expect("the subscription ended")
                .unwrap();
            assert_eq!(record.seq, seq);
        }
        drop((stalled, reader));
        let deadline = Instant::now() + Duration::from_secs(10);
        while budget.held_bytes() > 0 {
            assert!(
                Instant::now() < deadline,
                "{} bytes still lent after every reader went",
                budget.held_bytes()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A follower whose reader takes nothing lets go of the broadcast, so
    /// the writer's groups are freed while it waits, and once it reads it
    /// still gets every event, in order, from the file.
    #[tokio::test]
    async fn a_reader_that_takes_nothing_pins_no_group_and_misses_nothing() {
        const GROUPS: u64 = 40;
        let dir = tempfile::tempdir().unwrap();
        let (store, sub) = store_and_follow(dir.path());
        let mut events = spawn::<Record>(Arc::clone(&store), sub, CancellationToken::new());
        for n in 0..GROUPS {
            let group = (0..3)
                .map(|i| NewEvent::for_test(None, serde_json::json!({"n": n, "i": i})))
                .collect();
            store.append(group).await.unwrap();
        }
        // More groups than the reader's channel holds: the subscription
        // must have left the broadcast, which then keeps nothing.
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.live_backlog() > 0 {
            assert!(
                Instant::now() < deadline,
                "{} groups kept for a reader that takes nothing",
                store.live_backlog()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for seq in 1..=GROUPS * 3 {
            let record = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("the subscription stalled")
                .expect("the subscription ended")
                .unwrap();
            assert_eq!(record.seq, seq);
        }
    }
}
