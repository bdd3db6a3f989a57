//! Replica lag under full-speed ingest: while writers keep `LogBatch`
//! calls in flight to the leader, every node's head is sampled every
//! [`EVERY`] (GetStats over an empty time window, `nodes::head`). For each
//! follower sample: the lag in events (the leader's last sampled head less
//! the follower's) and in time (how long before the sample the leader was
//! first seen holding an event the follower still lacks; 0 when the
//! follower holds everything the leader was seen with).

use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use crate::BoxError;
use crate::nodes::{Node, head};

/// How often the heads are sampled.
pub(crate) const EVERY: Duration = Duration::from_millis(10);

/// One follower's lag samples.
pub(crate) struct Lag {
    pub(crate) node: String,
    /// Events behind, sorted.
    pub(crate) events: Vec<u64>,
    /// Time behind, sorted.
    pub(crate) times: Vec<Duration>,
}

/// Samples every node's head until `end`; `leader` is the index of the
/// leader in `nodes`.
pub(crate) async fn sample(
    nodes: &[Node],
    leader: usize,
    end: Instant,
) -> Result<Vec<Lag>, BoxError> {
    let mut channels: Vec<Channel> = Vec::new();
    for node in nodes {
        channels.push(Endpoint::from_shared(node.url.clone())?.connect().await?);
    }
    // (when answered, head) per node.
    let mut seen: Vec<Vec<(Instant, u64)>> = vec![Vec::new(); nodes.len()];
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < end {
        tick.tick().await;
        let answers = futures::future::join_all(channels.iter().map(|c| async move {
            let h = head(c).await;
            (Instant::now(), h)
        }))
        .await;
        for (i, (at, h)) in answers.into_iter().enumerate() {
            seen[i].push((at, h?));
        }
    }
    let leader_seen = &seen[leader];
    let mut lags = Vec::new();
    for (i, samples) in seen.iter().enumerate() {
        if i == leader {
            continue;
        }
        let mut events = Vec::with_capacity(samples.len());
        let mut times = Vec::with_capacity(samples.len());
        for &(at, h) in samples {
            // What the leader was last seen holding at this moment.
            let known: Vec<&(Instant, u64)> =
                leader_seen.iter().take_while(|(t, _)| *t <= at).collect();
            let leader_head = known.last().map_or(0, |(_, lh)| *lh);
            events.push(leader_head.saturating_sub(h));
            let lacking_since = known.iter().find(|(_, lh)| *lh > h).map(|(t, _)| *t);
            times.push(lacking_since.map_or(Duration::ZERO, |t| at - t));
        }
        events.sort_unstable();
        times.sort_unstable();
        lags.push(Lag {
            node: nodes[i].name.clone(),
            events,
            times,
        });
    }
    Ok(lags)
}
