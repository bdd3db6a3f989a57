//! Waiting for something the server does in its own time (a delivery, a
//! status, a restart): [`wait_until`] polls a probe and fails the test with
//! the last state it saw. Use it instead of a bare sleep or a loop of your
//! own.

use std::time::{Duration, Instant};

/// How long [`wait_until`] waits before failing the test.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `probe` every 25 ms until it returns `Ok`, failing the test with
/// `what` (and the state the last `Err` described) after [`DEADLINE`].
pub(crate) async fn wait_until<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    wait_until_within(DEADLINE, what, probe).await
}

/// [`wait_until`] with its own time limit, for waits that should end long
/// before [`DEADLINE`].
pub(crate) async fn wait_until_within<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(state) => {
                assert!(
                    Instant::now() < deadline,
                    "waited {limit:?} for {what} in vain; last seen: {state}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
