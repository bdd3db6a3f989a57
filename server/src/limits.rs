//! Load shedding and rate limits.
//!
//! - A cap on calls in flight across the server ([`ShedLayer`], in
//!   `limits/shed.rs`), taken once the call's message has arrived.
//! - A cap on calls in flight per token (`max_in_flight_per_token`), checked
//!   with the rate limit, so one token cannot take every slot of the first.
//! - An optional rate limit per token ([`RateLayer`]): a token bucket for
//!   each `[[tokens]]` entry with `rate_per_sec`, checked after the token was
//!   authenticated and its role allowed the call. Every call counts as one,
//!   whatever it carries: a LogBatch of 1,000 events is one group commit, the
//!   cost the limit guards, and opening a StreamEvents is one call however
//!   long it runs. A call over the limit is answered at once with
//!   RESOURCE_EXHAUSTED, a message naming the limit and when to retry, and a
//!   `google.rpc.RetryInfo` detail holding that delay.
//!
//! Health and reflection are exempt from both, so probes still see the
//! truth. Each bucket has a lock of its own, held for a few arithmetic
//! operations: tokens never wait for each other.
//!
//! The other limits are the transport's, set in `lib.rs` from the config:
//! concurrent streams per connection and HTTP/2 keepalive (dead peers are
//! reaped); the calls' deadline ([`DeadlineLayer`], in `limits/deadline.rs`);
//! and the connections' (`listener.rs`): how many, and how soon each must
//! start talking.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::auth::{Caller, TokenConfig};
use crate::gate::{Admit, Gate};

mod answers;
mod deadline;
mod shed;

pub(crate) use answers::AnswersLayer;
pub(crate) use deadline::{CallLimit, DeadlineLayer};
pub(crate) use shed::ShedLayer;

/// The future of a layer's call that has work of its own to do.
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Health and reflection: never shed, never rate limited.
fn is_exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

/// A token bucket: holds up to `burst` calls, refilled at `rate_per_sec`.
/// A call takes one whole token or is refused with the time until one is
/// there.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    state: Mutex<Level>,
}

