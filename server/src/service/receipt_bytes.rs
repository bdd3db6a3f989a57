//! `LogResponse` and `LogBatchResponse` encoded straight from the store's
//! receipts: no `pb::Receipt` with copies of each receipt's id and
//! signature in between. The generated `AuditService` (`server/build.rs`)
//! takes these where the messages would be; a client cannot tell them
//! from prost's encoding. A follower's answer is the leader's, passed on
//! as it came (`Forwarded`).

use auditlog_proto::v1 as pb;
use bytes::BufMut;
use prost::encoding::{self, WireType};

use super::edge::{self, AskedProofs};
use super::event_bytes::{encode_only, put_string, string_len};
use crate::store::Receipt;

/// `LogResponse`: the receipt, the proof asked for, or why it is missing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LogAnswer {
    Written {
        receipt: Option<Receipt>,
        proofs: AskedProofs,
    },
    /// The leader's answer to a call this node forwarded.
    Forwarded(pb::LogResponse),
}

/// `LogBatchResponse`: the receipts, the proofs asked for, or why they are
/// missing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LogBatchAnswer {
    Written {
        receipts: Vec<Receipt>,
        proofs: AskedProofs,
    },
    /// The leader's answer to a call this node forwarded.
    Forwarded(pb::LogBatchResponse),
}

impl Default for LogAnswer {
    fn default() -> Self {
        LogAnswer::Forwarded(pb::LogResponse::default())
    }
}

impl Default for LogBatchAnswer {
    fn default() -> Self {
        LogBatchAnswer::Forwarded(pb::LogBatchResponse::default())
    }
}

/// The receipt field of `LogResponse`, the repeated one of
/// `LogBatchResponse`.
const RECEIPTS: u32 = 1;
/// Both answers' proof (or proofs) field.
const PROOFS: u32 = 2;
/// Both answers' `proof_unavailable`.
const PROOF_UNAVAILABLE: u32 = 3;

/// `Receipt`'s fields.
const SEQ: u32 = 1;
const ID: u32 = 2;
const TIMESTAMP: u32 = 3;
const SIGNATURE: u32 = 4;
const DUPLICATE: u32 = 5;

/// The length of `receipt`'s message, its timestamp as sent.
fn receipt_len(receipt: &Receipt, timestamp: &prost_types::Timestamp) -> usize {
    (if receipt.seq != 0 {
        encoding::uint64::encoded_len(SEQ, &receipt.seq)
    } else {
        0
    }) + string_len(ID, &receipt.id)
        + encoding::message::encoded_len(TIMESTAMP, timestamp)
        + string_len(SIGNATURE, &receipt.signature)
        + if receipt.duplicate {
            encoding::bool::encoded_len(DUPLICATE, &true)
        } else {
            0
        }
}

/// The most bytes a receipt is written through a buffer on the stack: one
/// of the server's takes about 130.
const STACK: usize = 256;

/// `receipt` as message field `tag`, with its key and length. Written on
/// the stack first and put in one piece when it fits: the answer's buffer
/// checks its capacity on every byte it is given: put field by field, a
/// receipt cost 1,700 instructions, 2.3 times as many (callgrind,
/// `LogBatch` x8, 2026-12-07).
fn put_receipt(tag: u32, receipt: &Receipt, buf: &mut impl BufMut) {
    let timestamp = edge::timestamp_pb(receipt.timestamp);
    let len = receipt_len(receipt, &timestamp);
    let whole = encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len;
    if whole <= STACK {
        let mut scratch = [0u8; STACK];
        write_receipt(tag, receipt, &timestamp, len, &mut &mut scratch[..]);
        buf.put_slice(&scratch[..whole]);
    } else {
        write_receipt(tag, receipt, &timestamp, len, buf);
    }
}

