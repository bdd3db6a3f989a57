//! Reading a log one of whose sealed segments is damaged: the read fails
//! with DATA_LOSS naming the segment and its seqs, and a caller reads
//! around it.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use auditlog_client::{NewEvent, Query};
use common::{TestServer, export_from, seqs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_segment_is_data_loss_named_and_can_be_read_around() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut sealed = Vec::new();
    for s in 0..3 {
        for i in 0..10 {
            let event = NewEvent::email_sent(format!("LEAD-{s}-{i}"), "a@example.com", "hi");
            client.log(event).await.unwrap();
        }
        sealed.push(client.rotate(true).await.unwrap());
    }
    for i in 0..5 {
        let event = NewEvent::email_sent(format!("LEAD-T-{i}"), "a@example.com", "hi");
        client.log(event).await.unwrap();
    }
    // The middle segment loses its second half, as a bad disk would.
    let middle = &sealed[1];
    assert_eq!((middle.first_seq, middle.last_seq), (11, 20));
    let path = server.data_dir.join(&middle.file);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let (before, status) = export_from(&client, 1).await;
    assert_eq!(seqs(&before), (1..=10).collect::<Vec<_>>());
    let status = status.expect("the export ended without an error");
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
    let message = status.message();
    assert!(
        message.contains(&middle.file)
            && message.contains("seqs 11 to 20")
            && message.contains("from seq 21"),
        "{message}"
    );
    let e = client
        .query(Query::new().oldest_first().limit(100))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::DataLoss), "{e}");

    // Around it: everything after, from the seq the message gave.
    let (after, status) = export_from(&client, 21).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(seqs(&after), (21..=35).collect::<Vec<_>>());
}
