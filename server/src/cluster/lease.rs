//! The leader lease: one key, `leader`, in the bucket `<stream>_leader`,
//! whose entries live `lease_ttl_ms` (the bucket's `max_age`, history 1).
//!
//! - Acquire: `create` succeeds only while no live entry exists; the node
//!   then rewrites its value with `term` = the revision `create` got, so
//!   terms grow with every change of leader and say which one is newer.
//! - Renew every quarter of the TTL with `update(.., last_revision)`: it
//!   succeeds only if nobody wrote the key since. A renewal refused for
//!   another revision is a step down at once, unless the key still names
//!   this node and its term (a renewal NATS took but answered too late):
//!   then it is renewed from that revision. Nobody else can have held the
//!   lease in between, since taking it writes a new holder and term.
//! - A round NATS does not answer in time (or answers with another error)
//!   decides nothing: the node keeps what the last answered round said
//!   while that still holds. A leader keeps leading until three quarters of
//!   the TTL after the start of its last renewal NATS took (the entry lives
//!   a full TTL from a moment later than that), then steps down. A step
//!   down is published before the next renewal is attempted, so the signer
//!   stops first. Until 2026-12-07 any failed round was a step down: one
//!   renewal slower than a quarter of the TTL on a loaded machine made a
//!   healthy leader refuse writes until its own entry expired and a leader
//!   was elected again.
//! - Followers read the key every quarter of the TTL to learn where to
//!   forward writes, and try `create` when it is absent. A follower keeps
//!   the leader it last read for up to a TTL of unanswered rounds.
//!
//! The lease only elects; what keeps a deposed leader from appending is the
//! fenced publish (`leader.rs`): a lease can be believed a moment too long,
//! an expected last sequence cannot.
//!
//! The value carries a MAC with the cluster's HMAC key (`mac`), over the
//! holder's name, address and term. Followers send writes, with the
//! caller's `authorization`, to the address the lease names: a value
//! someone else wrote into the bucket (anyone with NATS access to it) could
//! otherwise draw every forwarded write and its token to an address of
//! theirs. A value whose MAC does not verify names no leader.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

use crate::keys::Keyring;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The key holding the lease.
pub(crate) const KEY: &str = "leader";

/// The lease's value, JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub(crate) node: String,
    /// The gRPC address followers forward writes to.
    pub(crate) advertise: String,
    /// The revision at which this holder created the lease (0 for the
    /// moment between `create` and the first rewrite).
    pub(crate) term: u64,
    /// The key id and hex MAC of [`Holder::signed`] under the cluster's
    /// HMAC key, `<key id>:<hex>`.
    #[serde(default)]
    pub(crate) mac: String,
}

impl Holder {
    /// The bytes the MAC covers (no record line starts this way).
    fn signed(&self) -> String {
        format!(
            "auditlog lease\n{}\n{}\n{}",
            self.node, self.advertise, self.term
        )
    }

    /// This holder with its MAC under `keyring`'s active key.
    fn sealed(&self, keyring: &Keyring) -> Holder {
        let (id, key) = keyring.active();
        Holder {
            mac: format!("{id}:{}", hex::encode(key.sign(self.signed().as_bytes()))),
            ..self.clone()
        }
    }

    /// Whether the MAC verifies with a key of `keyring`.
    fn vouched(&self, keyring: &Keyring) -> bool {
        let Some((id, mac)) = self.mac.split_once(':') else {
            return false;
        };
        let (Some(key), Ok(mac)) = (keyring.get(id), hex::decode(mac)) else {
            return false;
        };
        key.verify(self.signed().as_bytes(), &mac)
    }
}

/// What this node is, as the lease says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// Not yet known (starting, or NATS unreachable).
    Unknown,
    /// Another node leads (or nobody, for the moment).
    Follower { leader: Option<Holder> },
    /// This node holds the lease of `term`.
    Leader { term: u64 },
}

