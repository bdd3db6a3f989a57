//! The AuditService handlers: each checks its request (`validate`, `query`),
//! calls the store or a feature, and hands the answer to `edge` to become
//! protobuf.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;

use auditlog_proto::v1 as pb;
use tokio_stream::Stream;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use super::AuditSvc;
use super::api::{self, audit_service_server::AuditService};
use super::deadline::{self, wait_until};
use super::edge::{self, blocking, status_of};
use super::event_bytes::{EventBytes, EventJsonBytes};
use super::query::{EncodedPage, page_of, plan_query};
use super::receipt_bytes::{LogAnswer, LogBatchAnswer};
use super::stream::{self, Encoded, EncodedJson};
use super::validate::{self, validate_batch, validate_log};
use crate::auth::Caller;
use crate::compliance::Subject;
use crate::hub;
use crate::performance;
use crate::store::{Filter, Order, Record, StatsQuery, Store, StoreError};

type EventStream = Pin<Box<dyn Stream<Item = Result<Encoded, Status>> + Send>>;

#[tonic::async_trait]
impl AuditService for AuditSvc {
    async fn log(&self, req: Request<api::LogRequest>) -> Result<Response<LogAnswer>, Status> {
        if let Some(answer) = self.forward_log(&req).await? {
            return Ok(Response::new(LogAnswer::Forwarded(answer)));
        }
        let caller = req.extensions().get::<Caller>().cloned();
        let until = wait_until(&req, deadline::PROOF);
        let req = req.into_inner();
        let with_proof = req.with_proof;
        let event = validate_log(req, caller.as_ref())?;
        let mut receipts = self.append(vec![event]).await?;
        let proofs = if with_proof {
            let seqs = receipts.iter().map(|r| r.seq).collect();
            Some(self.receipt_proofs(seqs, until).await)
        } else {
            None
        };
        Ok(Response::new(LogAnswer::Written {
            receipt: receipts.pop(),
            proofs,
        }))
    }

    async fn log_batch(
        &self,
        req: Request<api::LogBatchRequest>,
    ) -> Result<Response<LogBatchAnswer>, Status> {
        if let Some(answer) = self.forward_log_batch(&req).await? {
            return Ok(Response::new(LogBatchAnswer::Forwarded(answer)));
        }
        let caller = req.extensions().get::<Caller>().cloned();
        let until = wait_until(&req, deadline::PROOF);
        let req = req.into_inner();
        let events = validate_batch(req.events, caller.as_ref())?;
        let receipts = self.append(events).await?;
        let proofs = if req.with_proof {
            let seqs = receipts.iter().map(|r| r.seq).collect();
            Some(self.receipt_proofs(seqs, until).await)
        } else {
            None
        };
        Ok(Response::new(LogBatchAnswer::Written { receipts, proofs }))
    }

    async fn query(&self, req: Request<pb::QueryRequest>) -> Result<Response<EncodedPage>, Status> {
        let (min_seq, until) = (req.get_ref().min_seq, wait_until(&req, deadline::MIN_SEQ));
        let plan = plan_query(req.into_inner(), |f| self.lead_filter(f))?;
        let store = self.store_holding(min_seq, until).await?;
        let page = blocking("query", move || {
            if plan.details_json {
                page_of::<EventJsonBytes>(&store, &plan)
            } else {
                page_of::<EventBytes>(&store, &plan)
            }
        })
        .await?;
        Ok(Response::new(page))
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        req: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let until = wait_until(&req, deadline::MIN_SEQ);
        let req = req.into_inner();
        let sub = hub::Subscription {
            filter: self.lead_filter(validate::filter_of(req.filter)?)?,
            from_seq: req.from_seq,
            follow: req.follow,
        };
        let store = self.store_holding(req.min_seq, until).await?;
        let stream: EventStream = if req.stored_lines {
            let lines = hub::spawn::<stream::Line>(store, sub, self.shutdown.clone());
            Box::pin(stream::lines(lines).map(|item| item.map_err(status_of)))
        } else if req.details_as_json {
            let events = hub::spawn::<EncodedJson>(store, sub, self.shutdown.clone());
            Box::pin(
                events
                    .into_stream()
                    .map(|item| item.map(|e| e.0).map_err(status_of)),
            )
        } else {
            let events = hub::spawn::<Encoded>(store, sub, self.shutdown.clone());
            Box::pin(events.into_stream().map(|item| item.map_err(status_of)))
        };
        Ok(Response::new(stream))
    }

    async fn verify_integrity(
        &self,
        req: Request<pb::VerifyIntegrityRequest>,
    ) -> Result<Response<pb::VerifyIntegrityResponse>, Status> {
        let req = req.into_inner();
        validate::check_verify(&req)?;
        let checkpoints: Vec<crate::store::Checkpoint> = req
            .checkpoints
            .into_iter()
            .map(|c| crate::store::Checkpoint {
                seq: c.seq,
                signature: c.signature,
            })
            .collect();
        let running = self.running()?;
        let store = Arc::clone(&running.store);
        validate::check_verify_start(
            req.from_seq,
            store.acknowledged_head(),
            running.cluster.is_none(),
        )?;
        let latest = running.checkpoints.latest();
        let whole = req.from_seq <= 1 && req.to_seq == 0;
        let started = std::time::Instant::now();
        // The tree and the checkpoint are checked on a whole log whose chain
        // is clean: they catch what the chain cannot (a rewrite signed with
        // the HMAC key), and add nothing where it already located damage.
        let tree = whole.then(|| latest.map(|l| (l.size, l.root, crate::checkpoint::NOTE_FILE)));
        let report = self
            .verifications
            .verify(store, req.from_seq, req.to_seq, checkpoints, tree)
            .await
            .map_err(status_of)?;
        Ok(Response::new(edge::verify_pb(report, started.elapsed())))
    }

