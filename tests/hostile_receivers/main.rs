//! The server's receivers turned hostile or broken: alert channels and
//! relays that answer in ways a careless sender trips over. What must hold:
//! no answer kills a channel's sender, makes it spin, or makes the server
//! take in more than a bounded amount of what the receiver sends.
//!
//! One file per receiver: HTTP alert channels (`alert_http.rs`), SMTP
//! relays (`smtp.rs`). Each builds its hostile receiver from a raw tokio
//! `TcpListener` (`raw.rs`).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

#[path = "../common/mod.rs"]
mod common;

mod alert_http;
mod raw;
mod smtp;
