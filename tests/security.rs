//! Who gets in, through real servers on 127.0.0.1 and real clients.
//!
//! - Bearer tokens with roles: one table of every (RPC, caller) pair of
//!   AuditService and AdminService, checked against the proto so a new RPC
//!   cannot go unlisted; health and reflection stay open; the token's name is
//!   the actor of the events it writes; refusals say what to do and never
//!   echo the token.
//! - TLS and mutual TLS with certificates minted here (rcgen): a client that
//!   trusts the CA gets in; plaintext, another CA, no client certificate or
//!   one from another CA do not. The CLI reaches a TLS server with a token,
//!   and the server's own output never holds a token.
//! - Safe by default: the `auditlog-server` binary refuses a network address
//!   without both TLS and tokens unless `allow_insecure` is set, and warns
//!   when it is.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use auditlog_client::{Client, NewEvent, Options, Query, pb};
use auditlog_server::Config;
use auditlog_server::config::{Role, TokenConfig};
use common::{Pki, TEST_KEY, workspace_bin};
use pb::admin_service_client::AdminServiceClient;
use pb::audit_service_client::AuditServiceClient;
use sha2::Digest as _;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

// ---------------------------------------------------------------------------
// Tokens

/// A token the protected servers know: its name, the secret a caller sends,
/// and its roles.
struct Token {
    name: &'static str,
    secret: &'static str,
    roles: &'static [Role],
}

const WRITER: Token = Token {
    name: "svc-writer",
    secret: "wr-4c1f9a7e2b-secret",
    roles: &[Role::Writer],
};
const READER: Token = Token {
    name: "dashboard",
    secret: "rd-8e02b6d13f-secret",
    roles: &[Role::Reader],
};
const AUDITOR: Token = Token {
    name: "auditor",
    secret: "au-1d7c5e90a4-secret",
    roles: &[Role::Auditor],
};
const ADMIN: Token = Token {
    name: "ops",
    secret: "ad-63f0e8b2c9-secret",
    roles: &[Role::Admin],
};
const PIPELINE: Token = Token {
    name: "pipeline",
    secret: "pl-9b4a2d7f01-secret",
    roles: &[Role::Writer, Role::Reader],
};
/// Well formed, but configured nowhere.
const UNKNOWN_SECRET: &str = "xx-5a5a5a5a5a-secret";

const ALL_TOKENS: [&Token; 5] = [&WRITER, &READER, &AUDITOR, &ADMIN, &PIPELINE];

