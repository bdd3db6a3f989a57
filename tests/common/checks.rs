//! What the log holds, seen through the API: every event in seq order, the
//! problems a verification found, and [`assert_whole`], the check that
//! nothing acknowledged was lost. Use them after a crash, a restart or any
//! change to the files.

use auditlog_client::Client;

/// Every event in the log in seq order: StreamEvents from seq 1 without
/// `follow`, the export path.
pub(crate) async fn all_events(client: &Client) -> Vec<auditlog_client::pb::Event> {
    use futures::StreamExt as _;
    let stream = client
        .stream(auditlog_client::Query::new(), 1, false)
        .await
        .unwrap();
    stream.map(|e| e.unwrap()).collect().await
}

/// What a StreamEvents export from `from_seq` (without `follow`) gave
/// before it ended: the events, and the status it ended with, if any.
pub(crate) async fn export_from(
    client: &Client,
    from_seq: u64,
) -> (Vec<auditlog_client::pb::Event>, Option<tonic::Status>) {
    use futures::StreamExt as _;
    let mut stream = client
        .stream(auditlog_client::Query::new(), from_seq, false)
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(e) => events.push(e),
            Err(auditlog_client::Error::Rpc(status)) => return (events, Some(status)),
            Err(e) => panic!("{e}"),
        }
    }
    (events, None)
}

/// Every record in the log as stored (StreamEvents with `stored_lines`,
/// from seq 1, without `follow`), each line without its newline.
pub(crate) async fn all_stored_lines(client: &Client) -> Vec<Vec<u8>> {
    use futures::StreamExt as _;
    let stream = client
        .stream_lines(auditlog_client::Query::new(), 1, false)
        .await
        .unwrap();
    stream.map(Result::unwrap).collect().await
}

/// Asserts the log is whole: seqs 1..=head without a gap, every receipt in
/// `acked` at its seq with its id and signature, verification clean, and the
/// statistics agreeing. Returns the events.
pub(crate) async fn assert_whole(
    client: &Client,
    acked: &[auditlog_client::pb::Receipt],
) -> Vec<auditlog_client::pb::Event> {
    let events = all_events(client).await;
    let head = events.len() as u64;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "seqs are not contiguous"
    );
    for r in acked {
        let e = events
            .get(usize::try_from(r.seq).unwrap() - 1)
            .unwrap_or_else(|| panic!("acknowledged seq {} is gone (head {head})", r.seq));
        assert_eq!(
            (&e.id, &e.signature),
            (&r.id, &r.signature),
            "seq {}",
            r.seq
        );
    }
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!((report.events_checked, report.head_seq), (head, head));
    let stats = client.stats(None).await.unwrap();
    assert_eq!((stats.total_events, stats.head_seq), (head, head));
    events
}

/// `(kind, seq, line)` of every problem a verification reported, in order.
pub(crate) fn problems(
    report: &auditlog_client::pb::VerifyIntegrityResponse,
) -> Vec<(auditlog_client::pb::ProblemKind, u64, u64)> {
    report
        .problems
        .iter()
        .map(|p| (p.kind(), p.seq, p.line))
        .collect()
}

/// The seqs of `events`, in their order.
pub(crate) fn seqs(events: &[auditlog_client::pb::Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}