/// The lease as one node holds or watches it.
pub(crate) struct Lease {
    store: kv::Store,
    me: Holder,
    keyring: Keyring,
    /// The last holder without the cluster's MAC warned about, so that a
    /// value someone else keeps writing is logged once.
    warned: Option<Holder>,
    ttl: Duration,
    /// The revision of our last successful write, while we hold it.
    revision: Option<u64>,
    /// When the last round NATS answered began, and what it found: what a
    /// round without an answer falls back on while it still holds.
    answered: Option<(Instant, Role)>,
}

/// Why a round failed: NATS said the lease is not ours (`Refused`), or it
/// gave no usable answer (`Unanswered`), which decides nothing.
enum Failed {
    Refused(String),
    Unanswered(String),
}

impl From<String> for Failed {
    fn from(why: String) -> Failed {
        Failed::Unanswered(why)
    }
}

impl Lease {
    pub(crate) fn new(
        store: kv::Store,
        (node, advertise): (String, String),
        keyring: Keyring,
        ttl: Duration,
    ) -> Lease {
        Lease {
            store,
            me: Holder {
                node,
                advertise,
                term: 0,
                mac: String::new(),
            },
            keyring,
            warned: None,
            ttl,
            revision: None,
            answered: None,
        }
    }

    /// How often the lease is renewed or looked at.
    pub(crate) fn period(&self) -> Duration {
        self.ttl / 4
    }

    /// One round: renews a held lease, else reads it and takes it when
    /// nobody holds it. A round NATS does not answer falls back on the last
    /// answered one while that holds (module docs), else gives up the lease.
    pub(crate) async fn round(&mut self) -> Role {
        let began = Instant::now();
        // A round that cannot finish within a period counts as unanswered:
        // the next one must start on time.
        let outcome = tokio::time::timeout(self.period(), self.try_round())
            .await
            .unwrap_or_else(|_| {
                Err(Failed::Unanswered(
                    "no answer from NATS within a quarter of the lease".into(),
                ))
            });
        match outcome {
            Ok(role) => {
                self.answered = Some((began, role.clone()));
                role
            }
            Err(Failed::Refused(why)) => {
                self.give_up(&why);
                self.answered = None;
                Role::Unknown
            }
            Err(Failed::Unanswered(why)) => self.unanswered(&why),
        }
    }

    /// What a round without an answer leaves this node: the last answered
    /// round's role while it holds (a leader's for three quarters of the
    /// TTL from the start of its last renewal, a follower's view for a
    /// TTL), else `Unknown`, giving up a held lease.
    fn unanswered(&mut self, why: &str) -> Role {
        let holds = |(at, role): &(Instant, Role)| {
            let good_for = match role {
                Role::Leader { .. } => self.ttl - self.period(),
                _ => self.ttl,
            };
            at.elapsed() < good_for
        };
        match self.answered.as_ref().filter(|a| holds(a)) {
            Some((_, role)) => {
                tracing::debug!(node = %self.me.node, why, "lease round unanswered; keeping the last answer");
                role.clone()
            }
            None => {
                self.give_up(why);
                self.answered = None;
                Role::Unknown
            }
        }
    }

    fn give_up(&mut self, why: &str) {
        if self.revision.take().is_some() {
            tracing::warn!(node = %self.me.node, term = self.me.term, why, "leader lease lost: stepping down");
        }
    }

