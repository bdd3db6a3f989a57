//! `EventInput` as the server decodes it: the proto's message (a caller's
//! event in `Log` and `LogBatch`), with its short strings decoded straight
//! into [`Name`]s and `details` into [`WireDetails`].
//!
//! prost's generated type decodes each string into a `String` of its own:
//! four allocations a typical event (type, actor, lead, workflow), carried
//! into the record and freed with it, on another thread. A `Name` holds up
//! to 24 bytes inline in the 24 a `String` takes, so most cost a copy of
//! their bytes and nothing else; a longer one (an actor, lead, workflow or
//! key may have up to 256 characters) goes to the heap as before. A 64-byte
//! inline string here made records three times larger and the batch path
//! slower (journal 2026-12-07, §10). `server/build.rs` points the generated
//! `LogRequest` and `LogBatchRequest` here.
//!
//! Decoding follows prost's rules for a proto3 message: a field given twice
//! keeps its last value (`details` merges), unknown fields are skipped, and a
//! string that is not UTF-8 is refused with prost's own error and path
//! (`EventInput.actor: invalid string value: ...`), which `wire.rs` rewrites
//! for the caller. A unit test holds the decoding to prost's generated one.

use bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use super::details::{WireDetails, take_whole_str};
use crate::store::Name;

/// An event as a caller gives it (`auditlog.v1.EventInput`).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct EventInput {
    pub(crate) event_type: Name,
    pub(crate) actor: Name,
    pub(crate) lead_id: Name,
    pub(crate) workflow: Name,
    pub(crate) details: Option<WireDetails>,
    pub(crate) idempotency_key: Name,
    pub(crate) details_json: String,
}

/// The fields' tags, as the proto numbers them.
const EVENT_TYPE: u32 = 1;
const ACTOR: u32 = 2;
const LEAD_ID: u32 = 3;
const WORKFLOW: u32 = 4;
const DETAILS: u32 = 5;
const IDEMPOTENCY_KEY: u32 = 6;
const DETAILS_JSON: u32 = 7;

impl EventInput {
    /// The name fields, in tag order.
    fn names(&self) -> [(u32, &Name); 5] {
        [
            (EVENT_TYPE, &self.event_type),
            (ACTOR, &self.actor),
            (LEAD_ID, &self.lead_id),
            (WORKFLOW, &self.workflow),
            (IDEMPOTENCY_KEY, &self.idempotency_key),
        ]
    }
}

impl Message for EventInput {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        // In tag order, as prost encodes: `details` (5) between the
        // workflow (4) and the idempotency key (6).
        for (tag, value) in self.names() {
            if tag == IDEMPOTENCY_KEY
                && let Some(details) = &self.details
            {
                encoding::message::encode(DETAILS, details, buf);
            }
            if !value.is_empty() {
                encoding::encode_key(tag, WireType::LengthDelimited, buf);
                encoding::encode_varint(value.len() as u64, buf);
                buf.put_slice(value.as_bytes());
            }
        }
        if !self.details_json.is_empty() {
            encoding::string::encode(DETAILS_JSON, &self.details_json, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let (field, name) = match tag {
            EVENT_TYPE => (&mut self.event_type, "event_type"),
            ACTOR => (&mut self.actor, "actor"),
            LEAD_ID => (&mut self.lead_id, "lead_id"),
            WORKFLOW => (&mut self.workflow, "workflow"),
            IDEMPOTENCY_KEY => (&mut self.idempotency_key, "idempotency_key"),
            DETAILS => {
                if self.details.is_none()
                    && let Some(written) = WireDetails::take_written(wire_type, buf)
                {
                    self.details = Some(written);
                    return Ok(());
                }
                let details = self.details.get_or_insert_with(WireDetails::default);
                return encoding::message::merge(wire_type, details, buf, ctx).map_err(|mut e| {
                    e.push("EventInput", "details");
                    e
                });
            }
            DETAILS_JSON => {
                return encoding::string::merge(wire_type, &mut self.details_json, buf, ctx)
                    .map_err(|mut e| {
                        e.push("EventInput", "details_json");
                        e
                    });
            }
            _ => return encoding::skip_field(wire_type, tag, buf, ctx),
        };
        merge_name(field, wire_type, buf, ctx).map_err(|mut e| {
            e.push("EventInput", name);
            e
        })
    }

    fn encoded_len(&self) -> usize {
        let names: usize = self
            .names()
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(tag, value)| {
                encoding::key_len(*tag)
                    + encoding::encoded_len_varint(value.len() as u64)
                    + value.len()
            })
            .sum();
        let details = self
            .details
            .as_ref()
            .map_or(0, |d| encoding::message::encoded_len(DETAILS, d));
        let json = match self.details_json.is_empty() {
            true => 0,
            false => encoding::string::encoded_len(DETAILS_JSON, &self.details_json),
        };
        names + details + json
    }

