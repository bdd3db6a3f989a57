//! The (role, RPC) matrix: every RPC of AuditService and AdminService, as
//! the proto declares them, against every caller, token or none.

use auditlog_client::pb;
use pb::admin_service_client::AdminServiceClient;
use pb::audit_service_client::AuditServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::security::server::{Server, channel, within};
use crate::security::tokens::{
    ADMIN, AUDITOR, PIPELINE, READER, UNKNOWN_SECRET, WRITER, authed, token_configs,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Past the token check: anything but UNAUTHENTICATED and
    /// PERMISSION_DENIED (the handler may still refuse, e.g. ApplyRetention
    /// with retention off).
    Allowed,
    PermissionDenied,
    Unauthenticated,
}

const OK: Outcome = Outcome::Allowed;
const DENIED: Outcome = Outcome::PermissionDenied;
const UNAUTH: Outcome = Outcome::Unauthenticated;

/// The matrix's columns: who calls, with which token.
const CALLERS: [(&str, Option<&str>); 7] = [
    ("writer", Some(WRITER.secret)),
    ("reader", Some(READER.secret)),
    ("auditor", Some(AUDITOR.secret)),
    ("admin", Some(ADMIN.secret)),
    ("writer+reader", Some(PIPELINE.secret)),
    ("no token", None),
    ("unknown token", Some(UNKNOWN_SECRET)),
];

/// Every RPC and what each caller of [`CALLERS`] gets, in that order.
#[rustfmt::skip]
const MATRIX: [(&str, [Outcome; 7]); 20] = [
    //                                 writer  reader  auditor admin  w+r     none    unknown
    ("AuditService/Log",              [OK,     DENIED, DENIED, OK,    OK,     UNAUTH, UNAUTH]),
    ("AuditService/LogBatch",         [OK,     DENIED, DENIED, OK,    OK,     UNAUTH, UNAUTH]),
    ("AuditService/Query",            [DENIED, OK,     DENIED, OK,    OK,     UNAUTH, UNAUTH]),
    ("AuditService/StreamEvents",     [DENIED, OK,     OK,     OK,    OK,     UNAUTH, UNAUTH]),
    ("AuditService/VerifyIntegrity",  [DENIED, DENIED, OK,     OK,    DENIED, UNAUTH, UNAUTH]),
    ("AuditService/GetStats",         [DENIED, OK,     DENIED, OK,    OK,     UNAUTH, UNAUTH]),
    ("AuditService/TrackPerformance", [OK,     DENIED, DENIED, OK,    OK,     UNAUTH, UNAUTH]),
    ("AuditService/GetPerformanceStats", [DENIED, OK,  DENIED, OK,    OK,     UNAUTH, UNAUTH]),
    ("AuditService/ExportSubject",    [DENIED, DENIED, OK,     OK,    DENIED, UNAUTH, UNAUTH]),
    ("AuditService/GetCheckpoint",    [DENIED, OK,     OK,     OK,    OK,     UNAUTH, UNAUTH]),
    ("AuditService/GetInclusionProof", [DENIED, OK,    OK,     OK,    OK,     UNAUTH, UNAUTH]),
    ("AuditService/GetConsistencyProof", [DENIED, OK,  OK,     OK,    OK,     UNAUTH, UNAUTH]),
    ("AdminService/Rotate",           [DENIED, DENIED, DENIED, OK,    DENIED, UNAUTH, UNAUTH]),
    ("AdminService/ApplyRetention",   [DENIED, DENIED, DENIED, OK,    DENIED, UNAUTH, UNAUTH]),
    ("AdminService/TestAlerts",       [DENIED, DENIED, DENIED, OK,    DENIED, UNAUTH, UNAUTH]),
    ("AdminService/GetAlertStatus",   [DENIED, DENIED, DENIED, OK,    DENIED, UNAUTH, UNAUTH]),
    ("AdminService/GetWebhookStatus", [DENIED, DENIED, DENIED, OK,    DENIED, UNAUTH, UNAUTH]),
    ("AdminService/GetWebhookSecret", [DENIED, DENIED, DENIED, OK,    DENIED, UNAUTH, UNAUTH]),
    ("AdminService/MailReport",       [DENIED, DENIED, DENIED, OK,    DENIED, UNAUTH, UNAUTH]),
    ("AdminService/Backup",           [DENIED, DENIED, DENIED, OK,    DENIED, UNAUTH, UNAUTH]),
];

