//! Failover: how long the cluster takes writes no more when its leader is
//! killed. Keyed writers loop against every node (a fresh idempotency key
//! per call, a short deadline, several writers per node so one call hung on
//! the dead leader does not hide the others); the leader is killed with
//! SIGKILL, and the failover time is from its death to the first write
//! sent after it that a surviving node acknowledges. The killed node is
//! then started again and caught up before the next repetition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditlog_proto::v1 as pb;
use pb::audit_service_client::AuditServiceClient;
use tonic::transport::Endpoint;

use crate::BoxError;
use crate::nodes::{Node, leader};

/// Writers per node.
const WRITERS_PER_NODE: usize = 4;
/// Each write's deadline: a call stuck on the dead leader is given up this
/// soon and sent again.
const CALL_DEADLINE: Duration = Duration::from_millis(300);
/// How long the writers run before the kill.
const STEADY: Duration = Duration::from_secs(1);
/// How long a failover may take before the bench gives up.
const GIVE_UP: Duration = Duration::from_secs(60);

/// One failover: who led, who took over, how long it took.
pub(crate) struct Failover {
    pub(crate) killed: String,
    pub(crate) next: String,
    pub(crate) took: Duration,
}

/// Kills the leader once under keyed writes (repetition `rep`) and brings
/// it back.
pub(crate) async fn once(
    js: &async_nats::jetstream::Context,
    nodes: &mut [Node],
    rep: usize,
) -> Result<Failover, BoxError> {
    let (killed, term) = leader(js).await?;
    let at = nodes
        .iter()
        .position(|n| n.name == killed)
        .ok_or_else(|| format!("the lease names {killed}, which is not one of the nodes"))?;
    let stop = Arc::new(AtomicBool::new(false));
    // When the leader died, and the first acknowledgement of a write sent
    // after that.
    let died: Arc<Mutex<Option<Instant>>> = Arc::default();
    let first_ack: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut writers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let channel = Endpoint::from_shared(node.url.clone())?
            .connect_timeout(CALL_DEADLINE)
            .timeout(CALL_DEADLINE)
            .connect_lazy();
        for w in 0..WRITERS_PER_NODE {
            let client = AuditServiceClient::new(channel.clone());
            let (stop, died, first_ack) =
                (Arc::clone(&stop), Arc::clone(&died), Arc::clone(&first_ack));
            writers.push(tokio::spawn(async move {
                write_loop(
                    client,
                    format!("failover-{rep}-{i}-{w}"),
                    stop,
                    died,
                    first_ack,
                )
                .await
            }));
        }
    }
    tokio::time::sleep(STEADY).await;
    nodes[at].kill9();
    *lock(&died) = Some(Instant::now());
    let deadline = Instant::now() + GIVE_UP;
    let took = loop {
        let acked = *lock(&first_ack);
        let died_at = *lock(&died);
        if let (Some(ack), Some(died_at)) = (acked, died_at) {
            break ack - died_at;
        }
        if Instant::now() > deadline {
            stop.store(true, Ordering::Release);
            return Err(format!("no write acknowledged {GIVE_UP:?} after killing {killed}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.store(true, Ordering::Release);
    for writer in writers {
        writer.await?;
    }
    let next = wait_for_new_leader(js, &killed, term).await?;
    nodes[at].restart().await?;
    catch_up(nodes).await?;
    Ok(Failover { killed, next, took })
}

/// Logs keyed events through `client` until `stop`, noting the first
/// acknowledgement of a call sent after the leader `died`.
async fn write_loop(
    mut client: AuditServiceClient<tonic::transport::Channel>,
    prefix: String,
    stop: Arc<AtomicBool>,
    died: Arc<Mutex<Option<Instant>>>,
    first_ack: Arc<Mutex<Option<Instant>>>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let sent = Instant::now();
        let event = pb::EventInput {
            event_type: "crm_update".into(),
            actor: "failover-bench".into(),
            idempotency_key: format!("{prefix}-{n}"),
            ..Default::default()
        };
        let request = pb::LogRequest {
            event: Some(event),
            with_proof: false,
        };
        match client.log(request).await {
            Ok(_) => {
                let after_death = lock(&died).is_some_and(|d| sent >= d);
                if after_death {
                    let mut first = lock(&first_ack);
                    if first.is_none() {
                        *first = Some(Instant::now());
                    }
                }
            }
            // Refused at once (no leader yet, connection refused): not a
            // tight loop.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The node that took the lease from `killed` (term above `term`).
async fn wait_for_new_leader(
    js: &async_nats::jetstream::Context,
    killed: &str,
    term: u64,
) -> Result<String, BoxError> {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        match leader(js).await {
            Ok((node, t)) if node != killed && t > term => return Ok(node),
            _ if Instant::now() > deadline => {
                return Err(format!("no node took the lease from {killed}").into());
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Waits until every node holds as much as the furthest one.
pub(crate) async fn catch_up(nodes: &[Node]) -> Result<(), BoxError> {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        let mut heads = Vec::new();
        for node in nodes {
            heads.push(node.head().await.unwrap_or(0));
        }
        let top = heads.iter().copied().max().unwrap_or(0);
        if heads.iter().all(|&h| h == top) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the nodes did not catch up: heads {heads:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
