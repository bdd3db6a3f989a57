//! Receipts that come with their proofs (`Log`/`LogBatch` with
//! `with_proof`), checked here: the checkpoint's signature against a
//! verifier key, each receipt's stored line against the receipt (seq, id,
//! signature), and its inclusion proof against the checkpoint's root. The
//! receipts are returned whatever the proofs' fate: the events are written.

use auditlog_proof::{Hash, VerifierKey, leaf_hash, verify_inclusion};

use super::Client;
use super::proofs::VerifiedCheckpoint;
use crate::{Error, NewEvent, pb};

/// Receipts and the outcome of checking their proofs.
#[derive(Debug)]
pub struct ProvenReceipts {
    /// One per event, in order; the events are written whatever `proof`
    /// says.
    pub receipts: Vec<pb::Receipt>,
    /// The checked proofs, or why there are none (the server had no
    /// checkpoint in time) or why they do not verify.
    pub proof: Result<ReceiptsProof, Error>,
}

/// Proofs that checked out: every receipt is in the checkpoint's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptsProof {
    /// The checkpoint, its signature checked.
    pub checkpoint: VerifiedCheckpoint,
    /// The key it was checked with, `name+keyid` (hex).
    pub signed_by: String,
    /// Each receipt's stored line (the tree's leaf), in order.
    pub lines: Vec<Vec<u8>>,
    /// How many hashes each receipt's proof had, in order.
    pub proof_lens: Vec<usize>,
}

impl Client {
    /// Appends `event` and returns its receipt with a signed checkpoint and
    /// inclusion proof, checked with `key` (`None`: with the key the server
    /// sends, which proves nothing about a server you do not trust). The
    /// server waits up to the call's deadline (else 5 s) for a checkpoint.
    pub async fn log_with_proof(
        &self,
        event: NewEvent,
        key: Option<&VerifierKey>,
    ) -> Result<ProvenReceipts, Error> {
        let sent = [event.clone()];
        let (receipt, response) = self.send_log(event, true).await?;
        let receipts = vec![receipt];
        let proof =
            check_receipt_proofs(&receipts, response.proof, response.proof_unavailable, key)
                .and_then(|proof| of_events_sent(proof, &receipts, &sent));
        Ok(ProvenReceipts { receipts, proof })
    }

    /// [`Client::log_with_proof`] for a batch: one checkpoint, one proof per
    /// event.
    pub async fn log_batch_with_proof(
        &self,
        events: impl IntoIterator<Item = NewEvent>,
        key: Option<&VerifierKey>,
    ) -> Result<ProvenReceipts, Error> {
        let sent: Vec<NewEvent> = events.into_iter().collect();
        let response = self.send_batch(sent.iter().cloned(), true).await?;
        let proof = check_receipt_proofs(
            &response.receipts,
            response.proofs,
            response.proof_unavailable,
            key,
        )
        .and_then(|proof| of_events_sent(proof, &response.receipts, &sent));
        Ok(ProvenReceipts {
            receipts: response.receipts,
            proof,
        })
    }
}