fn write_receipt(
    tag: u32,
    receipt: &Receipt,
    timestamp: &prost_types::Timestamp,
    len: usize,
    buf: &mut impl BufMut,
) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(len as u64, buf);
    if receipt.seq != 0 {
        encoding::uint64::encode(SEQ, &receipt.seq, buf);
    }
    put_string(ID, &receipt.id, buf);
    encoding::message::encode(TIMESTAMP, timestamp, buf);
    put_string(SIGNATURE, &receipt.signature, buf);
    if receipt.duplicate {
        encoding::bool::encode(DUPLICATE, &true, buf);
    }
}

/// The length of `receipt` as message field `tag`.
fn receipt_field_len(tag: u32, receipt: &Receipt) -> usize {
    let len = receipt_len(receipt, &edge::timestamp_pb(receipt.timestamp));
    encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
}

/// The proofs as field [`PROOFS`], or why they are missing as
/// [`PROOF_UNAVAILABLE`].
fn put_proofs(proofs: &AskedProofs, buf: &mut impl BufMut) {
    match proofs {
        None => {}
        Some(Ok(p)) => encoding::message::encode(PROOFS, p, buf),
        Some(Err(why)) => put_string(PROOF_UNAVAILABLE, why, buf),
    }
}

fn proofs_len(proofs: &AskedProofs) -> usize {
    match proofs {
        None => 0,
        Some(Ok(p)) => encoding::message::encoded_len(PROOFS, p),
        Some(Err(why)) => string_len(PROOF_UNAVAILABLE, why),
    }
}

/// An answer of ours: each receipt as field [`RECEIPTS`], then the proofs.
fn put_written<'a>(
    receipts: impl Iterator<Item = &'a Receipt>,
    proofs: &AskedProofs,
    buf: &mut impl BufMut,
) {
    for r in receipts {
        put_receipt(RECEIPTS, r, buf);
    }
    put_proofs(proofs, buf);
}

fn written_len<'a>(receipts: impl Iterator<Item = &'a Receipt>, proofs: &AskedProofs) -> usize {
    receipts
        .map(|r| receipt_field_len(RECEIPTS, r))
        .sum::<usize>()
        + proofs_len(proofs)
}

encode_only!(
    LogAnswer,
    |self, buf| {
        match self {
            LogAnswer::Written { receipt, proofs } => put_written(receipt.iter(), proofs, buf),
            LogAnswer::Forwarded(answer) => prost::Message::encode_raw(answer, buf),
        }
    },
    |self| {
        match self {
            LogAnswer::Written { receipt, proofs } => written_len(receipt.iter(), proofs),
            LogAnswer::Forwarded(answer) => prost::Message::encoded_len(answer),
        }
    }
);

