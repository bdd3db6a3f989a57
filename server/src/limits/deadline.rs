//! How long a call may run before it is answered DEADLINE_EXCEEDED: the
//! caller's deadline (the `grpc-timeout` header) or the server's
//! `handler_timeout_secs`, whichever is sooner.
//!
//! tonic's own server timeout answers CANCELLED "Timeout expired", which
//! gRPC reserves for a call the caller gave up; a client that retries on
//! DEADLINE_EXCEEDED, or that tells its own slowness from the server's,
//! reads it wrong. Here the answer is DEADLINE_EXCEEDED, with a message
//! naming whose limit passed and saying that a write may still have been
//! applied (a retry with the same idempotency key is safe).
//!
//! As with tonic's, the bound covers a call until its answer starts: a
//! unary call's whole answer, a stream's headers (a stream then runs as
//! long as its caller reads it).
//!
//! The handlers that wait inside a call (a receipt's proof, a fresh
//! checkpoint, an inclusion proof, `min_seq`) find the limit that applies
//! in the request's extensions ([`CallLimit`]), so they answer within it
//! rather than wait past it into DEADLINE_EXCEEDED (a receipt whose proof
//! was late read as a write that may have failed).

use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;

use super::BoxFuture;

/// The limit a call runs under, put in the request's extensions (which no
/// caller can set) for the handlers that wait: the one reading of the
/// call's deadline, so no handler parses `grpc-timeout` again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallLimit {
    /// When this layer took the call.
    pub(crate) started: tokio::time::Instant,
    /// How long it may run: the sooner of the caller's deadline and the
    /// server's `handler_timeout_secs`.
    pub(crate) limit: Duration,
    /// Whether the caller gave a deadline (one that reads) at all.
    pub(crate) callers_deadline: bool,
}

/// The deadline layer, over the whole router.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeadlineLayer {
    handler_timeout: Duration,
}

impl DeadlineLayer {
    pub(crate) fn new(handler_timeout: Duration) -> DeadlineLayer {
        DeadlineLayer { handler_timeout }
    }
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            layer: *self,
        }
    }
}

/// The service [`DeadlineLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub(crate) struct Deadline<S> {
    inner: S,
    layer: DeadlineLayer,
}

impl<S> tower::Service<http::Request<Body>> for Deadline<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let callers = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| parse_grpc_timeout(v.as_bytes()));
        let server = self.layer.handler_timeout;
        let (limit, whose) = match callers {
            Some(d) if d < server => (d, Whose::Caller(d)),
            _ => (server, Whose::Server(server)),
        };
        // Timed from here, not from the first poll: tonic's own timeout
        // (outside this layer, still reading the caller's `grpc-timeout`)
        // starts its clock just after this returns, so this one never ends
        // later and answers DEADLINE_EXCEEDED before tonic's could answer
        // CANCELLED; from the first poll it could land a timer tick later.
        let started = tokio::time::Instant::now();
        req.extensions_mut().insert(CallLimit {
            started,
            limit,
            callers_deadline: callers.is_some(),
        });
        let deadline = started + limit;
        let answer = self.inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, answer).await {
                Ok(answer) => answer,
                Err(_) => Ok(tonic::Status::deadline_exceeded(whose.message()).into_http()),
            }
        })
    }
}

/// Whose limit bounded a call.
#[derive(Debug, Clone, Copy)]
enum Whose {
    /// The caller's `grpc-timeout`.
    Caller(Duration),
    /// The server's `handler_timeout_secs`.
    Server(Duration),
}

impl Whose {
    fn message(self) -> String {
        const APPLIED: &str = "a write may still have been applied: a retry with the same \
                               idempotency_key is safe";
        match self {
            Whose::Caller(d) => format!(
                "the caller's deadline ({}) passed before the server answered; {APPLIED}; \
                 allow the call more time",
                human(d)
            ),
            Whose::Server(d) => format!(
                "the call ran past the server's limit of {} (handler_timeout_secs) before it \
                 answered; {APPLIED}; narrow a query, or ask the operator to raise the limit",
                human(d)
            ),
        }
    }
}

/// `d` as people read it: "250 ms", "3 s", "1.5 s".
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// A `grpc-timeout` value (PROTOCOL-HTTP2.md: one to eight ASCII digits and
/// a unit, `H`, `M`, `S`, `m`, `u` or `n`). Anything else is `None`, and
/// the call is bounded by the server's limit alone, as tonic treats it.
/// (Also read by the `min_seq` wait, `service/deadline.rs`.)
pub(crate) fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Eight digits fit a u64 whatever the unit (99,999,999 hours in seconds
    // is about 3.6e11).
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values_are_read_in_every_unit_and_bad_ones_ignored() {
        for (value, expected) in [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("250m", Duration::from_millis(250)),
            ("7u", Duration::from_micros(7)),
            ("99999999n", Duration::from_nanos(99_999_999)),
            ("99999999H", Duration::from_secs(99_999_999 * 3600)),
            ("0m", Duration::ZERO),
        ] {
            assert_eq!(
                parse_grpc_timeout(value.as_bytes()),
                Some(expected),
                "{value}"
            );
        }
        for bad in [
            "",
            "m",
            "123456789m",
            "12",
            "1x",
            "-1S",
            "1.5S",
            "１S",
            " 1S",
            "1S ",
        ] {
            assert_eq!(parse_grpc_timeout(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn the_message_names_whose_limit_passed() {
        let caller = Whose::Caller(Duration::from_millis(300)).message();
        assert!(caller.contains("caller's deadline (300 ms)"), "{caller}");
        let server = Whose::Server(Duration::from_secs(60)).message();
        assert!(server.contains("60 s (handler_timeout_secs)"), "{server}");
        assert!(server.contains("idempotency_key"), "{server}");
        assert_eq!(human(Duration::from_millis(1500)), "1.5 s");
    }
}
