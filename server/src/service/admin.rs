//! The AdminService handlers: rotation and retention on demand, the state
//! of the alert channels and webhook endpoints, the webhook secrets the
//! server generated, reports mailed through the alert email channel, and
//! backups (`backup.rs`).

use auditlog_proto::v1::admin_service_server::AdminService;
use auditlog_proto::v1::{self as pb};
use tonic::{Request, Response, Status};

use super::AuditSvc;
use super::edge::{self, status_of};

/// The AdminService implementation.
#[derive(Clone)]
pub(crate) struct AdminSvc {
    audit: AuditSvc,
    /// The retention period; `None` keeps everything.
    retention: Option<std::time::Duration>,
    /// The backup that runs.
    backups: super::backup::OneAtATime,
}

impl AdminSvc {
    pub(crate) fn new(audit: AuditSvc, retention: Option<std::time::Duration>) -> AdminSvc {
        AdminSvc {
            audit,
            retention,
            backups: super::backup::OneAtATime::default(),
        }
    }
}

#[tonic::async_trait]
impl AdminService for AdminSvc {
    type BackupStream = super::backup::BackupStream;

    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let running = self.audit.running()?;
        if running.cluster.is_some() {
            return Err(edge::backup_in_cluster());
        }
        let held = req.into_inner().held;
        if held.len() > super::backup::MAX_HELD {
            return Err(edge::invalid(
                "held",
                &format!(
                    "{} files named; at most {}: name the sealed segments of one earlier backup",
                    held.len(),
                    super::backup::MAX_HELD
                ),
            ));
        }
        let held = crate::store::Held::new(held.into_iter().map(|h| (h.path, h.sha256, h.size)));
        let stream =
            super::backup::start(std::sync::Arc::clone(&running.store), &self.backups, held)
                .await?;
        Ok(Response::new(stream))
    }

    async fn rotate(
        &self,
        req: Request<pb::RotateRequest>,
    ) -> Result<Response<pb::RotateResponse>, Status> {
        let store = self.audit.store()?;
        let sealed = store
            .rotate(req.into_inner().wait)
            .await
            .map_err(status_of)?;
        Ok(Response::new(edge::rotate_pb(sealed)))
    }

    async fn apply_retention(
        &self,
        _req: Request<pb::ApplyRetentionRequest>,
    ) -> Result<Response<pb::ApplyRetentionResponse>, Status> {
        let Some(max_age) = self.retention else {
            return Err(edge::retention_off());
        };
        let running = self.audit.running()?;
        let purge = match &running.cluster {
            // Only the leader decides; a follower answers where it is.
            Some(node) => node
                .apply_retention(&running.store, max_age)
                .await
                .map_err(edge::cluster_status)?,
            None => running
                .store
                .apply_retention(max_age)
                .await
                .map_err(status_of)?,
        };
        Ok(Response::new(edge::retention_pb(purge)))
    }

    async fn test_alerts(
        &self,
        _req: Request<pb::TestAlertsRequest>,
    ) -> Result<Response<pb::TestAlertsResponse>, Status> {
        let results = self.audit.running()?.alerts.test().await;
        Ok(Response::new(edge::test_alerts_pb(results)))
    }

    async fn get_alert_status(
        &self,
        _req: Request<pb::GetAlertStatusRequest>,
    ) -> Result<Response<pb::GetAlertStatusResponse>, Status> {
        let status = self.audit.running()?.alerts.status();
        Ok(Response::new(edge::alert_status_pb(status)))
    }

    async fn get_webhook_status(
        &self,
        _req: Request<pb::GetWebhookStatusRequest>,
    ) -> Result<Response<pb::GetWebhookStatusResponse>, Status> {
        let running = self.audit.running()?;
        let head = running.store.head();
        Ok(Response::new(edge::webhook_status_pb(
            running.webhooks.status(),
            head,
        )))
    }

    async fn get_webhook_secret(
        &self,
        req: Request<pb::GetWebhookSecretRequest>,
    ) -> Result<Response<pb::GetWebhookSecretResponse>, Status> {
        let name = req.into_inner().name;
        let running = self.audit.running()?;
        edge::webhook_secret_pb(&name, running.webhooks.generated_secret(&name)).map(Response::new)
    }

    async fn mail_report(
        &self,
        req: Request<pb::MailReportRequest>,
    ) -> Result<Response<pb::MailReportResponse>, Status> {
        let req = req.into_inner();
        super::validate::check_mail(&req)?;
        let running = self.audit.running()?;
        let sent = running
            .alerts
            .mail_page(&req.subject, req.html, req.text)
            .await;
        edge::mail_report_pb(sent).map(Response::new)
    }
}
