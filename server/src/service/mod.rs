//! The gRPC services, `auditlog.v1.AuditService` and `AdminService`: thin.
//! Each handler checks and translates its request, calls the store or a
//! feature, and translates the answer back. Handlers never touch files.
//!
//! - `audit.rs`, `admin.rs`: the handlers of each service;
//! - `validate.rs`: the limits on events and the translation of requests
//!   into the store's terms; `query.rs`: Query planning; `page_token.rs`:
//!   the opaque page token;
//! - `forward.rs`: cluster mode, a follower handing Log/LogBatch to the
//!   leader and answering once its own replica holds the receipt;
//! - `proofs.rs`: the checkpoint and proof RPCs over the store's Merkle
//!   tree and the signed checkpoints;
//! - `edge.rs`: the only builder of `Status` and protobuf values, with the
//!   one mapping from store errors to statuses ([`status_of`]) and the one
//!   runner of blocking store work.

mod admin;
mod audit;
mod deadline;
mod edge;
mod forward;
mod page_token;
mod proofs;
mod query;
mod validate;

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::Running;
use crate::performance::Measurements;
use crate::store::{self, Filter, NewEvent, Store, Verifications};

pub(crate) use admin::AdminSvc;
pub(crate) use edge::status_of;
pub(crate) use page_token::PageToken;
pub(crate) use query::MAX_QUERY_LIMIT;
pub(crate) use query::plan_query;
pub(crate) use validate::{MAX_BATCH, MAX_DETAILS_BYTES, MAX_EVENT_TYPE_LEN, MAX_FIELD_LEN};
pub(crate) use validate::{validate_batch, validate_log};

/// The AuditService implementation.
#[derive(Clone)]
pub(crate) struct AuditSvc {
    /// Set once recovery has finished; until then calls are UNAVAILABLE.
    running: Arc<OnceLock<Running>>,
    /// Fires on shutdown so open follow streams end themselves.
    shutdown: CancellationToken,
    /// VerifyIntegrity's turns.
    verifications: Verifications,
}

impl AuditSvc {
    /// VerifyIntegrity takes its turn in `verifications`, with the
    /// scheduled verification.
    pub(crate) fn new(
        running: Arc<OnceLock<Running>>,
        shutdown: CancellationToken,
        verifications: Verifications,
    ) -> AuditSvc {
        AuditSvc {
            running,
            shutdown,
            verifications,
        }
    }

    fn running(&self) -> Result<&Running, Status> {
        if self.shutdown.is_cancelled() {
            return Err(edge::shutting_down());
        }
        self.running.get().ok_or_else(edge::recovering)
    }

    /// Looks for the pseudonym of a lead id when compliance mode replaces
    /// every lead id by its token.
    fn lead_filter(&self, mut filter: Filter) -> Result<Filter, Status> {
        if let Some(lead) = filter.lead_id.take() {
            filter.lead_id = Some(self.running()?.compliance.lead_filter(lead));
        }
        Ok(filter)
    }

    fn store(&self) -> Result<Arc<Store>, Status> {
        self.running().map(|r| Arc::clone(&r.store))
    }

    /// The store once it holds `min_seq` (0: at once), waiting until
    /// `until` (`deadline::wait_until`, from the call's deadline); past it,
    /// UNAVAILABLE saying how far this node has got.
    async fn store_holding(
        &self,
        min_seq: u64,
        until: tokio::time::Instant,
    ) -> Result<Arc<Store>, Status> {
        let store = self.store()?;
        if min_seq > 0 {
            store.wait_for(min_seq, until).await.map_err(status_of)?;
        }
        Ok(store)
    }

    /// Appends: compliance mode pseudonymises each event first;
    /// `performance` events feed the performance windows once written; a
    /// write that failed tells the alerts, which decide whether it deserves
    /// one.
    async fn append(&self, mut events: Vec<NewEvent>) -> Result<Vec<store::Receipt>, Status> {
        let running = self.running()?;
        for event in &mut events {
            running.compliance.apply(event);
        }
        crate::telemetry::stamp_trace_ids(&mut events);
        let measured = Measurements::of(&events);
        if let Some(cluster) = &running.cluster {
            let receipts = cluster
                .append(&running.store, events)
                .await
                .map_err(edge::cluster_status)?;
            measured.written(&running.performance, &receipts);
            return Ok(receipts);
        }
        match running.store.append(events).await {
            Ok(receipts) => {
                measured.written(&running.performance, &receipts);
                Ok(receipts)
            }
            Err(e) => {
                running.alerts.append_failed(&e);
                Err(status_of(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use auditlog_proto::json::StructFromJson;

    use super::edge::event_pb;
    use crate::store::{self, NewEvent, Record};

    #[test]
    fn details_decoded_as_struct_give_the_event_decoded_as_json() {
        let keyring = crate::keys::Keyring::new("k1", vec![7; 32]);
        let serde_json::Value::Object(details) = serde_json::json!({
            "score": 7, "ratio": 0.1, "big": 9_007_199_254_740_993_u64, "ok": true,
            "none": null, "text": "é\n\"q\"", "list": [1, "a", [], {"x": -2.5}], "obj": {}
        }) else {
            unreachable!()
        };
        let with_all = NewEvent {
            event_type: "crm_create".into(),
            actor: "crm-sync".into(),
            caller: Some("pipeline".into()),
            lead_id: Some("LEAD-7".into()),
            workflow: Some("nurture".into()),
            details,
            idempotency_key: Some("idem-1".into()),
        };
        let bare = NewEvent {
            caller: None,
            lead_id: None,
            workflow: None,
            details: serde_json::Map::new(),
            idempotency_key: None,
            ..with_all.clone()
        };
        for (event, batch) in [(with_all, Some(3)), (bare, None)] {
            let (_, line) = Record::seal(
                event,
                42,
                "id-1".into(),
                1_770_237_045_123_456,
                batch,
                store::record::GENESIS,
                &keyring,
            );
            let body = &line[..line.len() - 1];
            let direct: Record<StructFromJson> = store::record::parse_row(body).unwrap();
            let record: Record = store::record::parse_row(body).unwrap();
            assert_eq!(event_pb(direct), event_pb(record));
        }
    }

    #[test]
    fn details_as_struct_refuse_what_details_as_json_refuse() {
        let keyring = crate::keys::Keyring::new("k1", vec![7; 32]);
        let event = NewEvent {
            event_type: "error".into(),
            actor: "a".into(),
            caller: None,
            lead_id: None,
            workflow: None,
            details: serde_json::Map::new(),
            idempotency_key: None,
        };
        let (_, line) = Record::seal(event, 1, "i".into(), 0, None, "p", &keyring);
        let text = std::str::from_utf8(&line[..line.len() - 1]).unwrap();
        let broken = [
            text.replacen("\"actor\"", "\"extra\":1,\"actor\"", 1),
            text.replacen("\"actor\":\"a\",", "", 1),
            text.replacen("1970-01-01T00:00:00.000000Z", "yesterday", 1),
            text.replacen("\"details\":{}", "\"details\":[]", 1),
            text.replacen("\"key_id\"", "\"signature\":\"x\",\"key_id\"", 1),
        ];
        for line in broken {
            assert_ne!(line, text);
            let record = store::record::parse_row::<Record>(line.as_bytes());
            let row = store::record::parse_row::<Record<StructFromJson>>(line.as_bytes());
            assert!(record.is_err() && row.is_err(), "{line}");
        }
    }
}