    async fn get_stats(
        &self,
        req: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let until = wait_until(&req, deadline::MIN_SEQ);
        let req = req.into_inner();
        let query = validate::stats_query_of(&req)?;
        let error_types = req.error_types;
        let store = self.store_holding(req.min_seq, until).await?;
        let (stats, errors_by_type) = blocking("stats", move || {
            let stats = store.stats(&query).map_err(|e| {
                edge::invalid(
                    "bucket_seconds",
                    &format!("{e}: narrow since/until or use wider buckets"),
                )
            })?;
            let errors = if error_types {
                count_error_types(&store, &query).map_err(status_of)?
            } else {
                Default::default()
            };
            Ok((stats, errors))
        })
        .await?;
        Ok(Response::new(edge::stats_pb(stats, errors_by_type)))
    }

    async fn track_performance(
        &self,
        req: Request<pb::TrackPerformanceRequest>,
    ) -> Result<Response<pb::TrackPerformanceResponse>, Status> {
        let caller = req.extensions().get::<Caller>().cloned();
        let event = validate::validate_track(req.into_inner(), caller.as_ref())?;
        let mut receipts = self.append(vec![event]).await?;
        Ok(Response::new(edge::track_pb(receipts.pop())))
    }

    async fn get_performance_stats(
        &self,
        req: Request<pb::GetPerformanceStatsRequest>,
    ) -> Result<Response<pb::GetPerformanceStatsResponse>, Status> {
        let req = req.into_inner();
        let operation = validate::non_empty(req.operation);
        let (since, until) = validate::range_of(req.since.as_ref(), req.until.as_ref(), "")?;
        let running = self.running()?;
        let (stats, window) = if since.is_none() && until.is_none() {
            (
                running.performance.stats(operation.as_deref()),
                u32::try_from(running.performance.window()).unwrap_or(u32::MAX),
            )
        } else {
            let store = Arc::clone(&running.store);
            let stats = blocking("performance", move || {
                performance::stats_from_log(&store, operation.as_deref(), since, until)
                    .map_err(status_of)
            })
            .await?;
            (stats, 0)
        };
        Ok(Response::new(edge::performance_pb(stats, window)))
    }

    type ExportSubjectStream =
        Pin<Box<dyn Stream<Item = Result<pb::ExportSubjectResponse, Status>> + Send>>;

    async fn export_subject(
        &self,
        req: Request<pb::ExportSubjectRequest>,
    ) -> Result<Response<Self::ExportSubjectStream>, Status> {
        let identifier = req.into_inner().identifier;
        validate::check_identifier(&identifier)?;
        let running = self.running()?;
        let subject = Subject::new(&identifier, &running.compliance);
        let sub = hub::Subscription {
            filter: Filter::default(),
            from_seq: 1,
            follow: false,
        };
        let records = hub::spawn::<Record>(Arc::clone(&running.store), sub, self.shutdown.clone());
        let items = records.into_stream().filter_map(move |item| match item {
            Ok(record) => {
                let matched_fields = subject.matches(&record);
                (!matched_fields.is_empty())
                    .then(|| Ok(edge::export_item_pb(record, matched_fields)))
            }
            Err(e) => Some(Err(status_of(e))),
        });
        Ok(Response::new(Box::pin(items)))
    }

    async fn get_checkpoint(
        &self,
        req: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        let until = wait_until(&req, deadline::PROOF);
        self.get_checkpoint_impl(req.into_inner(), until)
            .await
            .map(Response::new)
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::GetInclusionProofResponse>, Status> {
        let until = wait_until(&req, deadline::PROOF);
        self.get_inclusion_proof_impl(req.into_inner(), until)
            .await
            .map(Response::new)
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        self.get_consistency_proof_impl(req.into_inner())
            .await
            .map(Response::new)
    }
}

/// `error` events of the query's range and workflow per `details.error_type`.
fn count_error_types(
    store: &Store,
    query: &StatsQuery,
) -> Result<HashMap<String, u64>, StoreError> {
    // Types asked for without `error`: there are no error events to count.
    if !query.event_types.is_empty() && !query.event_types.iter().any(|t| t == "error") {
        return Ok(HashMap::new());
    }
    let filter = Filter {
        event_types: vec!["error".to_owned()],
        workflow: query.workflow.clone(),
        since: query.since,
        until: query.until,
        ..Filter::default()
    };
    let mut counts = HashMap::new();
    store.scan(
        &filter,
        Order::OldestFirst,
        None,
        u64::MAX,
        |records: Vec<Record>| {
            for record in records {
                let kind = record
                    .details
                    .get("error_type")
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "unknown".to_owned());
                *counts.entry(kind).or_default() += 1;
            }
            ControlFlow::Continue(())
        },
    )?;
    Ok(counts)
}
