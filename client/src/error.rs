//! The client's one error type, and how a gRPC status or a failed
//! connection is told in one line.

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not a valid `http://host:port` or `https://host:port`.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The bearer token cannot be sent in an HTTP header; says which
    /// character is the problem, never the token.
    #[error("invalid token: {reason}")]
    InvalidToken { reason: String },
    /// No connection could be made.
    #[error("cannot connect to the auditlog server at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The server answered with an error status.
    #[error("{}", describe(.0))]
    Rpc(#[from] tonic::Status),
    /// `details` was not a JSON object.
    #[error("details must be a JSON object, not {0}")]
    DetailsNotObject(&'static str),
    /// A lead's history was asked for with an empty lead id, which as a
    /// filter would match every event.
    #[error(
        "the lead id is empty: give the lead whose history you want (an empty one would match \
         every event in the log)"
    )]
    EmptyLeadId,
    /// An event's details that are not a JSON object ([`crate::details_of`]).
    #[error("event seq {seq} came with details that are not a JSON object: {reason}")]
    BadDetails { seq: u64, reason: String },
    /// A followed stream, opened again after a loss, is not on the log it
    /// followed ([`Client::follow`](crate::Client::follow)): the node lacks
    /// the last record shown, or holds another there.
    #[error(
        "the log at {node} is not the one being followed: {reason}; not resuming over a \
         different or rewritten log"
    )]
    NotTheSameLog { node: String, reason: String },
    /// A checkpoint or a proof did not verify; says which and why.
    #[error("{0}")]
    Proof(String),
    /// The server's answers break the API's own rules (pages that do not
    /// move on, say): a server that is broken or hostile. Says what.
    #[error("the server's answer breaks the API: {0}")]
    Protocol(String),
}

impl Error {
    /// The gRPC status code, for errors the server returned.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Rpc(s) => Some(s.code()),
            _ => None,
        }
    }

    /// The `(field, reason)` pairs of an INVALID_ARGUMENT answer.
    pub fn field_violations(&self) -> Vec<(String, String)> {
        use tonic_types::StatusExt as _;
        match self {
            Error::Rpc(s) => s
                .get_details_bad_request()
                .map(|b| {
                    b.field_violations
                        .into_iter()
                        .map(|v| (v.field, v.description))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

fn describe(s: &tonic::Status) -> String {
    let code = format!("{:?}", s.code());
    // InvalidArgument -> INVALID_ARGUMENT, as every gRPC tool spells it.
    let mut name = String::new();
    for (i, c) in code.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    let mut text = if s.message().is_empty() {
        name
    } else {
        format!("{name}: {}", s.message())
    };
    // A failed connection (TLS refused, connection reset) arrives as
    // "transport error" with the reason in its sources: name the reason.
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        let part = e.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// An error and its causes on one line ("transport error: connection refused").
pub(crate) fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if !text.contains(&msg) {
            text.push_str(": ");
            text.push_str(&msg);
        }
        source = s.source();
    }
    text
}