fn sha256_hex(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// The `[[tokens]]` of every protected server here.
fn token_configs() -> Vec<TokenConfig> {
    ALL_TOKENS
        .iter()
        .map(|t| TokenConfig {
            name: t.name.into(),
            sha256: sha256_hex(t.secret),
            roles: t.roles.to_vec(),
            rate_per_sec: None,
            burst: None,
            actors: None,
        })
        .collect()
}

/// The same tokens as TOML, for the server binary.
fn tokens_toml() -> String {
    ALL_TOKENS
        .iter()
        .map(|t| {
            let roles: Vec<String> = t
                .roles
                .iter()
                .map(|r| format!("{:?}", format!("{r:?}").to_lowercase()))
                .collect();
            format!(
                "[[tokens]]\nname = {:?}\nsha256 = {:?}\nroles = [{}]\n",
                t.name,
                sha256_hex(t.secret),
                roles.join(", ")
            )
        })
        .collect()
}

/// `message` with the metadata `authorization: <header>` when given.
fn authed<T>(message: T, header: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(header) = header {
        request
            .metadata_mut()
            .insert("authorization", header.parse().unwrap());
    }
    request
}

// ---------------------------------------------------------------------------
// An in-process server on 127.0.0.1:0 whose readiness is checked through
// health over TLS when it serves TLS (common::TestServer checks over
// plaintext only).

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server on a fresh temp dir with `adjust`ed config; `tls`
    /// is how the readiness check connects (None: plaintext).
    async fn start(adjust: impl FnOnce(&mut Config), tls: Option<ClientTlsConfig>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            hmac_key: Some(TEST_KEY.into()),
            ..Config::default()
        };
        adjust(&mut config);
        config.validate().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(auditlog_server::run(config, listener, async move {
            let _ = stopped.await;
        }));
        for _ in 0..400 {
            if task.is_finished() {
                panic!("the server stopped while starting: {:?}", task.await);
            }
            if let Ok(ch) = channel(addr, tls.clone()).await
                && health(&ch, "").await == Ok(ServingStatus::Serving)
            {
                return Server {
                    addr,
                    stop: Some(stop),
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server at {addr} did not report SERVING");
    }

    /// A server that requires the five tokens.
    async fn with_tokens() -> Server {
        Server::start(|c| c.tokens = token_configs(), None).await
    }

    fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A plaintext client sending `token`.
    async fn client(&self, token: &str) -> Client {
        let options = Options {
            token: Some(token.into()),
            ..Options::default()
        };
        Client::connect_with(self.http_url(), options)
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A channel to `addr`'s port on 127.0.0.1: plaintext, or TLS with `tls`.
async fn channel(
    addr: SocketAddr,
    tls: Option<ClientTlsConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://127.0.0.1:{}", addr.port()))
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    endpoint.connect().await
}

/// Health of `service` ("" for the server), or the refusal's code and
/// message.
async fn health(ch: &Channel, service: &str) -> Result<ServingStatus, String> {
    common::health_of(ch, service)
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// `future`, or a panic naming `what` when it takes more than 10 s: a
/// refusal must be an answer, never a hang.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 10 s"))
}

// ---------------------------------------------------------------------------
// The (role, RPC) matrix

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
const MATRIX: [(&str, [Outcome; 7]); 19] = [
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
async fn call(ch: &Channel, rpc: &str, authorization: Option<String>) -> Result<(), Status> {
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

// ---------------------------------------------------------------------------
// What stays open, who is recorded, what refusals say

#[tokio::test]
async fn health_and_reflection_need_no_token_on_a_protected_server() {
    use tonic_reflection::pb::v1alpha;
    let server = Server::with_tokens().await;
    let ch = channel(server.addr, None).await.unwrap();

    // The server is protected: the same channel without a token is refused.
    let refused = call(&ch, "AuditService/GetStats", None).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    assert_eq!(health(&ch, "").await, Ok(ServingStatus::Serving));
    assert_eq!(
        health(&ch, "auditlog.v1.AuditService").await,
        Ok(ServingStatus::Serving)
    );
    // A probe sending a stale token is not turned away either.
    let stale = HealthClient::new(ch.clone())
        .check(authed(
            HealthCheckRequest {
                service: String::new(),
            },
            Some(&format!("Bearer {UNKNOWN_SECRET}")),
        ))
        .await
        .map(|r| r.into_inner().status())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()));
    assert_eq!(stale, Ok(ServingStatus::Serving));

    let names = common::reflection_v1_services(ch.clone()).await;
    for expected in ["auditlog.v1.AuditService", "auditlog.v1.AdminService"] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }

    let answer = common::reflection_v1alpha_file(ch, "auditlog.v1.AuditService").await;
    assert!(
        matches!(
            answer,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
        ),
        "v1alpha reflection did not answer without a token: {answer:?}"
    );
}

#[tokio::test]
async fn the_token_name_is_the_actor_unless_the_caller_names_one() {
    let server = Server::with_tokens().await;
    let writer = server.client(WRITER.secret).await;
    let pipeline = server.client(PIPELINE.secret).await;
    let admin = server.client(ADMIN.secret).await;

    let unnamed = writer
        .log(NewEvent::lead_ingested("LEAD-1", "webform"))
        .await
        .unwrap();
    let named = writer
        .log(NewEvent::new("email_sent").actor("mailer"))
        .await
        .unwrap();
    let batch = pipeline
        .log_batch([
            NewEvent::new("crm_update"),
            NewEvent::new("crm_update").actor("crm-sync"),
        ])
        .await
        .unwrap();
    let by_admin = admin.log(NewEvent::new("workflow_started")).await.unwrap();

    let events = admin
        .query_all(Query::new().oldest_first().limit(1000))
        .await
        .unwrap();
    let actor = |seq: u64| {
        events
            .iter()
            .find(|e| e.seq == seq)
            .map(|e| e.actor.clone())
            .unwrap_or_else(|| panic!("seq {seq} not found in {events:?}"))
    };
    let got = [
        actor(unnamed.seq),
        actor(named.seq),
        actor(batch[0].seq),
        actor(batch[1].seq),
        actor(by_admin.seq),
    ];
    assert_eq!(
        got,
        ["svc-writer", "mailer", "pipeline", "crm-sync", "ops"],
        "actors of: Log without actor (writer), Log with actor, LogBatch without and with \
         actor (writer+reader), Log without actor (admin)"
    );
    // The recorded actor is what filters find.
    let mine = admin
        .query(Query::new().actor("svc-writer"))
        .await
        .unwrap()
        .events;
    assert_eq!(mine.len(), 1, "{mine:?}");
}

/// A refused call: the caller, its `authorization` header, the RPC, the
/// code, and what the message must name.
type RefusalCase<'a> = (&'a str, Option<String>, &'a str, Code, &'a [&'a str]);

#[tokio::test]
async fn refusals_say_what_to_do_and_never_contain_the_token() {
    let server = Server::with_tokens().await;
    let ch = channel(server.addr, None).await.unwrap();
    let bearer = |secret: &str| Some(format!("Bearer {secret}"));
    #[rustfmt::skip]
    let cases: [RefusalCase; 8] = [
        ("no token", None, "AuditService/GetStats", Code::Unauthenticated, &["authorization: Bearer"]),
        ("unknown token", bearer(UNKNOWN_SECRET), "AuditService/Log", Code::Unauthenticated, &["authorization: Bearer"]),
        ("a secret without `Bearer `", Some(ADMIN.secret.into()), "AuditService/GetStats", Code::Unauthenticated, &["authorization: Bearer"]),
        ("reader", bearer(READER.secret), "AuditService/Log", Code::PermissionDenied, &["writer", "Log"]),
        ("writer", bearer(WRITER.secret), "AuditService/Query", Code::PermissionDenied, &["reader", "Query"]),
        ("writer+reader", bearer(PIPELINE.secret), "AuditService/VerifyIntegrity", Code::PermissionDenied, &["auditor", "VerifyIntegrity"]),
        ("auditor", bearer(AUDITOR.secret), "AdminService/Rotate", Code::PermissionDenied, &["admin", "Rotate"]),
        ("writer", bearer(WRITER.secret), "AdminService/GetWebhookStatus", Code::PermissionDenied, &["admin", "GetWebhookStatus"]),
    ];
    let secrets: Vec<&str> = ALL_TOKENS
        .iter()
        .map(|t| t.secret)
        .chain([UNKNOWN_SECRET])
        .collect();
    let mut wrong = Vec::new();
    for (caller, header, rpc, code, names) in cases {
        let what = format!("{rpc} as {caller}");
        let Err(status) = within(&what, call(&ch, rpc, header)).await else {
            wrong.push(format!("{what}: served, expected {code:?}"));
            continue;
        };
        let text = status.message();
        if status.code() != code {
            wrong.push(format!("{what}: expected {code:?}, got {status:?}"));
        }
        for name in names {
            if !text.contains(name) {
                wrong.push(format!(
                    "{what}: the message does not name {name:?}: {text:?}"
                ));
            }
        }
        for secret in &secrets {
            if text.contains(secret) || text.contains(&sha256_hex(secret)) {
                wrong.push(format!(
                    "{what}: the message holds a token or its hash: {text:?}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The client crate's error says the same, and neither holds the token.
    let client = server.client(UNKNOWN_SECRET).await;
    let err = client.stats(None).await.unwrap_err().to_string();
    assert!(
        err.starts_with("UNAUTHENTICATED") && err.contains("authorization: Bearer"),
        "{err}"
    );
    assert!(!err.contains(UNKNOWN_SECRET), "{err}");
}

// ---------------------------------------------------------------------------
// TLS

/// Connects to `url` with `options` and asks for stats; the error text on
/// failure. Never hangs.
async fn attempt(url: &str, options: Options) -> Result<pb::GetStatsResponse, String> {
    within(&format!("stats from {url}"), async {
        let client = Client::connect_with(url, options)
            .await
            .map_err(|e| e.to_string())?;
        client.stats(None).await.map_err(|e| e.to_string())
    })
    .await
}

fn mentions_tls(error: &str) -> bool {
    let e = error.to_lowercase();
    ["certificate", "tls", "issuer", "handshake"]
        .iter()
        .any(|w| e.contains(w))
}

#[tokio::test]
async fn tls_admits_clients_that_trust_its_ca_and_no_one_else() {
    let pki = Pki::new();
    let server = Server::start(
        |c| c.tls = Some(pki.server_tls(false)),
        Some(pki.client_tls(None)),
    )
    .await;
    let port = server.addr.port();

    // By name, trusting the CA.
    let client = Client::connect_with(
        format!("https://localhost:{port}"),
        pki.options(&pki.ca, None),
    )
    .await
    .unwrap();
    let receipt = client.log(NewEvent::new("tls_check")).await.unwrap();
    assert_eq!(receipt.seq, 1);

    // By address, naming the certificate's host.
    let by_ip = Options {
        domain: Some("localhost".into()),
        ..pki.options(&pki.ca, None)
    };
    let stats = attempt(&format!("https://127.0.0.1:{port}"), by_ip)
        .await
        .unwrap();
    assert_eq!(stats.total_events, 1);

    // Plaintext to a TLS port gets nowhere.
    let plain = attempt(&format!("http://127.0.0.1:{port}"), Options::default()).await;
    assert!(plain.is_err(), "a plaintext client was served: {plain:?}");

    // A client trusting another CA refuses the server's certificate.
    let wrong_ca = attempt(
        &format!("https://localhost:{port}"),
        pki.options(&pki.other_ca, None),
    )
    .await;
    let err = wrong_ca.expect_err("a client trusting another CA was served");
    assert!(mentions_tls(&err), "the error does not say why: {err}");

    // So does one with only the public web roots.
    let public_roots = attempt(&format!("https://localhost:{port}"), Options::default()).await;
    let err = public_roots.expect_err("a client trusting the web roots was served");
    assert!(mentions_tls(&err), "the error does not say why: {err}");

    // None of that hurt the server.
    assert_eq!(client.stats(None).await.unwrap().total_events, 1);
}

#[tokio::test]
async fn mutual_tls_admits_only_client_certificates_from_its_ca() {
    let pki = Pki::new();
    let server = Server::start(
        |c| c.tls = Some(pki.server_tls(true)),
        Some(pki.client_tls(Some(&pki.client))),
    )
    .await;
    let url = format!("https://localhost:{}", server.addr.port());

    let ours = Client::connect_with(&url, pki.options(&pki.ca, Some(&pki.client)))
        .await
        .unwrap();
    let receipt = ours.log(NewEvent::new("mtls_check")).await.unwrap();
    assert_eq!(receipt.seq, 1);

    let mut wrong = Vec::new();
    for (who, identity) in [
        ("no client certificate", None),
        (
            "a client certificate from another CA",
            Some(&pki.other_client),
        ),
        // Signed by the CA, but for a server, not a client.
        ("the server's certificate", Some(&pki.server)),
    ] {
        let options = pki.options(&pki.ca, identity);
        let logged = within(who, async {
            let client = Client::connect_with(&url, options)
                .await
                .map_err(|e| e.to_string())?;
            client
                .log(NewEvent::new("intruder"))
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        match logged {
            Ok(receipt) => wrong.push(format!("{who}: served ({receipt:?})")),
            Err(e) => eprintln!("{who}: refused: {e}"),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Nothing they sent was written, and the refusals did not hurt the
    // server or its good client.
    assert_eq!(ours.stats(None).await.unwrap().total_events, 1);
}

// ---------------------------------------------------------------------------
// The binaries

/// The `auditlog-server` binary as a child, its stdout and stderr in files;
/// killed when dropped.
struct Spawned {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Spawned {
    /// Starts the server binary in `dir` with `args` and `env` and no other
    /// `AUDITLOG_*` variables.
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Spawned {
        let out = dir.join("server.stdout");
        let err = dir.join("server.stderr");
        let mut command = Command::new(workspace_bin("auditlog-server", "auditlog-server"));
        for (key, _) in std::env::vars() {
            if key.starts_with("AUDITLOG_") {
                command.env_remove(key);
            }
        }
        let child = command
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Spawned { child, out, err }
    }

    /// Waits up to 10 s for the process to exit by itself.
    fn exit_code(&mut self) -> Option<i32> {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }

    /// Waits until health on `addr` (over TLS with `tls`) reports SERVING.
    async fn wait_serving(&mut self, addr: SocketAddr, tls: Option<ClientTlsConfig>) {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "auditlog-server exited ({status}) instead of serving: {}",
                    self.stderr()
                );
            }
            if let Ok(ch) = channel(addr, tls.clone()).await
                && health(&ch, "").await == Ok(ServingStatus::Serving)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("auditlog-server on {addr} did not serve: {}", self.stderr());
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago on `ip`.
fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the `auditlog` CLI with `args`; (exit code, stdout, stderr).
fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(workspace_bin("auditlog-client", "auditlog"));
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDITLOG_") {
            command.env_remove(key);
        }
    }
    let out = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_a_tls_server_with_a_token_and_no_token_is_ever_logged() {
    let pki = Pki::new();
    let work = tempfile::tempdir().unwrap();
    let port = free_port("127.0.0.1");
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = {:?}\nhmac_key = {TEST_KEY:?}\n\n\
         [tls]\ncert_file = {:?}\nkey_file = {:?}\n\n{}",
        work.path().join("data").display().to_string(),
        pki.path("server.pem").display().to_string(),
        pki.path("server.key").display().to_string(),
        tokens_toml()
    );
    let config_path = work.path().join("auditlog.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut server = Spawned::start(
        work.path(),
        &["--config", config_path.to_str().unwrap()],
        // Debug, so a token that reached any log line would show.
        &[("RUST_LOG", "debug")],
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    server.wait_serving(addr, Some(pki.client_tls(None))).await;

    let url = format!("https://localhost:{port}");
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let base = ["--server", url.as_str(), "--ca-cert", ca];
    let with = |rest: &[&str]| -> Vec<String> {
        base.iter()
            .chain(rest)
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, env: &[(&str, &str)]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args, env)
    };

    let (code, out, err) = run(
        with(&[
            "--token",
            WRITER.secret,
            "log",
            "cli_check",
            "--lead",
            "L-1",
        ]),
        &[],
    );
    assert_eq!(code, 0, "log over TLS with a writer token: {out}{err}");

    let (code, out, err) = run(with(&["--token", READER.secret, "stats"]), &[]);
    assert_eq!(code, 0, "stats over TLS with a reader token: {out}{err}");
    let events = out.lines().find_map(|l| l.strip_prefix("events:"));
    assert_eq!(events.map(str::trim), Some("1"), "{out}");

    // The token from the environment.
    let (code, out, err) = run(
        with(&["--json", "stats"]),
        &[("AUDITLOG_TOKEN", ADMIN.secret)],
    );
    assert_eq!(code, 0, "stats with AUDITLOG_TOKEN: {out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["total_events"], 1, "{out}");

    // Refusals: one line on stderr, a non-zero exit, no token.
    let mut wrong = Vec::new();
    let secrets = [WRITER.secret, READER.secret, ADMIN.secret, UNKNOWN_SECRET];
    for (what, args, expect) in [
        ("no token", with(&["stats"]), "UNAUTHENTICATED"),
        (
            "unknown token",
            with(&["--token", UNKNOWN_SECRET, "stats"]),
            "UNAUTHENTICATED",
        ),
        (
            "reader rotating",
            with(&["--token", READER.secret, "rotate"]),
            "PERMISSION_DENIED",
        ),
        (
            "no --ca-cert",
            vec![
                "--server".into(),
                url.clone(),
                "--token".into(),
                READER.secret.into(),
                "stats".into(),
            ],
            "",
        ),
        (
            "plaintext",
            vec![
                "--server".into(),
                format!("http://127.0.0.1:{port}"),
                "--token".into(),
                READER.secret.into(),
                "stats".into(),
            ],
            "",
        ),
    ] {
        let (code, out, err) = run(args, &[]);
        if code == 0 {
            wrong.push(format!("{what}: exit 0: {out}"));
        }
        if !err.contains(expect) || err.trim().is_empty() {
            wrong.push(format!("{what}: stderr does not say {expect:?}: {err:?}"));
        }
        if secrets.iter().any(|s| err.contains(s) || out.contains(s)) {
            wrong.push(format!("{what}: the output holds a token: {out}{err}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    server.kill();
    let logs = format!("{}{}", server.stdout(), server.stderr());
    for t in ALL_TOKENS {
        assert!(
            !logs.contains(t.secret),
            "the server's output holds the {} token",
            t.name
        );
    }
    assert!(!logs.contains(UNKNOWN_SECRET), "the server logged a token");
    // It does say which token was refused.
    assert!(
        logs.contains("dashboard") && logs.contains("Rotate"),
        "the server did not log the refused token's name and method:\n{logs}"
    );
}

/// How a server is told to bind a network address: a label, flags,
/// environment, and a config file's text.
type BindCase<'a> = (
    &'a str,
    &'a [&'a str],
    &'a [(&'a str, &'a str)],
    Option<String>,
);

#[test]
fn a_network_address_without_tls_and_tokens_is_refused() {
    let pki = Pki::new();
    let tls = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        pki.path("server.pem").display().to_string(),
        pki.path("server.key").display().to_string(),
    );
    let listen = "listen = \"0.0.0.0:0\"\n";
    let cases: [BindCase; 5] = [
        ("--listen 0.0.0.0:0", &["--listen", "0.0.0.0:0"], &[], None),
        ("--listen [::]:0", &["--listen", "[::]:0"], &[], None),
        (
            "AUDITLOG_LISTEN",
            &[],
            &[("AUDITLOG_LISTEN", "0.0.0.0:0")],
            None,
        ),
        (
            "tokens without TLS",
            &[],
            &[],
            Some(format!("{listen}{}", tokens_toml())),
        ),
        (
            "TLS without tokens",
            &[],
            &[],
            Some(format!("{listen}{tls}")),
        ),
    ];
    let mut wrong = Vec::new();
    for (how, flags, env, config) in cases {
        let work = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = flags.iter().map(|s| (*s).to_owned()).collect();
        if let Some(config) = config {
            std::fs::write(work.path().join("auditlog.toml"), config).unwrap();
            args.extend(["--config".into(), "auditlog.toml".into()]);
        }
        args.extend(["--data-dir".into(), "data".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = Spawned::start(work.path(), &args, env);
        let Some(code) = server.exit_code() else {
            server.kill();
            wrong.push(format!("{how}: the server started; it must refuse"));
            continue;
        };
        let err = server.stderr();
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        if code == 0 {
            wrong.push(format!("{how}: exit 0"));
        }
        if lines.len() != 1 || !err.contains("listen") || !err.contains("allow_insecure") {
            wrong.push(format!(
                "{how}: expected one line naming `listen` and `allow_insecure`, got {err:?}"
            ));
        }
        if work.path().join("data").exists() {
            wrong.push(format!(
                "{how}: a refused server created its data directory"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_insecure_serves_a_network_address_with_a_warning_on_stderr() {
    let work = tempfile::tempdir().unwrap();
    let port = free_port("0.0.0.0");
    let listen = format!("0.0.0.0:{port}");
    let mut server = Spawned::start(
        work.path(),
        &["--listen", &listen, "--data-dir", "data"],
        &[("AUDITLOG_ALLOW_INSECURE", "true")],
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    server.wait_serving(addr, None).await;
    // Open, as configured: no token needed.
    let ch = channel(addr, None).await.unwrap();
    call(&ch, "AuditService/GetStats", None).await.unwrap();
    server.kill();
    let (out, err) = (server.stdout(), server.stderr());
    let on_stdout = if out.contains("allow_insecure") {
        "; it went to stdout instead (the server's tracing subscriber writes to stdout)"
    } else {
        ""
    };
    assert!(
        err.contains("allow_insecure"),
        "no warning naming allow_insecure on stderr{on_stdout}\nstderr: {err:?}\nstdout: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_tokens_serve_a_network_address_without_a_warning() {
    let pki = Pki::new();
    let work = tempfile::tempdir().unwrap();
    let port = free_port("0.0.0.0");
    let config = format!(
        "listen = \"0.0.0.0:{port}\"\ndata_dir = \"data\"\n\n[tls]\ncert_file = {:?}\n\
         key_file = {:?}\n\n{}",
        pki.path("server.pem").display().to_string(),
        pki.path("server.key").display().to_string(),
        tokens_toml()
    );
    std::fs::write(work.path().join("auditlog.toml"), config).unwrap();
    let mut server = Spawned::start(work.path(), &["--config", "auditlog.toml"], &[]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    server.wait_serving(addr, Some(pki.client_tls(None))).await;
    let ch = channel(addr, Some(pki.client_tls(None))).await.unwrap();
    let refused = call(&ch, "AuditService/GetStats", None).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let reader = Some(format!("Bearer {}", READER.secret));
    call(&ch, "AuditService/GetStats", reader).await.unwrap();
    server.kill();
    let logs = format!("{}{}", server.stdout(), server.stderr());
    assert!(
        !logs.contains("allow_insecure"),
        "a server with TLS and tokens warned about allow_insecure:\n{logs}"
    );
}
