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
//!
//! One file per concern. Shared: the tokens (`tokens.rs`), an in-process
//! server whose readiness is checked over TLS when it serves TLS
//! (`server.rs`), and the binaries as child processes (`binaries.rs`). The
//! tests: the (role, RPC) matrix (`roles.rs`); what stays open, who is
//! recorded and what refusals say (`access.rs`); TLS and mutual TLS
//! (`tls.rs`); the CLI over TLS with a token (`cli_over_tls.rs`); and safe
//! by default (`safe_by_default.rs`).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod access;
mod binaries;
mod cli_over_tls;
mod roles;
mod safe_by_default;
mod server;
mod tls;
mod tokens;
