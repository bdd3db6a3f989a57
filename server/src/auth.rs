//! Who gets in: bearer tokens with roles, checked for every call before it
//! reaches a handler.
//!
//! The config holds each token's SHA-256, never the token. A call carries
//! `authorization: Bearer <token>`; the layer hashes it, compares it with
//! every known hash in constant time, and checks the token's roles against
//! the method:
//!
//! | role | may call |
//! |---|---|
//! | `writer` | Log, LogBatch, TrackPerformance |
//! | `reader` | Query, StreamEvents, GetStats, GetPerformanceStats, GetCheckpoint, GetInclusionProof, GetConsistencyProof |
//! | `auditor` | VerifyIntegrity, ExportSubject, StreamEvents (history and live), GetCheckpoint, GetInclusionProof, GetConsistencyProof |
//! | `admin` | everything, including AdminService |
//!
//! Missing or unknown token: UNAUTHENTICATED. Known but not allowed:
//! PERMISSION_DENIED. Every refusal of this check is logged, rate limited and without the
//! token (`refusals.rs`). Health and reflection stay open (probes cannot
//! send tokens). With no token configured, every call is allowed: that is
//! the loopback-only default (see `Config::validate`). The token's name
//! reaches the handler as a [`Caller`]: it is recorded, signed, as the
//! `caller` of every event the token writes, and as the actor unless the
//! caller names one (from the token's `actors`, when it has that list).

mod refusals;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::gate::{Admit, Gate};
use refusals::{Refusal, Refusals};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Writer,
    Reader,
    Auditor,
    Admin,
}

/// One token, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Names the token in logs and as the actor of its events. Required.
    pub name: String,
    /// The token's SHA-256, 64 hex characters (`printf %s "$TOKEN" |
    /// sha256sum`). Required; the token itself is never configured.
    pub sha256: String,
    /// What it may do. Required, at least one.
    pub roles: Vec<Role>,
    /// Calls per second the token may make on average (fractions allowed,
    /// e.g. 0.5 for one call every two seconds); each call counts as one,
    /// a LogBatch too. Default: none, no rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<f64>,
    /// Calls the token may make at once after being idle, on top of the
    /// rate. Needs `rate_per_sec`. Default: `rate_per_sec` rounded up (at
    /// least 1), i.e. one second's worth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// The actors the token may log as (each at most 256 characters, no
    /// control characters). An event naming another actor is refused with
    /// PERMISSION_DENIED; one naming none gets the token's name, which must
    /// then be in the list too. Default: none, any actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actors: Option<Vec<String>>,
}

impl TokenConfig {
    /// Checks one token entry.
    pub fn validate(&self, index: usize, all: &[TokenConfig]) -> Result<(), String> {
        let at = format!("tokens[{index}] ({})", self.name);
        if self.name.is_empty() {
            return Err(format!("tokens[{index}].name is required"));
        }
        // The name is the actor of the token's events that name none, so it
        // keeps to an actor's rules (and a filter on it, which refuses what
        // no event's actor could be, finds them).
        let chars = self.name.chars().count();
        if chars > 256 || self.name.chars().any(char::is_control) {
            return Err(format!(
                "tokens[{index}].name {}: a token's name is the actor of its events that name \
                 none, so it is 1 to 256 characters without control characters",
                if chars > 256 {
                    format!("is {chars} characters")
                } else {
                    format!("{:?} holds a control character", self.name)
                }
            ));
        }
        if all.iter().filter(|t| t.name == self.name).count() > 1 {
            return Err(format!("{at}: the name is used by another token"));
        }
        let hex_ok = self.sha256.len() == 64
            && self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b.to_ascii_lowercase()));
        if !hex_ok {
            return Err(format!(
                "{at}: sha256 must be the token's SHA-256 as 64 hex characters (printf %s \"$TOKEN\" | sha256sum)"
            ));
        }
        if self.roles.is_empty() {
            return Err(format!(
                "{at}: roles must name at least one of writer, reader, auditor, admin"
            ));
        }
        match (self.rate_per_sec, self.burst) {
            (Some(rate), _) if !(rate > 0.0 && rate.is_finite()) => {
                return Err(format!(
                    "{at}: rate_per_sec is {rate}; it must be a positive, finite number of \
                     calls per second"
                ));
            }
            (None, Some(_)) => {
                return Err(format!(
                    "{at}: burst needs rate_per_sec (the rate its bucket refills at)"
                ));
            }
            (_, Some(0)) => {
                return Err(format!(
                    "{at}: burst is 0; it must be at least 1, or no call could ever pass"
                ));
            }
            _ => {}
        }
        if let Some(actors) = &self.actors {
            if actors.is_empty() {
                return Err(format!(
                    "{at}: actors is empty, so the token could log nothing; list the actors it \
                     may log as, or leave actors out to allow any"
                ));
            }
            if let Some(bad) = actors.iter().find(|a| {
                a.is_empty() || a.chars().count() > 256 || a.chars().any(char::is_control)
            }) {
                return Err(format!(
                    "{at}: actors holds {bad:?}; an actor is 1 to 256 characters without \
                     control characters"
                ));
            }
        }
        Ok(())
    }

    /// The bucket size of a rate-limited token: `burst`, or one second's
    /// worth of calls (at least 1).
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or_else(|| {
            let second = self.rate_per_sec.unwrap_or(1.0).ceil();
            // Validated positive and finite; a huge rate saturates.
            (second as u32).max(1)
        })
    }
}

