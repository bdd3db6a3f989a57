//! What stays open, who is recorded, what refusals say: health and
//! reflection need no token, the token's name is the actor, and refusals
//! say what to do without ever echoing the token.

use auditlog_client::{NewEvent, Query};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common;
use crate::security::roles::call;
use crate::security::server::{Server, channel, health, within};
use crate::security::tokens::{
    ADMIN, ALL_TOKENS, AUDITOR, PIPELINE, READER, UNKNOWN_SECRET, WRITER, authed, sha256_hex,
};

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