/// How full a bucket was at a moment.
#[derive(Debug)]
struct Level {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate_per_sec` must be positive and finite and `burst`
    /// at least 1 (`TokenConfig::validate` sees to both).
    pub(crate) fn new(rate_per_sec: f64, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate_per_sec,
            burst,
            state: Mutex::new(Level {
                tokens: burst,
                at: now,
            }),
        }
    }

    /// Takes one token at `now`, or says how long until one is there.
    pub(crate) fn take(&self, now: Instant) -> Result<(), Duration> {
        // Only arithmetic runs under the lock, so a poisoned one still holds
        // a consistent level.
        let mut level = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A clock read before another caller's later one counts as no time.
        let elapsed = now.saturating_duration_since(level.at).as_secs_f64();
        level.tokens = (level.tokens + elapsed * self.rate_per_sec).min(self.burst);
        level.at = level.at.max(now);
        if level.tokens >= 1.0 {
            level.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - level.tokens) / self.rate_per_sec;
            // Rounded up to the millisecond, so a caller that waits exactly
            // this long finds its token there.
            Err(Duration::from_millis((wait * 1000.0).ceil() as u64))
        }
    }
}

/// The per-token rate limits, as a tower layer over the router, inside the
/// token check (it reads the [`Caller`] that check leaves on the request).
#[derive(Debug, Clone, Default)]
pub(crate) struct RateLayer {
    /// By token name; only tokens with a rate. Built once, never changed, so
    /// looking a token up takes no lock.
    tokens: Arc<HashMap<String, TokenBucket>>,
    /// By token name, every token: its slots of calls in flight. Built once,
    /// like `tokens`.
    slots: Arc<HashMap<String, Arc<Semaphore>>>,
    /// The slots each token has (`max_in_flight_per_token`).
    per_token: usize,
}

impl RateLayer {
    /// Buckets for the tokens that have `rate_per_sec`, and `per_token`
    /// slots of calls in flight for every token.
    pub(crate) fn new(tokens: &[TokenConfig], per_token: usize) -> RateLayer {
        let now = Instant::now();
        let slots = tokens
            .iter()
            .map(|t| (t.name.clone(), Arc::new(Semaphore::new(per_token))))
            .collect();
        let tokens = tokens
            .iter()
            .filter_map(|t| {
                let bucket = TokenBucket::new(t.rate_per_sec?, t.effective_burst(), now);
                Some((t.name.clone(), bucket))
            })
            .collect();
        RateLayer {
            tokens: Arc::new(tokens),
            slots: Arc::new(slots),
            per_token,
        }
    }

    /// A slot among the caller's token's calls in flight, held until the
    /// call is answered; `Err` with the refusal when the token has none
    /// left. A call without a token (none configured) takes none.
    fn take_slot(
        &self,
        path: &str,
        caller: Option<&Caller>,
    ) -> Result<Option<OwnedSemaphorePermit>, tonic::Status> {
        let Some((caller, slots)) = caller.and_then(|c| self.slots.get(&c.name).map(|s| (c, s)))
        else {
            return Ok(None);
        };
        if is_exempt(path) {
            return Ok(None);
        }
        match Arc::clone(slots).try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => {
                tracing::debug!(token = %caller.name, method = path, "call refused: token in-flight cap");
                Err(tonic::Status::resource_exhausted(format!(
                    "token {:?} has {} calls in flight, its limit (max_in_flight_per_token); \
                     wait for some to finish, then retry",
                    caller.name, self.per_token
                )))
            }
        }
    }

    /// Decides one call: `Err` with the refusal when the caller's token is
    /// over its limit.
    fn check(&self, path: &str, caller: Option<&Caller>) -> Result<(), tonic::Status> {
        if self.tokens.is_empty() || is_exempt(path) {
            return Ok(());
        }
        let Some((caller, bucket)) = caller.and_then(|c| self.tokens.get(&c.name).map(|b| (c, b)))
        else {
            return Ok(());
        };
        bucket.take(Instant::now()).map_err(|wait| {
            tracing::debug!(token = %caller.name, method = path, ?wait, "call refused: rate limit");
            tonic::Status::with_error_details(
                tonic::Code::ResourceExhausted,
                format!(
                    "token {:?} is over its rate limit of {} calls per second (burst {}); \
                     retry in {} ms",
                    caller.name,
                    bucket.rate_per_sec,
                    bucket.burst,
                    wait.as_millis().max(1)
                ),
                ErrorDetails::with_retry_info(Some(wait)),
            )
        })
    }
}

impl<S> tower::Layer<S> for RateLayer {
    type Service = Gate<S, RateLayer>;

    fn layer(&self, inner: S) -> Gate<S, RateLayer> {
        Gate::new(inner, self.clone())
    }
}

impl Admit for RateLayer {
    /// The token's slot, held until the handler has answered (for a stream:
    /// until it has started).
    type Pass = OwnedSemaphorePermit;
    const NAME: &'static str = "rate_limit";

    fn admit<B>(
        &self,
        req: &mut http::Request<B>,
    ) -> Result<Option<OwnedSemaphorePermit>, tonic::Status> {
        let (path, caller) = (req.uri().path(), req.extensions().get::<Caller>());
        // A call refused by the rate limit gives its slot back at once.
        let slot = self.take_slot(path, caller)?;
        self.check(path, caller)?;
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, token: &str) -> http::Request<()> {
        let mut req = http::Request::builder().uri(path).body(()).unwrap();
        req.extensions_mut().insert(Caller {
            name: token.into(),
            actors: None,
        });
        req
    }

    #[test]
    fn a_token_at_its_in_flight_cap_is_refused_and_others_pass() {
        let free = |name: &str| TokenConfig {
            rate_per_sec: None,
            burst: None,
            ..limited(name, 1.0, 1)
        };
        let layer = RateLayer::new(&[free("busy"), free("other")], 2);
        let log = "/auditlog.v1.AuditService/Log";
        let first = layer.admit(&mut request(log, "busy")).unwrap();
        let second = layer.admit(&mut request(log, "busy")).unwrap();
        assert!(first.is_some() && second.is_some());
        let refused = layer.admit(&mut request(log, "busy")).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("\"busy\" has 2 calls in flight")
                && refused.message().contains("max_in_flight_per_token"),
            "{}",
            refused.message()
        );
        // Another token, and probes, are not held back.
        assert!(layer.admit(&mut request(log, "other")).unwrap().is_some());
        let probe = "/grpc.health.v1.Health/Check";
        assert!(layer.admit(&mut request(probe, "busy")).unwrap().is_none());
        // A call answered gives its slot back.
        drop(first);
        assert!(layer.admit(&mut request(log, "busy")).is_ok());
    }

    #[test]
    fn a_bucket_gives_its_burst_then_one_call_per_refill() {
        let start = Instant::now();
        let bucket = TokenBucket::new(2.0, 3, start);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        // Empty: one token comes back every 500 ms.
        assert_eq!(bucket.take(start), Err(Duration::from_millis(500)));
        let later = start + Duration::from_millis(200);
        assert_eq!(bucket.take(later), Err(Duration::from_millis(300)));
        let refilled = start + Duration::from_millis(500);
        assert_eq!(bucket.take(refilled), Ok(()));
        assert!(bucket.take(refilled).is_err());
        // Idle for long: full again, never more than the burst.
        let idle = refilled + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take(idle), Ok(()));
        }
        assert!(bucket.take(idle).is_err());
        // A clock read from before the last one counts as no time passing.
        assert!(bucket.take(start).is_err());
    }

    fn limited(name: &str, rate: f64, burst: u32) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            sha256: "0".repeat(64),
            roles: vec![crate::auth::Role::Writer],
            rate_per_sec: Some(rate),
            burst: Some(burst),
            actors: None,
        }
    }

    #[test]
    fn only_the_limited_token_is_refused_and_probes_pass() {
        let layer = RateLayer::new(
            &[
                limited("slow", 0.001, 2),
                TokenConfig {
                    rate_per_sec: None,
                    burst: None,
                    ..limited("free", 1.0, 1)
                },
            ],
            256,
        );
        let log = "/auditlog.v1.AuditService/Log";
        let slow = Caller {
            name: "slow".into(),
            actors: None,
        };
        let free = Caller {
            name: "free".into(),
            actors: None,
        };
        assert!(layer.check(log, Some(&slow)).is_ok());
        assert!(layer.check(log, Some(&slow)).is_ok());
        let refused = layer.check(log, Some(&slow)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("\"slow\"")
                && refused
                    .message()
                    .contains("0.001 calls per second (burst 2)")
                && refused.message().contains("retry in"),
            "{}",
            refused.message()
        );
        let delay = refused
            .get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .unwrap();
        assert!(delay > Duration::from_secs(900), "{delay:?}");
        for _ in 0..10 {
            assert!(layer.check(log, Some(&free)).is_ok());
            assert!(layer.check(log, None).is_ok());
            assert!(
                layer
                    .check("/grpc.health.v1.Health/Check", Some(&slow))
                    .is_ok()
            );
        }
    }
}