/// The token a call was made with, for the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub name: String,
    /// The actors it may log as; `None` for any.
    pub actors: Option<Arc<[String]>>,
}

impl Caller {
    /// Whether the token may log an event as `actor`.
    pub(crate) fn may_act_as(&self, actor: &str) -> bool {
        self.actors
            .as_ref()
            .is_none_or(|list| list.iter().any(|a| a == actor))
    }
}

#[derive(Debug)]
struct Known {
    name: String,
    hash: [u8; 32],
    roles: Vec<Role>,
    actors: Option<Arc<[String]>>,
}

/// The token check, as a tower layer over the whole router.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuthLayer {
    tokens: Arc<Vec<Known>>,
    refusals: Refusals,
}

/// A refused call: the status the caller gets, the reason the log gets,
/// and the known token it was made with, if any.
#[derive(Debug)]
struct Refused {
    status: tonic::Status,
    reason: String,
    token: Option<String>,
}

impl AuthLayer {
    /// A layer checking `tokens`; with none, it lets every call through.
    pub(crate) fn new(tokens: &[TokenConfig]) -> AuthLayer {
        let tokens = tokens
            .iter()
            .map(|t| {
                let mut hash = [0u8; 32];
                // Validated to be 64 hex characters at start.
                let _ = hex::decode_to_slice(t.sha256.to_ascii_lowercase(), &mut hash);
                Known {
                    name: t.name.clone(),
                    hash,
                    roles: t.roles.clone(),
                    actors: t.actors.as_deref().map(Arc::from),
                }
            })
            .collect();
        AuthLayer {
            tokens: Arc::new(tokens),
            refusals: Refusals::new(),
        }
    }

