//! Load that races the server: [`Writers`] keep logging on connections of
//! their own until the server stops answering, and report what was
//! acknowledged and what was in flight. Use them for crash, kill and shutdown
//! tests, then check the log with `assert_whole`.

use std::time::Duration;

use auditlog_client::Client;

/// The same event for the same idempotency key, so a retry is a true retry.
pub(crate) fn keyed(key: &str) -> auditlog_client::NewEvent {
    auditlog_client::NewEvent::crm_update("LEAD-7", "hubspot", key, &["stage"]).idempotency_key(key)
}

/// Logs one [`keyed`] event per key: with `Log` for one key, `LogBatch` for
/// more.
pub(crate) async fn send(
    client: &Client,
    keys: &[String],
) -> Result<Vec<auditlog_client::pb::Receipt>, auditlog_client::Error> {
    match keys {
        [key] => Ok(vec![client.log(keyed(key)).await?]),
        _ => client.log_batch(keys.iter().map(|k| keyed(k))).await,
    }
}

/// Writers racing on connections of their own until the server stops
/// answering (recovery.rs, shutdown.rs). Each logs calls of its size (one
/// `Log`, or a `LogBatch` above 1) of [`keyed`] events with fresh keys
/// `<name>-<call>-<k>`.
pub(crate) struct Writers {
    tasks: Vec<tokio::task::JoinHandle<Written>>,
    /// Events acknowledged so far, by all writers.
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Set once the server is stopped: no writer starts another call.
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// One writer's part: what it got acknowledged, and the keys of the call it
/// was waiting on when the server stopped answering.
#[derive(Default)]
struct Written {
    acked: Vec<auditlog_client::pb::Receipt>,
    pending: Vec<String>,
}

impl Writers {
    /// Starts a writer for each `(name, events per call)`.
    pub(crate) async fn start(
        url: &str,
        writers: impl IntoIterator<Item = (String, usize)>,
    ) -> Writers {
        use std::sync::atomic::Ordering;
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (name, size) in writers {
            // A call is never repeated by the client: after the server is
            // killed its port is free, and a repeat could reach whatever
            // takes it next. The test retries what was in flight. And a
            // call that hangs (nothing has answered it in 10 s) counts as
            // in flight at the stop, well inside `finish`'s 20 s.
            let client = Client::builder()
                .node(url)
                .retry(auditlog_client::Retry {
                    attempts: 1,
                    ..Default::default()
                })
                .answer_within(Duration::from_secs(10))
                .connect()
                .await
                .unwrap();
            let count = std::sync::Arc::clone(&count);
            let stopped = std::sync::Arc::clone(&stopped);
            tasks.push(tokio::spawn(async move {
                let mut written = Written::default();
                for call in 0.. {
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    let keys: Vec<String> =
                        (0..size).map(|k| format!("{name}-{call}-{k}")).collect();
                    match send(&client, &keys).await {
                        Ok(receipts) => {
                            count.fetch_add(receipts.len(), Ordering::Relaxed);
                            written.acked.extend(receipts);
                        }
                        Err(_) => {
                            written.pending = keys;
                            break;
                        }
                    }
                }
                written
            }));
        }
        Writers {
            tasks,
            count,
            stopped,
        }
    }

    /// Waits until `n` events are acknowledged in all, failing the test
    /// after 30 s.
    pub(crate) async fn wait_for(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.count.load(std::sync::atomic::Ordering::Relaxed) < n {
            assert!(tokio::time::Instant::now() < deadline, "writers stalled");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Once the server has stopped: every writer's receipts, and the keys of
    /// each call that was in flight (to retry with [`send`]). Fails the test
    /// when a writer is still going 20 s later.
    pub(crate) async fn finish(self) -> (Vec<auditlog_client::pb::Receipt>, Vec<Vec<String>>) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut acked = Vec::new();
        let mut pending = Vec::new();
        for task in self.tasks {
            let written = tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("a writer kept going after the server stopped")
                .unwrap();
            acked.extend(written.acked);
            // A writer that saw `stopped` between calls had none in flight.
            if !written.pending.is_empty() {
                pending.push(written.pending);
            }
        }
        (acked, pending)
    }
}
