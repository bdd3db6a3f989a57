//! The followers scenario of the ingest bench: `LogBatch` 100 with 8 in
//! flight against the real server, alone and with 10 live followers
//! (`StreamEvents` from the head on, `follow = true`, each on a connection of
//! its own), once following events and once following stored lines
//! (`stored_lines`), the three rotating round by round. It reports the
//! writers' throughput each way and whether every follower kept up:
//! received every event written while it followed, in seq order with no
//! gap, and how far behind the writer's timestamp it ever was.
//!
//! A follower of events decodes only each event's seq and timestamp (prost
//! skips the rest without building it); a follower of stored lines reads
//! each line's seq from its head and the timestamp of the last line of each
//! message. The followers share the machine with the server, and decoding
//! every `details` ten times over would measure the bench's own clients
//! rather than what following costs the server.

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

/// Live followers during the followed parts of each round.
const FOLLOWERS: usize = 10;
/// How long the followers may take to reach the head once the writers stop.
const CATCH_UP: Duration = Duration::from_secs(30);

const SHAPE: Scenario = Scenario {
    key: "follow",
    label: "LogBatch 100, 8 in flight",
    events_per_call: BATCH_SIZE,
    in_flight: 8,
};

/// A `StreamEventsResponse` as a follower of events reads it.
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

/// A `StreamEventsResponse` as a follower of stored lines reads it: the
/// lines as slices of the message, not copies.
#[derive(Clone, PartialEq, prost::Message)]
struct FollowedLines {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    lines: Vec<bytes::Bytes>,
}

/// What the followers ask for.
#[derive(Clone, Copy, PartialEq)]
enum Form {
    Events,
    Lines,
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

/// The writers with one form of followers, over every round.
#[derive(Default)]
struct Followers {
    writers: Measurement,
    seen: Vec<Seen>,
    /// Events written while the followers followed (what each should get).
    expected: u64,
}

/// The writers alone and with each form of followers, over every round.
pub(crate) struct FollowReport {
    alone: Measurement,
    events: Followers,
    lines: Followers,
}

/// Runs the scenario against the real server at `url` (whose callers use
/// `channels`).
pub(crate) async fn run(
    url: &str,
    channels: &[Channel],
    requests: &Arc<Requests>,
    settings: &Settings,
) -> Result<FollowReport, BoxError> {
    let fresh = || Followers {
        seen: (0..FOLLOWERS).map(|_| Seen::default()).collect(),
        ..Followers::default()
    };
    let mut report = FollowReport {
        alone: Measurement::default(),
        events: fresh(),
        lines: fresh(),
    };
    let endpoint = Endpoint::from_shared(url.to_owned())?;
    let mut stats = AuditServiceClient::new(channels[0].clone());
    let order = [None, Some(Form::Events), Some(Form::Lines)];
    for round in 0..settings.rounds as usize {
        for k in 0..order.len() {
            let Some(form) = order[(round + k) % order.len()] else {
                report
                    .alone
                    .absorb(measure(channels, &SHAPE, requests, settings).await?);
                continue;
            };
            let total = match form {
                Form::Events => &mut report.events,
                Form::Lines => &mut report.lines,
            };
            let head = head_seq(&mut stats).await?;
            let (stop, stopped) = watch::channel(false);
            let mut tasks = Vec::with_capacity(FOLLOWERS);
            let mut progress = Vec::with_capacity(FOLLOWERS);
            for _ in 0..FOLLOWERS {
                let last = Arc::new(AtomicU64::new(head));
                let client = Grpc::new(endpoint.connect().await?);
                tasks.push(follow(
                    client,
                    form,
                    head,
                    Arc::clone(&last),
                    stopped.clone(),
                ));
                progress.push(last);
            }
            total
                .writers
                .absorb(measure(channels, &SHAPE, requests, settings).await?);
            let end = head_seq(&mut stats).await?;
            total.expected += end - head;
            let deadline = Instant::now() + CATCH_UP;
            while Instant::now() < deadline
                && progress.iter().any(|p| p.load(Ordering::Relaxed) < end)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = stop.send(true);
            for (task, total) in tasks.into_iter().zip(&mut total.seen) {
                let seen = task.await?;
                total.received += seen.received;
                total.gaps += seen.gaps;
                total.max_lag = total.max_lag.max(seen.max_lag);
                total.error = seen.error.or(total.error.take());
            }
        }
    }
    for m in [
        &mut report.alone,
        &mut report.events.writers,
        &mut report.lines.writers,
    ] {
        m.latencies.sort_unstable();
    }
    Ok(report)
}

async fn head_seq(client: &mut AuditServiceClient<Channel>) -> Result<u64, BoxError> {
    Ok(client
        .get_stats(pb::GetStatsRequest::default())
        .await?
        .into_inner()
        .head_seq)
}

/// One follower: every event after `head`, live, in `form`, until `stop`.
fn follow(
    mut client: Grpc<Channel>,
    form: Form,
    head: u64,
    last: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut seen = Seen::default();
        let request = pb::StreamEventsRequest {
            from_seq: head + 1,
            follow: true,
            stored_lines: form == Form::Lines,
            ..Default::default()
        };
        let mut expected = head + 1;
        let lagged = |stamped: SystemTime, seen: &mut Seen| {
            if let Ok(lag) = SystemTime::now().duration_since(stamped) {
                seen.max_lag = seen.max_lag.max(lag);
            }
        };
        match form {
            Form::Events => {
                let Some(mut stream) = open::<Followed>(&mut client, request, &mut seen).await
                else {
                    return seen;
                };
                while let Some(message) = next(&mut stream, &mut stop, &mut seen).await {
                    let event = message.event.unwrap_or_default();
                    saw(event.seq, &mut expected, &mut seen);
                    if let Some(t) = event.timestamp {
                        let stamped = UNIX_EPOCH
                            + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
                        lagged(stamped, &mut seen);
                    }
                    last.store(event.seq, Ordering::Relaxed);
                }
            }
            Form::Lines => {
                let Some(mut stream) = open::<FollowedLines>(&mut client, request, &mut seen).await
                else {
                    return seen;
                };
                while let Some(message) = next(&mut stream, &mut stop, &mut seen).await {
                    for line in &message.lines {
                        saw(seq_of(line).unwrap_or(0), &mut expected, &mut seen);
                    }
                    if let Some(stamped) = message.lines.last().and_then(|l| timestamp_of(l)) {
                        lagged(stamped, &mut seen);
                    }
                    last.store(expected - 1, Ordering::Relaxed);
                }
            }
        }
        seen
    })
}