encode_only!(
    LogBatchAnswer,
    |self, buf| {
        match self {
            LogBatchAnswer::Written { receipts, proofs } => {
                put_written(receipts.iter(), proofs, buf)
            }
            LogBatchAnswer::Forwarded(answer) => prost::Message::encode_raw(answer, buf),
        }
    },
    |self| {
        match self {
            LogBatchAnswer::Written { receipts, proofs } => written_len(receipts.iter(), proofs),
            LogBatchAnswer::Forwarded(answer) => prost::Message::encoded_len(answer),
        }
    }
);

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::store::record::Short;

    /// The answers as prost builds them: what ours must encode as.
    fn log_pb(receipt: Option<Receipt>, proofs: AskedProofs) -> pb::LogResponse {
        let (proof, proof_unavailable) = split(proofs);
        pb::LogResponse {
            receipt: receipt.map(edge::receipt_pb),
            proof,
            proof_unavailable,
        }
    }

    fn log_batch_pb(receipts: Vec<Receipt>, proofs: AskedProofs) -> pb::LogBatchResponse {
        let (proofs, proof_unavailable) = split(proofs);
        pb::LogBatchResponse {
            receipts: receipts.into_iter().map(edge::receipt_pb).collect(),
            proofs,
            proof_unavailable,
        }
    }

    fn split(proofs: AskedProofs) -> (Option<pb::ReceiptProofs>, String) {
        match proofs {
            None => (None, String::new()),
            Some(Ok(p)) => (Some(p), String::new()),
            Some(Err(why)) => (None, why),
        }
    }

    fn receipt(seq: u64, timestamp: i64, duplicate: bool) -> Receipt {
        Receipt {
            seq,
            id: Short::from("0190a0b0-c0d0-7e0f-8000-000000000001"),
            timestamp,
            signature: Short::from("ab".repeat(32).as_str()),
            duplicate,
        }
    }

    fn proofs() -> pb::ReceiptProofs {
        pb::ReceiptProofs {
            checkpoint: Some(pb::SignedCheckpoint {
                note: "example.org/log\n2\nAAAA\n\n— example.org/log sig\n".into(),
                ..Default::default()
            }),
            verifier_key: "example.org/log+01020304+AQID".into(),
            proofs: vec![pb::InclusionProof {
                seq: 1,
                hashes: vec![vec![7; 32]],
                ..Default::default()
            }],
        }
    }

    /// Every case of the answer: receipts of every kind (a duplicate, the
    /// epoch, a time before it, the largest seq, one larger than the stack
    /// buffer it is written through), with no proofs asked,
    /// the proofs, and why they are missing.
    fn cases() -> Vec<(Vec<Receipt>, AskedProofs)> {
        let receipts = vec![
            receipt(1, 1_733_000_000_123_456, false),
            receipt(2, 0, true),
            receipt(3, -1_500_001, false),
            receipt(u64::MAX >> 1, i64::MAX / 2, true),
            Receipt {
                id: Short::from("i".repeat(STACK).as_str()),
                ..receipt(5, 1, false)
            },
        ];
        vec![
            (receipts.clone(), None),
            (receipts.clone(), Some(Ok(proofs()))),
            (
                receipts,
                Some(Err("no checkpoint covered the event in time".into())),
            ),
            (Vec::new(), None),
        ]
    }

    /// The batch answer decodes as the `LogBatchResponse` prost would have
    /// sent, byte for byte, and its length is what it writes.
    #[test]
    fn a_batch_answer_is_the_message_it_stands_for() {
        for (receipts, proofs) in cases() {
            let ours = LogBatchAnswer::Written {
                receipts: receipts.clone(),
                proofs: proofs.clone(),
            };
            let theirs = log_batch_pb(receipts, proofs);
            let bytes = ours.encode_to_vec();
            assert_eq!(bytes.len(), ours.encoded_len());
            assert_eq!(bytes, theirs.encode_to_vec());
            assert_eq!(
                pb::LogBatchResponse::decode(bytes.as_slice()).unwrap(),
                theirs
            );
        }
    }

    #[test]
    fn a_single_answer_is_the_message_it_stands_for() {
        for (receipts, proofs) in cases() {
            let receipt = receipts.first().cloned();
            let ours = LogAnswer::Written {
                receipt: receipt.clone(),
                proofs: proofs.clone(),
            };
            let theirs = log_pb(receipt, proofs);
            let bytes = ours.encode_to_vec();
            assert_eq!(bytes.len(), ours.encoded_len());
            assert_eq!(bytes, theirs.encode_to_vec());
        }
    }

    #[test]
    fn a_forwarded_answer_goes_on_as_it_came() {
        let theirs = log_batch_pb(vec![receipt(9, 5, false)], Some(Ok(proofs())));
        let ours = LogBatchAnswer::Forwarded(theirs.clone());
        assert_eq!(ours.encode_to_vec(), theirs.encode_to_vec());
        assert_eq!(ours.encoded_len(), theirs.encoded_len());
        let single = log_pb(Some(receipt(9, 5, true)), None);
        let ours = LogAnswer::Forwarded(single.clone());
        assert_eq!(ours.encode_to_vec(), single.encode_to_vec());
    }
}