    async fn try_round(&mut self) -> Result<Role, Failed> {
        if let Some(revision) = self.revision {
            match self.store.update(KEY, self.value()?, revision).await {
                Ok(next) => {
                    self.revision = Some(next);
                    return Ok(Role::Leader { term: self.me.term });
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(e) => return Err(Failed::Unanswered(format!("renewing the lease: {e}"))),
            }
            // Written since our last renewal: by us (a renewal answered too
            // late), or by whoever holds it now.
            let (role, ours) = self.read().await?;
            if let Some(revision) = ours {
                return self.renew_from(revision).await;
            }
            self.give_up("renewal refused: another node wrote the lease");
            return Ok(role);
        }
        let (current, ours) = self.read().await?;
        if let Some(revision) = ours {
            // Our own lease, given up after rounds NATS did not answer,
            // still live: nobody took it in between.
            return self.renew_from(revision).await;
        }
        if current != (Role::Follower { leader: None }) {
            return Ok(current);
        }
        self.me.term = 0;
        let created = match self.store.create(KEY, self.value()?).await {
            Ok(revision) => revision,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                return Ok(self.read().await?.0);
            }
            Err(e) => return Err(Failed::Unanswered(format!("taking the lease: {e}"))),
        };
        self.me.term = created;
        let revision = self
            .store
            .update(KEY, self.value()?, created)
            .await
            .map_err(|e| Failed::Unanswered(format!("writing the term into the lease: {e}")))?;
        self.revision = Some(revision);
        tracing::info!(node = %self.me.node, term = created, "leader lease taken");
        Ok(Role::Leader { term: created })
    }

    /// Renews the lease this node holds from `revision`, the revision of
    /// the key as read, naming this node and its term.
    async fn renew_from(&mut self, revision: u64) -> Result<Role, Failed> {
        match self.store.update(KEY, self.value()?, revision).await {
            Ok(next) => {
                self.revision = Some(next);
                Ok(Role::Leader { term: self.me.term })
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(Failed::Refused(
                "renewal refused: another node wrote the lease".into(),
            )),
            Err(e) => Err(Failed::Unanswered(format!("renewing the lease: {e}"))),
        }
    }

    /// Who holds the lease, as the bucket says now, and the key's revision
    /// when it names this node in the term it last held.
    async fn read(&mut self) -> Result<(Role, Option<u64>), String> {
        let entry = self
            .store
            .entry(KEY)
            .await
            .map_err(|e| format!("reading the lease: {e}"))?
            .filter(|e| e.operation == kv::Operation::Put);
        let revision = entry.as_ref().map_or(0, |e| e.revision);
        let holder = entry.and_then(|e| serde_json::from_slice::<Holder>(&e.value).ok());
        if let Some(h) = holder.as_ref().filter(|h| !h.vouched(&self.keyring)) {
            if self.warned.as_ref() != Some(h) {
                tracing::warn!(
                    node = %h.node,
                    advertise = %h.advertise,
                    "the leader lease names a holder without this cluster's MAC (someone else \
                     wrote the lease bucket): no write is sent there"
                );
                self.warned = Some(h.clone());
            }
            return Ok((Role::Follower { leader: None }, None));
        }
        let ours = holder.as_ref().is_some_and(|h| self.is_mine(h, revision));
        Ok((Role::Follower { leader: holder }, ours.then_some(revision)))
    }

    /// Whether `holder`, read at `revision`, is this node in the term it
    /// took last (term 0 when the rewrite after `create` went unanswered:
    /// then the key is still at the revision `create` got, our term).
    fn is_mine(&self, holder: &Holder, revision: u64) -> bool {
        self.me.term != 0
            && holder.node == self.me.node
            && holder.advertise == self.me.advertise
            && (holder.term == self.me.term || (holder.term == 0 && revision == self.me.term))
    }

    fn value(&self) -> Result<bytes::Bytes, String> {
        serde_json::to_vec(&self.me.sealed(&self.keyring))
            .map(bytes::Bytes::from)
            .map_err(|e| e.to_string())
    }

    /// Gives the lease back on shutdown, so another node takes over without
    /// waiting for it to expire. Only our own revision is deleted.
    pub(crate) async fn release(&mut self) {
        if let Some(revision) = self.revision.take() {
            let _ = tokio::time::timeout(
                self.period(),
                self.store.delete_expect_revision(KEY, Some(revision)),
            )
            .await;
        }
    }
}

/// Runs the lease rounds until shutdown, publishing the role after each.
pub(crate) async fn run(mut lease: Lease, role: watch::Sender<Role>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(lease.period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = lease.round().await;
        role.send_if_modified(|old| {
            let changed = *old != now;
            *old = now;
            changed
        });
    }
    role.send_replace(Role::Unknown);
    lease.release().await;
}
