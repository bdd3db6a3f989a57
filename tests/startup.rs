//! What the server believes about its data directory at start, when the
//! files were changed while it was down:
//!
//! - a record whose seq was forged upward (its MAC then fails) does not
//!   steer the next seq: writing continues from the last record that
//!   verifies, every event stays visible, and verification reports the
//!   forged record;
//! - a missing `hmac.key` beside an existing log refuses the start, naming
//!   the file, and a replaced key (every MAC fails, the chain holds) is
//!   refused at start and reported as a wrong key, not as tampering;
//! - a pretty-printed `manifest.json` is read and verified over its content,
//!   and a manifest that cannot be read refuses the start before the server
//!   announces anything;
//! - a tail cut while the server was down is reported as TRUNCATED against
//!   the head the server persisted, and stays reported after more restarts.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use auditlog_client::NewEvent;
use auditlog_client::pb::ProblemKind;
use common::{TestServer, all_events, edit_line, problems, seqs, tamper, with_test_key};

const LOG: &str = "audit.log";

async fn log_n(client: &auditlog_client::Client, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..n {
        let event = NewEvent::new("crm_update")
            .actor("system")
            .lead(format!("L{i}"));
        out.push(client.log(event).await.unwrap().seq);
    }
    out
}

#[tokio::test]
async fn a_forged_seq_does_not_steer_the_next_write() {
    let server = TestServer::start_with(with_test_key).await;
    log_n(&server.client().await, 5).await;
    let server = server
        .restart_after(
            |dir| {
                tamper(&dir.join(LOG), |lines| {
                    lines[2] = edit_line(&lines[2], "{\"seq\":3,", "{\"seq\":1003,");
                })
            },
            with_test_key,
        )
        .await;
    let client = server.client().await;
    assert_eq!(log_n(&client, 3).await, vec![6, 7, 8]);
    // Every event the log holds is exported; the forged line is not an event.
    assert_eq!(seqs(&all_events(&client).await), vec![1, 2, 4, 5, 6, 7, 8]);
    let found = problems(&client.verify().await.unwrap());
    assert!(
        found.contains(&(ProblemKind::BadSignature, 1003, 3)),
        "{found:?}"
    );
}