    fn clear(&mut self) {
        *self = EventInput::default();
    }
}

/// Decodes a string field into `field`, replacing what it held: from the
/// buffer's chunk when it lies there whole, else through prost's decoder.
fn merge_name(
    field: &mut Name,
    wire_type: WireType,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    if let Some(name) = take_whole_str(wire_type, buf, |s| Name::from(s)) {
        *field = name;
        return Ok(());
    }
    let mut text = String::new();
    encoding::string::merge(wire_type, &mut text, buf, ctx)?;
    *field = Name::from(text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use auditlog_proto::v1 as pb;

    use super::*;

    fn generic(e: &EventInput) -> pb::EventInput {
        pb::EventInput {
            event_type: e.event_type.to_string(),
            actor: e.actor.to_string(),
            lead_id: e.lead_id.to_string(),
            workflow: e.workflow.to_string(),
            details: e.details.as_ref().map(WireDetails::to_struct),
            idempotency_key: e.idempotency_key.to_string(),
            details_json: e.details_json.clone(),
        }
    }

    #[test]
    fn decodes_and_encodes_as_the_generated_message_does() {
        let long = "ü".repeat(200);
        let mut details = prost_types::Struct::default();
        details.fields.insert(
            "k".to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("v".to_owned())),
            },
        );
        let sent = pb::EventInput {
            event_type: "crm_update".to_owned(),
            actor: "crm-sync".to_owned(),
            lead_id: long.clone(),
            workflow: String::new(),
            details: Some(details),
            idempotency_key: "k-1".to_owned(),
            details_json: "{}".to_owned(),
        };
        let wire = sent.encode_to_vec();
        let ours = EventInput::decode(wire.as_slice()).unwrap();
        assert_eq!(ours.lead_id, long.as_str());
        assert_eq!(generic(&ours), sent);
        // And back: the same bytes as prost's encoding.
        assert_eq!(ours.encode_to_vec(), wire);
        assert_eq!(ours.encoded_len(), wire.len());

        // A field given twice keeps its last value; an unknown one is skipped.
        let mut twice = wire.clone();
        pb::EventInput {
            actor: "second".to_owned(),
            ..Default::default()
        }
        .encode(&mut twice)
        .unwrap();
        encoding::string::encode(99, &"unknown".to_owned(), &mut twice);
        let ours = EventInput::decode(twice.as_slice()).unwrap();
        let theirs = pb::EventInput::decode(twice.as_slice()).unwrap();
        assert_eq!(ours.actor, "second");
        assert_eq!(generic(&ours), theirs);
    }

    #[test]
    fn a_string_that_is_not_utf8_is_refused_with_prosts_words_and_path() {
        let mut wire = Vec::new();
        encoding::encode_key(ACTOR, WireType::LengthDelimited, &mut wire);
        encoding::encode_varint(2, &mut wire);
        wire.extend_from_slice(&[0xc3, 0x28]);
        let ours = EventInput::decode(wire.as_slice()).unwrap_err().to_string();
        let theirs = pb::EventInput::decode(wire.as_slice())
            .unwrap_err()
            .to_string();
        assert_eq!(ours, theirs);
        assert!(ours.contains("EventInput.actor"), "{ours}");
        // Cut short: refused too, as prost refuses it.
        let cut = &wire[..wire.len() - 1];
        assert_eq!(
            EventInput::decode(cut).unwrap_err().to_string(),
            pb::EventInput::decode(cut).unwrap_err().to_string()
        );
    }
}