/// Checks `proofs` for `receipts` with `key` (or the key the server sent).
pub fn check_receipt_proofs(
    receipts: &[pb::Receipt],
    proofs: Option<pb::ReceiptProofs>,
    unavailable: String,
    key: Option<&VerifierKey>,
) -> Result<ReceiptsProof, Error> {
    let fail = |m: String| Error::Proof(m);
    let Some(proofs) = proofs else {
        let why = if unavailable.is_empty() {
            "the server sent no proof with the receipts".to_owned()
        } else {
            format!("the server sent no proof with the receipts: {unavailable}")
        };
        return Err(fail(why));
    };
    let sent_key;
    let key = match key {
        Some(k) => k,
        None => {
            sent_key = VerifierKey::parse(&proofs.verifier_key)
                .map_err(|e| fail(format!("the server's verifier key: {e}")))?;
            &sent_key
        }
    };
    let note = proofs
        .checkpoint
        .map(|c| c.note)
        .ok_or_else(|| fail("the server sent no checkpoint with the proofs".into()))?;
    let checkpoint = key
        .open_checkpoint(&note)
        .map_err(|e| fail(format!("the receipts' checkpoint: {e}")))?;
    if proofs.proofs.len() != receipts.len() {
        return Err(fail(format!(
            "the server sent {} proofs for {} receipts",
            proofs.proofs.len(),
            receipts.len()
        )));
    }
    let size = checkpoint.size;
    // Two events are two records, unless the second repeats the first's
    // idempotency key (then its receipt is a duplicate).
    let mut written = std::collections::BTreeSet::new();
    for receipt in receipts.iter().filter(|r| !r.duplicate) {
        if !written.insert(receipt.seq) {
            return Err(fail(format!(
                "seq {} is proved for two events of the batch, neither a duplicate: one of them \
                 was not written",
                receipt.seq
            )));
        }
    }
    let mut lines = Vec::with_capacity(receipts.len());
    let mut proof_lens = Vec::with_capacity(receipts.len());
    for (receipt, proof) in receipts.iter().zip(proofs.proofs) {
        let seq = receipt.seq;
        if proof.seq != seq || seq == 0 || seq > size {
            return Err(fail(format!(
                "the proof for seq {seq} is for seq {} in a checkpoint of tree size {size}",
                proof.seq
            )));
        }
        line_is_receipt(&proof.line, receipt)?;
        let hashes = proof
            .hashes
            .iter()
            .map(|h| h.as_slice().try_into())
            .collect::<Result<Vec<Hash>, _>>()
            .map_err(|_| fail(format!("seq {seq}: a proof hash is not 32 bytes")))?;
        verify_inclusion(
            seq - 1,
            size,
            &leaf_hash(&proof.line),
            &hashes,
            &checkpoint.root,
        )
        .map_err(|e| {
            fail(format!(
                "seq {seq} does not verify against the signed checkpoint of tree size {size}: {e}"
            ))
        })?;
        lines.push(proof.line);
        proof_lens.push(hashes.len());
    }
    Ok(ReceiptsProof {
        checkpoint: VerifiedCheckpoint { checkpoint, note },
        signed_by: format!("{}+{:08x}", key.name, key.id),
        lines,
        proof_lens,
    })
}

/// The proved lines are the records of the events sent, one each: a
/// server that dropped an event and answered with another record's receipt
/// and proof (which verify) is refused, naming the field that differs.
fn of_events_sent(
    proof: ReceiptsProof,
    receipts: &[pb::Receipt],
    sent: &[NewEvent],
) -> Result<ReceiptsProof, Error> {
    if receipts.len() != sent.len() {
        return Err(Error::Proof(format!(
            "the server sent {} receipts for {} events",
            receipts.len(),
            sent.len()
        )));
    }
    for ((line, receipt), event) in proof.lines.iter().zip(receipts).zip(sent) {
        let record: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
        if let Some(field) = event.differs_from(&record, receipt.duplicate) {
            return Err(Error::Proof(format!(
                "seq {}: the proved line is not the event sent (its {field} differs): the \
                 server answered with the receipt and proof of another record",
                receipt.seq
            )));
        }
    }
    Ok(proof)
}

/// The stored line is the record the receipt is for: same seq, id and
/// signature.
fn line_is_receipt(line: &[u8], receipt: &pb::Receipt) -> Result<(), Error> {
    let seq = receipt.seq;
    let record: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
        Error::Proof(format!(
            "seq {seq}: the proved line is not a JSON record: {e}"
        ))
    })?;
    let same = record["seq"].as_u64() == Some(seq)
        && record["id"].as_str() == Some(receipt.id.as_str())
        && record["signature"].as_str() == Some(receipt.signature.as_str());
    if same {
        Ok(())
    } else {
        Err(Error::Proof(format!(
            "seq {seq}: the proved line is not the receipt's record (its seq, id or signature \
             differ)"
        )))
    }
}
