//! Tokens: the five the protected servers know and one they do not, as
//! `[[tokens]]` config and TOML, and requests that carry one.

use auditlog_server::config::{Role, TokenConfig};
use sha2::Digest as _;
use tonic::Request;

/// A token the protected servers know: its name, the secret a caller sends,
/// and its roles.
pub(crate) struct Token {
    pub(crate) name: &'static str,
    pub(crate) secret: &'static str,
    roles: &'static [Role],
}

pub(crate) const WRITER: Token = Token {
    name: "svc-writer",
    secret: "wr-4c1f9a7e2b-secret",
    roles: &[Role::Writer],
};
pub(crate) const READER: Token = Token {
    name: "dashboard",
    secret: "rd-8e02b6d13f-secret",
    roles: &[Role::Reader],
};
pub(crate) const AUDITOR: Token = Token {
    name: "auditor",
    secret: "au-1d7c5e90a4-secret",
    roles: &[Role::Auditor],
};
pub(crate) const ADMIN: Token = Token {
    name: "ops",
    secret: "ad-63f0e8b2c9-secret",
    roles: &[Role::Admin],
};
pub(crate) const PIPELINE: Token = Token {
    name: "pipeline",
    secret: "pl-9b4a2d7f01-secret",
    roles: &[Role::Writer, Role::Reader],
};
/// Well formed, but configured nowhere.
pub(crate) const UNKNOWN_SECRET: &str = "xx-5a5a5a5a5a-secret";

pub(crate) const ALL_TOKENS: [&Token; 5] = [&WRITER, &READER, &AUDITOR, &ADMIN, &PIPELINE];

pub(crate) fn sha256_hex(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// The `[[tokens]]` of every protected server here.
pub(crate) fn token_configs() -> Vec<TokenConfig> {
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
pub(crate) fn tokens_toml() -> String {
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
pub(crate) fn authed<T>(message: T, header: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(header) = header {
        request
            .metadata_mut()
            .insert("authorization", header.parse().unwrap());
    }
    request
}