    /// Decides one call: `Ok(Some(caller))` to go on with a known token,
    /// `Ok(None)` for an open method or when auth is off, `Err` to refuse.
    fn check(&self, path: &str, authorization: Option<&[u8]>) -> Result<Option<Caller>, Refused> {
        if self.tokens.is_empty() || is_open(path) {
            return Ok(None);
        }
        let bearer = authorization.and_then(|v| v.strip_prefix(b"Bearer "));
        let presented = bearer.map(|t| Sha256::digest(t.trim_ascii()));
        // Compare with every known hash, all the way, so timing says nothing.
        let known = presented.and_then(|hash| {
            let mut found = None;
            for k in self.tokens.iter() {
                let diff = k
                    .hash
                    .iter()
                    .zip(hash.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b));
                if diff == 0 {
                    found = Some(k);
                }
            }
            found
        });
        let Some(known) = known else {
            let reason = match (authorization, bearer) {
                (None, _) => "no authorization header",
                (Some(_), None) => "the authorization header is not `Bearer <token>`",
                (Some(_), Some(_)) => "unknown token",
            };
            return Err(Refused {
                status: tonic::Status::unauthenticated(
                    "missing or unknown token: send the metadata `authorization: Bearer \
                     <token>` with a token configured on the server",
                ),
                reason: reason.to_owned(),
                token: None,
            });
        };
        let needed = required_roles(path);
        if known.roles.contains(&Role::Admin) || needed.iter().any(|r| known.roles.contains(r)) {
            tracing::debug!(token = %known.name, method = path, "call");
            return Ok(Some(Caller {
                name: known.name.clone(),
                actors: known.actors.clone(),
            }));
        }
        let needed_names: Vec<&str> = needed
            .iter()
            .map(|r| match r {
                Role::Writer => "writer",
                Role::Reader => "reader",
                Role::Auditor => "auditor",
                Role::Admin => "admin",
            })
            .chain(std::iter::once("admin"))
            .collect();
        let needed = needed_names.join(" or ");
        Err(Refused {
            status: tonic::Status::permission_denied(format!(
                "token {:?} may not call {path}: it needs the role {needed}",
                known.name,
            )),
            reason: format!("token {:?} lacks the role {needed}", known.name),
            token: Some(known.name.clone()),
        })
    }
}

/// The caller's address, over plain TCP or TLS.
pub(crate) fn peer_of<B>(req: &http::Request<B>) -> Option<std::net::SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let ext = req.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|t| t.get_ref().remote_addr())
        })
}

/// Health and reflection answer without a token.
fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

/// The roles (besides admin) that may call `path`.
fn required_roles(path: &str) -> &'static [Role] {
    match path.rsplit('/').next().unwrap_or("") {
        _ if path.starts_with("/auditlog.v1.AdminService/") => &[],
        "Log" | "LogBatch" | "TrackPerformance" => &[Role::Writer],
        "Query" | "GetStats" | "GetPerformanceStats" => &[Role::Reader],
        "StreamEvents" | "GetCheckpoint" | "GetInclusionProof" | "GetConsistencyProof" => {
            &[Role::Reader, Role::Auditor]
        }
        "VerifyIntegrity" | "ExportSubject" => &[Role::Auditor],
        _ => &[],
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Gate<S, AuthLayer>;

    fn layer(&self, inner: S) -> Gate<S, AuthLayer> {
        Gate::new(inner, self.clone())
    }
}

impl Admit for AuthLayer {
    type Pass = ();
    const NAME: &'static str = "auth";

    /// Checks the bearer token and leaves the [`Caller`] on the request.
    fn admit<B>(&self, req: &mut http::Request<B>) -> Result<Option<()>, tonic::Status> {
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        match self.check(req.uri().path(), header) {
            Ok(Some(caller)) => {
                req.extensions_mut().insert(caller);
            }
            Ok(None) => {}
            Err(refused) => {
                self.refusals.refused(
                    refused.token.as_deref(),
                    Refusal {
                        peer: peer_of(req),
                        method: req.uri().path().to_owned(),
                        reason: refused.reason,
                    },
                );
                return Err(refused.status);
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, secret: &str, roles: &[Role]) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            sha256: hex::encode(Sha256::digest(secret.as_bytes())),
            roles: roles.to_vec(),
            rate_per_sec: None,
            burst: None,
            actors: None,
        }
    }

    fn layer() -> AuthLayer {
        AuthLayer::new(&[
            token("svc", "writer-secret", &[Role::Writer]),
            token("ops", "admin-secret", &[Role::Admin]),
            token("audit", "auditor-secret", &[Role::Auditor, Role::Reader]),
        ])
    }

    fn code(layer: &AuthLayer, path: &str, token: Option<&str>) -> Result<String, tonic::Code> {
        let header = token.map(|t| format!("Bearer {t}"));
        layer
            .check(path, header.as_deref().map(str::as_bytes))
            .map(|c| c.map(|c| c.name).unwrap_or_default())
            .map_err(|r| r.status.code())
    }

