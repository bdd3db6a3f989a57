//! The receiver: the secrets and token an endpoint is configured with, and
//! what a Standard Webhooks receiver checks on every request it gets.

use std::time::{SystemTime, UNIX_EPOCH};

use auditlog_server::config::Secret;
use auditlog_server::config::{Start, WebhookConfig};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::Mac as _;

use crate::common::endpoints::{Check, HttpEndpoint, Request, webhook_config};

/// The signing secret the server is given (the Standard Webhooks example).
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Another valid secret, for a receiver that must reject everything.
pub(crate) const OTHER_SECRET: &str = "whsec_c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1zZXJ2ZXJz";
pub(crate) const TOKEN: &str = "receiver-token-123";

pub(crate) fn config(name: &str, url: String, start: Start) -> WebhookConfig {
    WebhookConfig {
        bearer_token: Some(Secret::from(TOKEN)),
        secret: Some(Secret::from(SECRET)),
        start,
        ..webhook_config(name, url)
    }
}

/// What a Standard Webhooks receiver checks, for a receiver holding
/// `secret` and expecting `token` (no `Authorization` header when `None`).
pub(crate) fn verifier(secret: &'static str, token: Option<&'static str>) -> Check {
    Box::new(move |r: &Request| verify(r, secret, token))
}

pub(crate) fn verify(r: &Request, secret: &str, token: Option<&str>) -> Result<(), String> {
    let header = |name: &str| {
        r.headers
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no {name} header"))
    };
    if r.method != "POST" {
        return Err(format!("method {}", r.method));
    }
    if !header("content-type")?.starts_with("application/json") {
        return Err(format!("content-type {:?}", r.headers.get("content-type")));
    }
    let id = header("webhook-id")?;
    let timestamp = header("webhook-timestamp")?;
    // Replay protection: the timestamp must be recent.
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| format!("webhook-timestamp {timestamp:?} is not a number"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - sent).abs() > 300 {
        return Err(format!("webhook-timestamp {sent} is {}s off", now - sent));
    }
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&r.body);
    let expected = BASE64.encode(mac.finalize().into_bytes());
    // Several signatures may be sent, space-separated, each `v1,<base64>`.
    let signatures = header("webhook-signature")?;
    let valid = signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected);
    if !valid {
        return Err(format!("bad webhook-signature {signatures:?}"));
    }
    match (token, r.headers.get("authorization")) {
        (Some(t), Some(a)) if *a == format!("Bearer {t}") => {}
        (None, None) => {}
        (_, a) => return Err(format!("authorization {a:?}")),
    }
    if r.json["type"] != "auditlog.event" {
        return Err(format!("type {}", r.json["type"]));
    }
    if r.json["data"]["id"] != id.as_str() {
        return Err(format!(
            "webhook-id {id} is not data.id {}",
            r.json["data"]["id"]
        ));
    }
    if r.json["data"]["seq"].as_u64().is_none() {
        return Err("no data.seq".into());
    }
    Ok(())
}

/// A receiver checking every request as [`SECRET`] and [`TOKEN`] demand.
pub(crate) async fn receiver() -> HttpEndpoint {
    HttpEndpoint::start_checked(Some(verifier(SECRET, Some(TOKEN)))).await
}

pub(crate) fn seq_of(r: &Request) -> u64 {
    r.json["data"]["seq"].as_u64().unwrap()
}
