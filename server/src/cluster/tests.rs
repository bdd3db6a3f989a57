//! The lease and the fenced publish against a real single `nats-server`
//! with JetStream (skipped without the binary, unless `REQUIRE_NATS=1`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::leader::Publisher;
use super::lease::{Lease, Role};
use super::{ClusterConfig, ClusterError, stream};

#[path = "../../../tests/common/nats_bin.rs"]
mod nats_bin;

/// A `nats-server -js` on a free port, killed on drop.
struct Nats {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn nats() -> Option<Nats> {
    let bin = nats_bin::nats_server_bin()?;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let nats = Nats {
        child,
        url,
        _dir: dir,
    };
    for _ in 0..400 {
        if let Ok(client) = async_nats::connect(&nats.url).await
            && async_nats::jetstream::new(client)
                .query_account()
                .await
                .is_ok()
        {
            return Some(nats);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nats-server at {} did not start", nats.url);
}

fn config(nats: &Nats) -> ClusterConfig {
    ClusterConfig {
        nats_urls: vec![nats.url.clone()],
        replicas: 1,
        advertise: "http://127.0.0.1:1".into(),
        lease_ttl_ms: 400,
        ..ClusterConfig::default()
    }
}

async fn context(nats: &Nats) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap())
}

/// Two nodes' leases, `a` and `b`, on the lease bucket `config` names,
/// keyed alike, once `a` took the free lease: the bucket, both, and `a`'s
/// term.
async fn a_leads(
    nats: &Nats,
    config: &ClusterConfig,
) -> (async_nats::jetstream::kv::Store, Lease, Lease, u64) {
    let js = context(nats).await;
    let bucket = stream::ensure_lease_bucket(&js, config).await.unwrap();
    let (mut a, b) = two_leases(&bucket, config.lease_ttl());
    let Role::Leader { term } = a.round().await else {
        panic!("a did not take the free lease")
    };
    (bucket, a, b, term)
}

/// Two nodes' leases on one bucket, keyed alike.
fn two_leases(bucket: &async_nats::jetstream::kv::Store, ttl: Duration) -> (Lease, Lease) {
    let lease = |name: &str| {
        Lease::new(
            bucket.clone(),
            (name.into(), format!("http://{name}:1")),
            crate::keys::Keyring::new("k1", vec![7; 32]),
            ttl,
        )
    };
    (lease("a"), lease("b"))
}

#[tokio::test]
async fn one_lease_holder_at_a_time_and_a_lost_lease_is_noticed() {
    let Some(nats) = nats().await else { return };
    let (_, mut a, mut b, term) = a_leads(&nats, &config(&nats)).await;
    match b.round().await {
        Role::Follower { leader: Some(h) } => {
            assert_eq!((h.node.as_str(), h.term), ("a", term));
            assert_eq!(h.advertise, "http://a:1");
        }
        other => panic!("b sees {other:?}"),
    }
    assert_eq!(a.round().await, Role::Leader { term }, "renewal");

    // a stops renewing (paused): its entry expires, b takes over with a
    // higher term, and a's next renewal fails: it steps down.
    let b_term = loop {
        if let Role::Leader { term } = b.round().await {
            break term;
        }
        tokio::time::sleep(b.period()).await;
    };
    assert!(b_term > term);
    match a.round().await {
        Role::Follower { leader: Some(h) } => assert_eq!(h.node, "b"),
        other => panic!("a, deposed, sees {other:?}"),
    }
}

/// A renewal NATS stored but whose answer never came leaves the key a
/// revision ahead of what the leader knows: its next renewal is refused
/// for the revision, and the leader, finding its own name and term there,
/// renews from that revision instead of stepping down.
#[tokio::test]
async fn a_renewal_stored_but_answered_too_late_does_not_depose_the_leader() {
    let Some(nats) = nats().await else { return };
    let (bucket, mut a, mut b, term) = a_leads(&nats, &config(&nats)).await;

    // What a's renewal writes (the same holder, term and MAC), stored
    // without a hearing of it.
    let entry = bucket.entry(super::lease::KEY).await.unwrap().unwrap();
    bucket
        .update(super::lease::KEY, entry.value.clone(), entry.revision)
        .await
        .unwrap();
    assert_eq!(a.round().await, Role::Leader { term }, "taken back");
    assert_eq!(a.round().await, Role::Leader { term }, "renewed after");
    match b.round().await {
        Role::Follower { leader: Some(h) } => assert_eq!((h.node.as_str(), h.term), ("a", term)),
        other => panic!("b sees {other:?}"),
    }
}

/// While NATS answers nothing (paused), a leader keeps leading for three
/// quarters of the TTL from its last renewal's start, never longer, and a
/// follower keeps the leader it read; then both know no leader.
#[tokio::test]
async fn rounds_nats_does_not_answer_keep_the_last_answer_for_a_bounded_time() {
    let Some(nats) = nats().await else { return };
    let config = ClusterConfig {
        lease_ttl_ms: 2000,
        ..config(&nats)
    };
    let (_, mut a, mut b, term) = a_leads(&nats, &config).await;
    assert!(matches!(
        b.round().await,
        Role::Follower { leader: Some(_) }
    ));
    let renewed = std::time::Instant::now();
    assert_eq!(a.round().await, Role::Leader { term });

    let signal = |sig: &str| {
        let status = Command::new("kill")
            .args([sig, &nats.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig}");
    };
    signal("-STOP");
    assert_eq!(
        a.round().await,
        Role::Leader { term },
        "one unanswered round"
    );
    match b.round().await {
        Role::Follower { leader: Some(h) } => assert_eq!(h.node, "a"),
        other => panic!("b, unanswered, sees {other:?}"),
    }
    let stepped_down = loop {
        match a.round().await {
            Role::Leader { .. } => {}
            Role::Unknown => break renewed.elapsed(),
            other => panic!("a, unanswered, sees {other:?}"),
        }
    };
    let lease = config.lease_ttl();
    assert!(
        stepped_down >= lease * 3 / 4,
        "a stepped down after {stepped_down:?}, before its lease could lapse"
    );
    loop {
        match b.round().await {
            Role::Follower { leader: Some(_) } => {}
            Role::Unknown => break,
            other => panic!("b, unanswered, sees {other:?}"),
        }
    }
    signal("-CONT");
}

#[tokio::test]
async fn a_deposed_leader_cannot_append() {
    let Some(nats) = nats().await else { return };
    let config = config(&nats);
    let js = context(&nats).await;
    let stream = stream::ensure_stream(&js, &config).await.unwrap();
    assert!(
        stream::tail(&stream, &config.subject())
            .await
            .unwrap()
            .is_none()
    );

    // Lines shaped like records: a message's id names its last signature.
    let (r12, r3, x3) = (
        format!("{}{}", line(1, 'a'), line(2, 'b')),
        line(3, 'c'),
        line(3, 'd'),
    );
    let (r12, r3, x3) = (r12.as_bytes(), r3.as_bytes(), x3.as_bytes());
    let mut old = Publisher::after(js.clone(), config.stream.clone(), config.subject(), 0);
    old.publish(r12, 1, 2, &[]).await.unwrap();
    assert_eq!(old.last(), 1);

    // A new leader reads the tail and continues; the old one, which still
    // believes stream message 1 is the last, is refused.
    let tail = stream::tail(&stream, &config.subject())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((tail.stream_seq, &tail.lines[..]), (1, r12));
    let mut new = Publisher::after(
        js.clone(),
        config.stream.clone(),
        config.subject(),
        tail.stream_seq,
    );
    new.publish(r3, 3, 3, &[]).await.unwrap();
    match old.publish(x3, 3, 3, &[]).await {
        Err(ClusterError::Deposed(_)) => {}
        other => panic!("the deposed leader's publish gave {other:?}"),
    }
    let tail = stream::tail(&stream, &config.subject())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((tail.stream_seq, &tail.lines[..]), (2, r3));

    // The same group again from a leader that had not seen its
    // acknowledgement (a retry after a lost ack) is recognised as stored,
    // not appended twice.
    let mut retry = Publisher::after(js.clone(), config.stream.clone(), config.subject(), 1);
    retry.publish(r3, 3, 3, &[]).await.unwrap();
    assert_eq!(retry.last(), 2);
    let info = js
        .get_stream(&config.stream)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.state.messages, 2);
}

/// A line with the fields `RecordHead::peek` reads, signed `sig`.
fn line(seq: u64, sig: char) -> String {
    format!(
        "{{\"seq\":{seq},\"key_id\":\"k1\",\"prev\":\"{}\",\"signature\":\"{}\"}}\n",
        "0".repeat(64),
        sig.to_string().repeat(64)
    )
}

#[tokio::test]
async fn an_existing_stream_unfit_for_the_log_is_refused() {
    let Some(nats) = nats().await else { return };
    let config = config(&nats);
    let js = context(&nats).await;
    let mut unfit = stream::stream_config(&config);
    unfit.deny_delete = false;
    unfit.max_age = Duration::from_secs(3600);
    js.create_stream(unfit).await.unwrap();
    let error = stream::ensure_stream(&js, &config)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("deny_delete off"), "{error}");
    assert!(error.contains("max_age"), "{error}");
}

/// A publish that no JetStream server takes (no responders: the stream's
/// subject is not known yet where the leader is connected) stored nothing,
/// and is tried again until the stream takes it; one that nobody takes for
/// longer fails the group, saying so.
#[tokio::test]
async fn a_publish_nobody_takes_yet_is_tried_again_until_the_stream_takes_it() {
    let Some(nats) = nats().await else { return };
    let config = config(&nats);
    let js = context(&nats).await;
    let record = line(1, 'a');
    let mut alone = Publisher::after(js.clone(), config.stream.clone(), config.subject(), 0);
    let error = alone
        .publish(record.as_bytes(), 1, 1, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("no stream found"), "{error}");

    let mut publisher = Publisher::after(js.clone(), config.stream.clone(), config.subject(), 0);
    let (published, ()) = tokio::join!(publisher.publish(record.as_bytes(), 1, 1, &[]), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream::ensure_stream(&js, &config).await.unwrap();
    });
    published.unwrap();
    assert_eq!(publisher.last(), 1);
}
