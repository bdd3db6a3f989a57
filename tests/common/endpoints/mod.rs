//! Fake receivers of what the server sends out, each speaking its protocol
//! over TCP on 127.0.0.1: an SMTP sink ([`SmtpServer`], `smtp.rs`) and an
//! HTTP receiver that can fail, go down and come back ([`HttpEndpoint`],
//! `http.rs`). Use them for alert channels and webhooks; [`closed_port`]
//! stands for an endpoint that is not there at all.

mod http;
mod smtp;

pub(crate) use http::{Check, HttpEndpoint, Request, webhook_config};
pub(crate) use smtp::{Mail, SmtpServer, email_config};

/// A port nothing listens on: bound, noted, released.
pub(crate) fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
