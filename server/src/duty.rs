//! Who does the work that must happen once per deployment, not once per
//! node: webhook delivery, threshold alerts and pushing checkpoints out
//! (`[checkpoints]`). A single node is always on duty. In cluster mode the
//! node holding the leader lease is, from the moment its lease round says
//! so until the round that says it lost it (`cluster::Node::duty`); every
//! other node keeps its tasks parked.
//!
//! While on duty in a cluster, the work carries the cluster's key-value
//! bucket of delivery positions (`<stream>_cursors`), so a node that takes
//! over resumes where the last one stopped rather than where its own data
//! directory last saw it.
//!
//! Invariant: a task that does duty work starts it only after
//! [`Duty::on`] answered and stops it once [`Duty::off`] completes. Across
//! a change of leader the two nodes may overlap by up to one lease round,
//! so what is sent is at least once, never exactly once.

use std::sync::Arc;

use async_nats::jetstream::kv;
use tokio::sync::watch;

/// What a node on duty works with.
#[derive(Debug, Clone)]
pub(crate) struct OnDuty {
    /// The cluster's bucket of delivery positions; `None` on a single node,
    /// whose positions live only in its data directory.
    pub(crate) cursors: Option<kv::Store>,
}

/// A watch on whether this node is on duty.
#[derive(Debug, Clone)]
pub(crate) struct Duty {
    state: watch::Receiver<Option<OnDuty>>,
    /// Keeps a single node's channel open, so waiting on it never ends.
    _always: Option<Arc<watch::Sender<Option<OnDuty>>>>,
}

impl Duty {
    /// A single node: on duty from the start, for good.
    pub(crate) fn always() -> Duty {
        let (tx, state) = watch::channel(Some(OnDuty { cursors: None }));
        Duty {
            state,
            _always: Some(Arc::new(tx)),
        }
    }

    /// A duty that follows `state`, which the cluster node sets.
    pub(crate) fn following(state: watch::Receiver<Option<OnDuty>>) -> Duty {
        Duty {
            state,
            _always: None,
        }
    }

    /// Whether this node is on duty now.
    pub(crate) fn is_on(&self) -> bool {
        self.state.borrow().is_some()
    }

    /// Waits until this node is on duty. `None` once nobody will ever set
    /// it again (the node is shutting down).
    pub(crate) async fn on(&mut self) -> Option<OnDuty> {
        match self.state.wait_for(Option::is_some).await {
            Ok(on) => on.clone(),
            Err(_) => None,
        }
    }

    /// Waits until this node is off duty (or its duty can no longer be
    /// known: shutting down).
    pub(crate) async fn off(&mut self) {
        let _ = self.state.wait_for(Option::is_none).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_single_node_is_always_on_duty() {
        let mut duty = Duty::always();
        assert!(duty.is_on());
        assert!(duty.on().await.is_some_and(|on| on.cursors.is_none()));
    }

    #[tokio::test]
    async fn a_following_duty_starts_and_stops_with_its_state() {
        let (tx, rx) = watch::channel(None);
        let mut duty = Duty::following(rx);
        assert!(!duty.is_on());
        duty.off().await;
        tx.send_replace(Some(OnDuty { cursors: None }));
        assert!(duty.on().await.is_some());
        tx.send_replace(None);
        duty.off().await;
        assert!(!duty.is_on());
        drop(tx);
        assert!(duty.on().await.is_none(), "a closed duty is never on again");
    }
}