/// `Service/Method` of every RPC in the `auditlog.v1` package, from the
/// descriptor the server registers for reflection.
fn proto_rpcs() -> Vec<String> {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(auditlog_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut rpcs = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "auditlog.v1") {
        for service in &file.service {
            for method in &service.method {
                rpcs.push(format!("{}/{}", service.name(), method.name()));
            }
        }
    }
    rpcs
}

fn event(event_type: &str) -> pb::EventInput {
    pb::EventInput {
        event_type: event_type.into(),
        ..Default::default()
    }
}

/// Makes one call of `rpc` with the `authorization` header given; `Ok`
/// when the server answered with data. A stream's status arrives with the
/// response headers or on its first message: both are looked at.
pub(crate) async fn call(
    ch: &Channel,
    rpc: &str,
    authorization: Option<String>,
) -> Result<(), Status> {
    let mut audit = AuditServiceClient::new(ch.clone());
    let mut admin = AdminServiceClient::new(ch.clone());
    let t = authorization.as_deref();
    match rpc {
        "AuditService/Log" => {
            let m = pb::LogRequest {
                event: Some(event("matrix_check")),
                with_proof: false,
            };
            audit.log(authed(m, t)).await.map(|_| ())
        }
        "AuditService/LogBatch" => {
            let m = pb::LogBatchRequest {
                events: vec![event("matrix_check"), event("matrix_check")],
                with_proof: false,
            };
            audit.log_batch(authed(m, t)).await.map(|_| ())
        }
        "AuditService/Query" => {
            let m = pb::QueryRequest {
                limit: 10,
                ..Default::default()
            };
            audit.query(authed(m, t)).await.map(|_| ())
        }
        "AuditService/StreamEvents" => {
            let m = pb::StreamEventsRequest {
                from_seq: 1,
                follow: false,
                ..Default::default()
            };
            let mut stream = audit.stream_events(authed(m, t)).await?.into_inner();
            stream.message().await.map(|_| ())
        }
        "AuditService/VerifyIntegrity" => {
            let m = pb::VerifyIntegrityRequest::default();
            audit.verify_integrity(authed(m, t)).await.map(|_| ())
        }
        "AuditService/GetStats" => {
            let m = pb::GetStatsRequest::default();
            audit.get_stats(authed(m, t)).await.map(|_| ())
        }
        "AuditService/TrackPerformance" => {
            let m = pb::TrackPerformanceRequest {
                operation: "matrix_check".into(),
                duration_ms: 1.5,
                ..Default::default()
            };
            audit.track_performance(authed(m, t)).await.map(|_| ())
        }
        "AuditService/GetCheckpoint" => {
            let m = pb::GetCheckpointRequest::default();
            audit.get_checkpoint(authed(m, t)).await.map(|_| ())
        }
        "AuditService/GetInclusionProof" => {
            let m = pb::GetInclusionProofRequest::default();
            audit.get_inclusion_proof(authed(m, t)).await.map(|_| ())
        }
        "AuditService/GetConsistencyProof" => {
            let m = pb::GetConsistencyProofRequest::default();
            audit.get_consistency_proof(authed(m, t)).await.map(|_| ())
        }
        "AuditService/GetPerformanceStats" => {
            let m = pb::GetPerformanceStatsRequest::default();
            audit.get_performance_stats(authed(m, t)).await.map(|_| ())
        }
        "AuditService/ExportSubject" => {
            let m = pb::ExportSubjectRequest {
                identifier: "jane@example.com".into(),
            };
            let mut stream = audit.export_subject(authed(m, t)).await?.into_inner();
            stream.message().await.map(|_| ())
        }
        "AdminService/Rotate" => {
            let m = pb::RotateRequest { wait: false };
            admin.rotate(authed(m, t)).await.map(|_| ())
        }
        "AdminService/ApplyRetention" => {
            let m = pb::ApplyRetentionRequest {};
            admin.apply_retention(authed(m, t)).await.map(|_| ())
        }
        "AdminService/TestAlerts" => {
            let m = pb::TestAlertsRequest {};
            admin.test_alerts(authed(m, t)).await.map(|_| ())
        }
        "AdminService/GetAlertStatus" => {
            let m = pb::GetAlertStatusRequest {};
            admin.get_alert_status(authed(m, t)).await.map(|_| ())
        }
        "AdminService/GetWebhookStatus" => {
            let m = pb::GetWebhookStatusRequest {};
            admin.get_webhook_status(authed(m, t)).await.map(|_| ())
        }
        "AdminService/GetWebhookSecret" => {
            let m = pb::GetWebhookSecretRequest { name: "crm".into() };
            admin.get_webhook_secret(authed(m, t)).await.map(|_| ())
        }
        "AdminService/MailReport" => {
            let m = pb::MailReportRequest::default();
            admin.mail_report(authed(m, t)).await.map(|_| ())
        }
        "AdminService/Backup" => {
            let m = pb::BackupRequest::default();
            let mut stream = admin.backup(authed(m, t)).await?.into_inner();
            stream.message().await.map(|_| ())
        }
        other => panic!("the test cannot call {other}: add it to `call`"),
    }
}

