//! Where delivery resumes: after a clean restart, after a restart while the
//! receiver was down, after SIGKILL, and past events retention purged before
//! they were delivered.

use std::path::Path;
use std::time::Duration;

use auditlog_client::{Client, NewEvent};
use auditlog_server::config::Start;

use crate::common::{ServerProcess, TEST_KEY, TestServer, wait_until};
use crate::webhooks::checks::{
    assert_as_stored, assert_chained, assert_complete_in_order, delivered, log_n, status_of,
    status_when,
};
use crate::webhooks::receiver::{SECRET, TOKEN, config, receiver, seq_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_where_it_stopped_after_a_restart() {
    let hook = receiver().await;
    let url = hook.url("/hook");
    let endpoint = move |c: &mut auditlog_server::Config| {
        c.webhooks = vec![config("hook", url.clone(), Start::Beginning)];
    };
    let server = TestServer::start_with(endpoint.clone()).await;
    let client = server.client().await;
    let old = log_n(&client, 10, "old").await;
    delivered(&hook, &old).await;
    status_when(&client, "hook", "position 10", |s| s.delivered_seq == 10).await;
    let position = server.data_dir.join("webhooks").join("hook.pos");
    assert_eq!(std::fs::read_to_string(&position).unwrap().trim(), "10");

    let server = server.restart(endpoint).await;
    let client = server.client().await;
    let new = log_n(&client, 5, "new").await;
    assert_eq!(new, (11..=15).collect::<Vec<u64>>());
    let got = delivered(&hook, &new).await;
    let all: Vec<u64> = (1..=15).collect();
    let repeats = assert_complete_in_order(&got, &all);
    // At least once: at most the one event in flight at the stop again.
    assert!(
        repeats <= 1,
        "{repeats} repeats: {:?}",
        got.iter().map(seq_of).collect::<Vec<_>>()
    );
    let after_restart: Vec<u64> = got.iter().skip(10).map(seq_of).collect();
    assert!(
        after_restart.iter().filter(|s| **s <= 10).count() <= 1,
        "old events sent again after the restart: {after_restart:?}"
    );
    assert_chained(&got);
    assert!(hook.rejected().is_empty(), "{:?}", hook.rejected());
    let s = status_when(&client, "hook", "caught up", |s| s.delivered_seq == 15).await;
    assert_eq!(s.behind, 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_logged_while_the_receiver_is_down_arrive_after_a_restart() {
    let hook = receiver().await;
    hook.go_down();
    let url = hook.url("/hook");
    let endpoint = move |c: &mut auditlog_server::Config| {
        c.webhooks = vec![config("hook", url.clone(), Start::Beginning)];
    };
    let server = TestServer::start_with(endpoint.clone()).await;
    let client = server.client().await;
    let mut seqs = log_n(&client, 10, "down").await;
    status_when(&client, "hook", "a failure", |s| s.failures >= 1).await;

    let server = server.restart(endpoint).await;
    let client = server.client().await;
    let s = status_of(&client, "hook").await;
    assert_eq!((s.delivered_seq, s.behind), (0, 10), "{s:?}");
    seqs.extend(log_n(&client, 5, "after").await);
    hook.come_up().await;
    let got = delivered(&hook, &seqs).await;
    assert_eq!(assert_complete_in_order(&got, &seqs), 0);
    assert_chained(&got);
    assert!(hook.rejected().is_empty(), "{:?}", hook.rejected());
    status_when(&client, "hook", "caught up", |s| {
        s.behind == 0 && s.delivered_seq == 15
    })
    .await;
}

/// The server binary with a config file holding `[[webhooks]]`.
async fn spawn_server(dir: &Path, config_file: &Path) -> ServerProcess {
    let args = [Path::new("--config"), config_file];
    ServerProcess::spawn_args(dir, args, &[("RUST_LOG", "error")]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_server_is_killed() {
    let hook = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_file = dir.path().join("auditlog.toml");
    std::fs::write(
        &config_file,
        format!(
            "hmac_key = \"{TEST_KEY}\"\n\n[[webhooks]]\nname = \"crash\"\nurl = \"{}\"\n\
             secret = \"{SECRET}\"\nbearer_token = \"{TOKEN}\"\nstart = \"beginning\"\n\
             max_backoff_secs = 1\n",
            hook.url("/hook")
        ),
    )
    .unwrap();
    let mut server = spawn_server(&data, &config_file).await;
    let client = Client::connect(&server.url).await.unwrap();
    let mut seqs = log_n(&client, 10, "before").await;
    delivered(&hook, &seqs).await;
    // Down while more is written; then SIGKILL, no chance to save anything.
    hook.go_down();
    seqs.extend(log_n(&client, 10, "while-down").await);
    let client = &client;
    wait_until("a failed delivery", || async move {
        let s = client.webhook_status().await.unwrap();
        if s[0].failures > 0 {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    server.kill9();

    let server = spawn_server(&data, &config_file).await;
    let client = Client::connect(&server.url).await.unwrap();
    seqs.extend(log_n(&client, 5, "after").await);
    assert_eq!(seqs, (1..=25).collect::<Vec<u64>>());
    hook.come_up().await;
    let got = delivered(&hook, &seqs).await;
    let repeats = assert_complete_in_order(&got, &seqs);
    assert!(
        repeats <= 1,
        "{repeats} repeats: {:?}",
        got.iter().map(seq_of).collect::<Vec<_>>()
    );
    assert_chained(&got);
    assert_as_stored(&got, &data.join("audit.log"));
    assert!(hook.rejected().is_empty(), "{:?}", hook.rejected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_purged_before_delivery_are_reported_skipped() {
    let hook = receiver().await;
    let retained = |c: &mut auditlog_server::Config| {
        c.max_file_size_mb = 0.01;
        c.retention_days = 2.0 / 86_400.0;
        c.retention_check_secs = 86_400;
    };
    let server = TestServer::start_with(retained).await;
    let client = server.client().await;
    log_n(&client, 300, "old").await;
    client.rotate(true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    log_n(&client, 1, "new").await;
    let through = wait_until("a purge", || {
        let client = &client;
        async move {
            let purge = client.apply_retention().await.map_err(|e| e.to_string())?;
            if purge.through_seq > 0 {
                Ok(purge.through_seq)
            } else {
                Err(format!("{purge:?}"))
            }
        }
    })
    .await;
    // An endpoint whose position (0) lies before the oldest event kept.
    let server = server
        .restart(|c| {
            retained(c);
            c.webhooks = vec![config("hook", hook.url("/hook"), Start::Beginning)];
        })
        .await;
    let client = server.client().await;
    let head = client
        .log(NewEvent::lead_ingested("after", "web"))
        .await
        .unwrap()
        .seq;
    let s = status_when(&client, "hook", "caught up", |s| s.delivered_seq == head).await;
    let words = format!("events 1..={through} ({through}) were purged by retention");
    assert!(s.last_error.contains(&words), "{words:?} not in {s:?}");
    assert!(s.last_error_at.is_some(), "{s:?}");
    assert_eq!((s.behind, s.failures, s.skipped), (0, 0, through), "{s:?}");
    let got = hook.accepted();
    assert_eq!(got.first().map(seq_of), Some(through + 1));
    assert!(hook.rejected().is_empty(), "{:?}", hook.rejected());
}