/// Counts event `seq`, the next one expected or a gap.
fn saw(seq: u64, expected: &mut u64, seen: &mut Seen) {
    if seq != *expected {
        seen.gaps += 1;
    }
    *expected = seq + 1;
    seen.received += 1;
}

/// Opens the follower's stream, decoding each message as `M`; `None` (the
/// failure noted in `seen`) if it cannot.
async fn open<M: prost::Message + Default + Send + 'static>(
    client: &mut Grpc<Channel>,
    request: pb::StreamEventsRequest,
    seen: &mut Seen,
) -> Option<tonic::Streaming<M>> {
    let path = http::uri::PathAndQuery::from_static("/auditlog.v1.AuditService/StreamEvents");
    let codec = tonic_prost::ProstCodec::<pb::StreamEventsRequest, M>::default();
    let opened = match client.ready().await {
        Ok(()) => {
            client
                .server_streaming(tonic::Request::new(request), path, codec)
                .await
        }
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    match opened {
        Ok(response) => Some(response.into_inner()),
        Err(status) => {
            seen.error = Some(status.message().to_owned());
            None
        }
    }
}

/// The next message, or `None` once stopped, ended or failed (the failure
/// noted in `seen`).
async fn next<M: prost::Message + Default + 'static>(
    stream: &mut tonic::Streaming<M>,
    stop: &mut watch::Receiver<bool>,
    seen: &mut Seen,
) -> Option<M> {
    let message = tokio::select! {
        _ = stop.changed() => return None,
        message = stream.message() => message,
    };
    match message {
        Ok(message) => message,
        Err(status) => {
            seen.error = Some(status.message().to_owned());
            None
        }
    }
}

/// The seq at the head of a stored line (`{"seq":N,`).
fn seq_of(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// The `timestamp` of a stored line.
fn timestamp_of(line: &[u8]) -> Option<SystemTime> {
    const FIELD: &[u8] = b",\"timestamp\":\"";
    let at = line.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let end = at + line[at..].iter().position(|&b| b == b'"')?;
    let text = std::str::from_utf8(&line[at..end]).ok()?;
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(u64::try_from(t.unix_timestamp_nanos()).ok()?))
}

impl FollowReport {
    pub(crate) fn print(&self) {
        let alone = self.alone.events_per_sec();
        println!();
        println!(
            "{} with {FOLLOWERS} live followers (StreamEvents from the head, follow), \
             auditlog only:",
            SHAPE.label
        );
        println!(
            "  writers alone:                       {alone:>9.0} events/s  p50 {:.3} ms  p99 {:.3} ms",
            ms(self.alone.percentile(50.0)),
            ms(self.alone.percentile(99.0))
        );
        for (name, followers) in [("events", &self.events), ("stored lines", &self.lines)] {
            followers.print(name, &self.alone);
        }
    }
}

impl Followers {
    fn print(&self, name: &str, alone: &Measurement) {
        let followed = self.writers.events_per_sec();
        println!(
            "  writers with followers of {name:<12}: {followed:>9.0} events/s  p50 {:.3} ms  p99 \
             {:.3} ms  ({:.2} of alone)",
            ms(self.writers.percentile(50.0)),
            ms(self.writers.percentile(99.0)),
            followed / alone.events_per_sec().max(1e-9)
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
            (per_event(alone), per_event(&self.writers))
        {
            println!(
                "    server CPU per event written: {srv_alone:.1} us alone, {srv_followed:.1} us \
                 followed ({:+.1} us, {:.2} of alone); clients' (writers, followers): \
                 {cli_alone:.1} / {cli_followed:.1} us",
                srv_followed - srv_alone,
                srv_followed / srv_alone.max(1e-9)
            );
        }
        let kept_up = self
            .seen
            .iter()
            .filter(|s| s.received == self.expected && s.gaps == 0 && s.error.is_none())
            .count();
        let max_lag = self.seen.iter().map(|s| s.max_lag).max();
        println!(
            "    followers that kept up: {kept_up} of {FOLLOWERS} (every one of the {} events \
             written while following, in seq order); max lag {:.1} ms (receipt - the \
             record's timestamp)",
            self.expected,
            ms(max_lag.unwrap_or_default())
        );
        for (i, s) in self.seen.iter().enumerate() {
            if s.received != self.expected || s.gaps > 0 || s.error.is_some() {
                println!(
                    "    follower {i}: {} of {} events, {} gaps{}",
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