#[tokio::test]
async fn every_caller_gets_exactly_the_rpcs_of_its_roles() {
    // The table covers every RPC the proto declares, and nothing else.
    let declared = proto_rpcs();
    let listed: Vec<String> = MATRIX.iter().map(|(rpc, _)| rpc.to_string()).collect();
    let unlisted: Vec<&String> = declared.iter().filter(|r| !listed.contains(r)).collect();
    let stale: Vec<&String> = listed.iter().filter(|r| !declared.contains(r)).collect();
    assert!(
        unlisted.is_empty() && stale.is_empty(),
        "MATRIX is out of date with the proto: RPCs without a row: {unlisted:?}; rows for no RPC: \
         {stale:?}"
    );

    // Retention 0 (off): ApplyRetention answers FAILED_PRECONDITION, and
    // GetWebhookSecret NOT_FOUND (no webhook), MailReport and the proof RPCs
    // INVALID_ARGUMENT or FAILED_PRECONDITION (empty requests), which still
    // count as allowed.
    let server = Server::start(
        |c| {
            c.tokens = token_configs();
            c.retention_days = 0.0;
        },
        None,
    )
    .await;
    let ch = channel(server.addr, None).await.unwrap();
    let mut mismatches = Vec::new();
    let mut seen = Vec::new();
    for (rpc, row) in MATRIX {
        for ((caller, token), expected) in CALLERS.iter().zip(row) {
            let header = token.map(|t| format!("Bearer {t}"));
            let result = within(rpc, call(&ch, rpc, header)).await;
            let got = match &result {
                Err(s) if s.code() == Code::Unauthenticated => UNAUTH,
                Err(s) if s.code() == Code::PermissionDenied => DENIED,
                _ => OK,
            };
            let shown = match &result {
                Ok(()) => "OK".to_owned(),
                Err(s) => format!("{:?}: {}", s.code(), s.message()),
            };
            if got != expected {
                mismatches.push(format!(
                    "  {rpc} as {caller}: expected {expected:?}, got {shown}"
                ));
            }
            seen.push(format!("  {rpc} as {caller}: {shown}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} (RPC, caller) pairs got the wrong answer:\n{}\n\nevery answer:\n{}",
        mismatches.len(),
        MATRIX.len() * CALLERS.len(),
        mismatches.join("\n"),
        seen.join("\n")
    );
}
