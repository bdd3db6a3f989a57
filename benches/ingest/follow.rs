//! The followers scenario of the ingest bench: `LogBatch` 100 with 8 in
//! flight against the real server, alone and with 10 live followers
//! (`StreamEvents` from the head on, `follow = true`, each on a connection of
//! its own), alternating round by round. It reports the writers' throughput
//! both ways and whether every follower kept up: received every event written
//! while it followed, in seq order with no gap, and how far behind the
//! writer's timestamp it ever was.
//!
//! A follower decodes only each event's seq and timestamp (prost skips the
//! rest without building it): the followers share the machine with the
//! server, and decoding every `details` ten times over would measure the
//! bench's own clients rather than what following costs the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use auditlog_proto::v1 as pb;
use pb::audit_service_client::AuditServiceClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};

use crate::{BATCH_SIZE, BoxError, Measurement, Requests, Scenario, Settings, measure};

/// Live followers during the second half of each round.
const FOLLOWERS: usize = 10;
/// How long the followers may take to reach the head once the writers stop.
const CATCH_UP: Duration = Duration::from_secs(30);

const SHAPE: Scenario = Scenario {
    key: "follow",
    label: "LogBatch 100, 8 in flight",
    events_per_call: BATCH_SIZE,
    in_flight: 8,
};

/// A `StreamEventsResponse` as a follower reads it.
#[derive(Clone, PartialEq, prost::Message)]
struct Followed {
    #[prost(message, optional, tag = "1")]
    event: Option<EventHead>,
}

/// The fields of an `Event` a follower checks.
#[derive(Clone, PartialEq, prost::Message)]
struct EventHead {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(message, optional, tag = "3")]
    timestamp: Option<prost_types::Timestamp>,
}

/// What one follower saw.
#[derive(Default)]
struct Seen {
    received: u64,
    /// Events that did not follow the previous one's seq.
    gaps: u64,
    max_lag: Duration,
    error: Option<String>,
}

/// The writers alone and with followers, over every round.
pub(crate) struct FollowReport {
    alone: Measurement,
    followed: Measurement,
    followers: Vec<Seen>,
    /// Events written while the followers followed (what each should get).
    expected: u64,
}

/// Runs the scenario against the real server at `url` (whose callers use
/// `channels`).
pub(crate) async fn run(
    url: &str,
    channels: &[Channel],
    requests: &Arc<Requests>,
    settings: &Settings,
) -> Result<FollowReport, BoxError> {
    let mut report = FollowReport {
        alone: Measurement::default(),
        followed: Measurement::default(),
        followers: (0..FOLLOWERS).map(|_| Seen::default()).collect(),
        expected: 0,
    };
    let endpoint = Endpoint::from_shared(url.to_owned())?;
    let mut stats = AuditServiceClient::new(channels[0].clone());
    for round in 0..settings.rounds {
        for with_followers in if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        } {
            if !with_followers {
                report
                    .alone
                    .absorb(measure(channels, &SHAPE, requests, settings).await?);
                continue;
            }
            let head = head_seq(&mut stats).await?;
            let (stop, stopped) = watch::channel(false);
            let mut tasks = Vec::with_capacity(FOLLOWERS);
            let mut progress = Vec::with_capacity(FOLLOWERS);
            for _ in 0..FOLLOWERS {
                let last = Arc::new(AtomicU64::new(head));
                let client = Grpc::new(endpoint.connect().await?);
                tasks.push(follow(client, head, Arc::clone(&last), stopped.clone()));
                progress.push(last);
            }
            report
                .followed
                .absorb(measure(channels, &SHAPE, requests, settings).await?);
            let end = head_seq(&mut stats).await?;
            report.expected += end - head;
            let deadline = Instant::now() + CATCH_UP;
            while Instant::now() < deadline
                && progress.iter().any(|p| p.load(Ordering::Relaxed) < end)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = stop.send(true);
            for (task, total) in tasks.into_iter().zip(&mut report.followers) {
                let seen = task.await?;
                total.received += seen.received;
                total.gaps += seen.gaps;
                total.max_lag = total.max_lag.max(seen.max_lag);
                total.error = seen.error.or(total.error.take());
            }
        }
    }
    report.alone.latencies.sort_unstable();
    report.followed.latencies.sort_unstable();
    Ok(report)
}

async fn head_seq(client: &mut AuditServiceClient<Channel>) -> Result<u64, BoxError> {
    Ok(client
        .get_stats(pb::GetStatsRequest::default())
        .await?
        .into_inner()
        .head_seq)
}