    #[test]
    fn every_role_gets_exactly_its_methods() {
        use tonic::Code::{PermissionDenied as Denied, Unauthenticated as Unauth};
        let l = layer();
        let log = "/auditlog.v1.AuditService/Log";
        let verify = "/auditlog.v1.AuditService/VerifyIntegrity";
        let rotate = "/auditlog.v1.AdminService/Rotate";
        assert_eq!(code(&l, log, Some("writer-secret")), Ok("svc".into()));
        assert_eq!(code(&l, verify, Some("writer-secret")), Err(Denied));
        assert_eq!(code(&l, verify, Some("auditor-secret")), Ok("audit".into()));
        assert_eq!(code(&l, log, Some("auditor-secret")), Err(Denied));
        assert_eq!(code(&l, rotate, Some("auditor-secret")), Err(Denied));
        assert_eq!(code(&l, rotate, Some("admin-secret")), Ok("ops".into()));
        assert_eq!(code(&l, log, Some("admin-secret")), Ok("ops".into()));
        assert_eq!(code(&l, log, None), Err(Unauth));
        assert_eq!(code(&l, log, Some("wrong")), Err(Unauth));
        assert_eq!(
            code(&l, "/grpc.health.v1.Health/Check", None),
            Ok(String::new())
        );
    }

    #[test]
    fn without_tokens_everything_is_open() {
        let l = AuthLayer::new(&[]);
        assert_eq!(
            code(&l, "/auditlog.v1.AdminService/Rotate", None),
            Ok(String::new())
        );
    }

    #[test]
    fn token_config_is_checked() {
        let good = token("a", "s", &[Role::Reader]);
        assert!(good.validate(0, std::slice::from_ref(&good)).is_ok());
        let short = TokenConfig {
            sha256: "abc".into(),
            ..good.clone()
        };
        assert!(short.validate(0, &[]).unwrap_err().contains("sha256"));
        let none = TokenConfig {
            roles: vec![],
            ..good.clone()
        };
        assert!(none.validate(0, &[]).unwrap_err().contains("roles"));
        for (actors, says) in [
            (vec![], "actors is empty"),
            (vec!["ok".to_owned(), String::new()], "actors holds \"\""),
            (vec!["a\nb".to_owned()], "control characters"),
        ] {
            let bad = TokenConfig {
                actors: Some(actors),
                ..good.clone()
            };
            let err = bad.validate(0, &[]).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
        let listed = TokenConfig {
            actors: Some(vec!["crm-sync".into()]),
            ..good.clone()
        };
        assert!(listed.validate(0, &[]).is_ok());
        // The name becomes an event's actor: an actor's rules.
        for (name, says) in [
            ("n".repeat(257), "is 257 characters"),
            ("crm\nsync".to_owned(), "holds a control character"),
        ] {
            let bad = TokenConfig {
                name,
                ..good.clone()
            };
            let err = bad.validate(0, &[]).unwrap_err();
            assert!(err.contains(says) && err.contains("1 to 256"), "{err}");
        }
        let longest = TokenConfig {
            name: "n".repeat(256),
            ..good.clone()
        };
        assert!(longest.validate(0, &[]).is_ok());
    }

    #[test]
    fn rate_limits_are_checked() {
        let good = token("a", "s", &[Role::Writer]);
        let with = |rate: Option<f64>, burst: Option<u32>| TokenConfig {
            rate_per_sec: rate,
            burst,
            ..good.clone()
        };
        assert!(with(Some(0.5), None).validate(0, &[]).is_ok());
        assert!(with(Some(100.0), Some(1)).validate(0, &[]).is_ok());
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = with(Some(rate), Some(5)).validate(0, &[]).unwrap_err();
            assert!(err.contains("rate_per_sec"), "{rate}: {err}");
        }
        let err = with(None, Some(5)).validate(0, &[]).unwrap_err();
        assert!(err.contains("burst needs rate_per_sec"), "{err}");
        let err = with(Some(1.0), Some(0)).validate(0, &[]).unwrap_err();
        assert!(err.contains("burst is 0"), "{err}");
        assert_eq!(with(Some(0.5), None).effective_burst(), 1);
        assert_eq!(with(Some(2.5), None).effective_burst(), 3);
        assert_eq!(with(Some(2.5), Some(7)).effective_burst(), 7);
    }
}
