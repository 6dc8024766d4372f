//! Waiting for conditions in (simulated or real) time, as lymph's `AsyncTestsMixin`.

use std::time::Duration;

use crate::TestError;

/// How often the waiting helpers check their condition.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Waits until `condition` holds, checking every 10 ms, for at most `timeout`
/// (lymph's `assert_eventually_true`).
///
/// # Errors
///
/// A [`TestError`] naming `what` when `condition` does not hold within `timeout`.
pub async fn eventually<F: FnMut() -> bool>(what: &str, timeout: Duration, mut condition: F) -> Result<(), TestError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(TestError::new(format!("{what}: not true within {timeout:?}")));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Checks that `condition` holds throughout `duration`, every 10 ms (lymph's `assert_temporarily_true`).
///
/// # Errors
///
/// A [`TestError`] naming `what` and when, the first time `condition` does not hold.
pub async fn for_a_while<F: FnMut() -> bool>(
    what: &str,
    duration: Duration,
    mut condition: F,
) -> Result<(), TestError> {
    let start = tokio::time::Instant::now();
    loop {
        if !condition() {
            return Err(TestError::new(format!("{what}: stopped being true after {:?}", start.elapsed())));
        }
        if start.elapsed() >= duration {
            return Ok(());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