/// One follower: every event after `head`, live, until `stop`.
fn follow(
    mut client: Grpc<Channel>,
    head: u64,
    last: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut seen = Seen::default();
        let request = pb::StreamEventsRequest {
            filter: None,
            from_seq: head + 1,
            follow: true,
            ..Default::default()
        };
        let path = http::uri::PathAndQuery::from_static("/auditlog.v1.AuditService/StreamEvents");
        let codec = tonic_prost::ProstCodec::<pb::StreamEventsRequest, Followed>::default();
        let response = match client.ready().await {
            Ok(()) => {
                client
                    .server_streaming(tonic::Request::new(request), path, codec)
                    .await
            }
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
        };
        let mut stream = match response {
            Ok(response) => response.into_inner(),
            Err(status) => {
                seen.error = Some(status.message().to_owned());
                return seen;
            }
        };
        let mut expected = head + 1;
        loop {
            let message = tokio::select! {
                _ = stop.changed() => break,
                message = stream.message() => message,
            };
            let event = match message {
                Ok(Some(response)) => response.event.unwrap_or_default(),
                Ok(None) => break,
                Err(status) => {
                    seen.error = Some(status.message().to_owned());
                    break;
                }
            };
            if event.seq != expected {
                seen.gaps += 1;
            }
            expected = event.seq + 1;
            seen.received += 1;
            if let Some(t) = event.timestamp {
                let stamped =
                    UNIX_EPOCH + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
                if let Ok(lag) = SystemTime::now().duration_since(stamped) {
                    seen.max_lag = seen.max_lag.max(lag);
                }
            }
            last.store(event.seq, Ordering::Relaxed);
        }
        seen
    })
}

impl FollowReport {
    pub(crate) fn print(&self) {
        let alone = self.alone.events_per_sec();
        let followed = self.followed.events_per_sec();
        println!();
        println!(
            "{} with {FOLLOWERS} live followers (StreamEvents from the head, follow), \
             auditlog only:",
            SHAPE.label
        );
        println!(
            "  writers alone:          {alone:>9.0} events/s  p50 {:.3} ms  p99 {:.3} ms",
            ms(self.alone.percentile(50.0)),
            ms(self.alone.percentile(99.0))
        );
        println!(
            "  writers with followers: {followed:>9.0} events/s  p50 {:.3} ms  p99 {:.3} ms  \
             ({:.2} of alone)",
            ms(self.followed.percentile(50.0)),
            ms(self.followed.percentile(99.0)),
            followed / alone.max(1e-9)
        );
        // On a machine of few cores the followers' clients take CPU from
        // the server: what following costs the server is its own CPU per
        // event written, alone and followed.
        let per_event = |m: &Measurement| {
            m.cpu.map(|cpu| {
                let per = |secs: f64| secs * 1e6 / m.events.max(1) as f64;
                (per((cpu.own - cpu.client).max(0.0)), per(cpu.client))
            })
        };
        if let (Some((srv_alone, cli_alone)), Some((srv_followed, cli_followed))) =
            (per_event(&self.alone), per_event(&self.followed))
        {
            println!(
                "  server CPU per event written: {srv_alone:.1} us alone, {srv_followed:.1} us \
                 followed ({:+.1} us, {:.2} of alone); clients' (writers, followers): \
                 {cli_alone:.1} / {cli_followed:.1} us",
                srv_followed - srv_alone,
                srv_followed / srv_alone.max(1e-9)
            );
        }
        let kept_up = self
            .followers
            .iter()
            .filter(|s| s.received == self.expected && s.gaps == 0 && s.error.is_none())
            .count();
        let max_lag = self.followers.iter().map(|s| s.max_lag).max();
        println!(
            "  followers that kept up: {kept_up} of {FOLLOWERS} (every one of the {} events \
             written while following, in seq order); max lag {:.1} ms (receipt - the \
             record's timestamp)",
            self.expected,
            ms(max_lag.unwrap_or_default())
        );
        for (i, s) in self.followers.iter().enumerate() {
            if s.received != self.expected || s.gaps > 0 || s.error.is_some() {
                println!(
                    "  follower {i}: {} of {} events, {} gaps{}",
                    s.received,
                    self.expected,
                    s.gaps,
                    s.error
                        .as_deref()
                        .map(|e| format!(", ended with: {e}"))
                        .unwrap_or_default()
                );
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
