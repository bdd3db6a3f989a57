//! Receipts with proofs (`Log` with `with_proof`) from a server that drops
//! the event and answers with the receipt, checkpoint and valid inclusion
//! proof of a record it already holds: the proof must be of the event
//! sent, else it proves nothing to the caller.

use auditlog_client::proof::VerifierKey;
use auditlog_client::{Client, NewEvent, pb};

use crate::hostile_server::fake::{FakeServer, Forged, Scene};

/// A stored line of an event of type `kind` about `lead`, with the
/// idempotency key `key` when one is given.
fn line(seq: u64, kind: &str, lead: &str, key: Option<&str>) -> Vec<u8> {
    let key = key.map_or(String::new(), |k| format!(",\"idempotency_key\":\"{k}\""));
    format!(
        "{{\"seq\":{seq},\"id\":\"id-{seq}\",\"timestamp\":\"2026-12-01T00:00:00.000000Z\",\
         \"event_type\":\"{kind}\",\"actor\":\"system\",\"lead_id\":\"{lead}\",\
         \"workflow\":null,\"details\":{{\"source\":\"webform\"}}{key},\"key_id\":\"k1\",\
         \"prev\":\"{:064x}\",\"signature\":\"{:064x}\"}}",
        seq - 1,
        seq
    )
    .into_bytes()
}

/// The receipt of `log`'s record `seq`, as the server would send it.
fn receipt(seq: u64, duplicate: bool) -> pb::Receipt {
    pb::Receipt {
        seq,
        id: format!("id-{seq}"),
        timestamp: None,
        signature: format!("{seq:064x}"),
        duplicate,
    }
}

/// The proofs of `log`'s records `seqs` against its checkpoint of all.
fn proofs(log: &Forged, seqs: &[u64]) -> pb::ReceiptProofs {
    let size = log.lines.len() as u64;
    pb::ReceiptProofs {
        checkpoint: log.checkpoint(size).checkpoint,
        verifier_key: log.key(),
        proofs: seqs
            .iter()
            .map(|&seq| {
                let p = log.inclusion(seq, size);
                pb::InclusionProof {
                    seq,
                    hashes: p.hashes,
                    line: p.line,
                }
            })
            .collect(),
    }
}

/// A client of a fake answering `log` and `batch` (and the fake, to keep).
async fn fake_answering(
    log: Option<pb::LogResponse>,
    batch: Option<pb::LogBatchResponse>,
) -> (Client, FakeServer) {
    let server = FakeServer::start(Scene {
        log,
        batch,
        ..Scene::default()
    })
    .await;
    (Client::connect(server.url.clone()).await.unwrap(), server)
}

#[tokio::test]
async fn a_receipt_proved_for_another_record_than_the_event_sent_is_refused() {
    let log = Forged::of(
        1,
        [
            line(1, "lead_ingested", "L-1", None),
            line(2, "lead_ingested", "L-2", Some("mail-2")),
            line(3, "lead_ingested", "L-mine", None),
        ],
    );
    let key = VerifierKey::parse(&log.key()).unwrap();
    let answer = |seq: u64, duplicate: bool| pb::LogResponse {
        receipt: Some(receipt(seq, duplicate)),
        proof: Some(proofs(&log, &[seq])),
        proof_unavailable: String::new(),
    };

    // The record of the event sent: proved.
    let (client, _server) = fake_answering(Some(answer(3, false)), None).await;
    let mine = || NewEvent::lead_ingested("L-mine", "webform");
    let proven = client.log_with_proof(mine(), Some(&key)).await.unwrap();
    proven.proof.unwrap();

    // Another lead's record, or another type's, with a proof that holds.
    let (client, _server) = fake_answering(Some(answer(1, false)), None).await;
    for event in [mine(), NewEvent::new("email_sent").lead("L-1")] {
        let proven = client.log_with_proof(event, Some(&key)).await.unwrap();
        let e = proven.proof.unwrap_err().to_string();
        assert!(
            e.contains("seq 1: the proved line is not the event sent"),
            "{e}"
        );
    }

    // A duplicate is the first record with the key, whatever else it holds.
    let (client, _server) = fake_answering(Some(answer(2, true)), None).await;
    let keyed = NewEvent::new("email_sent")
        .lead("L-9")
        .idempotency_key("mail-2");
    let proven = client.log_with_proof(keyed, Some(&key)).await.unwrap();
    proven.proof.unwrap();
    // Without a key, "duplicate" excuses nothing.
    let (client, _server) = fake_answering(Some(answer(1, true)), None).await;
    let proven = client.log_with_proof(mine(), Some(&key)).await.unwrap();
    let e = proven.proof.unwrap_err().to_string();
    assert!(
        e.contains("seq 1: the proved line is not the event sent"),
        "{e}"
    );
    let (client, _server) = fake_answering(Some(answer(2, true)), None).await;
    let other_key = mine().idempotency_key("mail-3");
    let proven = client.log_with_proof(other_key, Some(&key)).await.unwrap();
    let e = proven.proof.unwrap_err().to_string();
    assert!(
        e.contains("seq 2: the proved line is not the event sent"),
        "{e}"
    );
}

#[tokio::test]
async fn a_batch_proved_with_one_record_twice_is_refused() {
    let log = Forged::of(
        1,
        [
            line(1, "workflow_started", "", None),
            line(2, "workflow_started", "", None),
        ],
    );
    let key = VerifierKey::parse(&log.key()).unwrap();
    let twice = pb::LogBatchResponse {
        receipts: vec![receipt(1, false), receipt(1, false)],
        proofs: Some(proofs(&log, &[1, 1])),
        proof_unavailable: String::new(),
    };
    let (client, _server) = fake_answering(None, Some(twice)).await;
    let started = || NewEvent::new("workflow_started").detail("source", "webform");
    let proven = client
        .log_batch_with_proof([started(), started()], Some(&key))
        .await
        .unwrap();
    let e = proven.proof.unwrap_err().to_string();
    assert!(
        e.contains("seq 1 is proved for two events of the batch"),
        "{e}"
    );

    let both = pb::LogBatchResponse {
        receipts: vec![receipt(1, false), receipt(2, false)],
        proofs: Some(proofs(&log, &[1, 2])),
        proof_unavailable: String::new(),
    };
    let (client, _server) = fake_answering(None, Some(both)).await;
    let proven = client
        .log_batch_with_proof([started(), started()], Some(&key))
        .await
        .unwrap();
    proven.proof.unwrap();
}
