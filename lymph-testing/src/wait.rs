//! Waiting for conditions in (simulated or real) time, as lymph's `AsyncTestsMixin`.
//!
//! A condition is a closure that returns `bool`, or an async closure whose future does (an RPC
//! call, say): both `eventually("set", t, || flag.get())` and
//! `eventually("credited", t, async || wallet.balance(id).await.is_ok_and(|b| b == 30))` work.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::TestError;

/// How often the waiting helpers check their condition.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Something [`eventually`] and [`for_a_while`] can check: a closure returning `bool`
/// ([`Sync`](condition::Sync)), or an async closure returning `bool`
/// ([`Async`](condition::Async)). `M` tells the two apart and is always inferred.
pub trait Condition<M> {
    /// Checks the condition once.
    fn check(&mut self) -> impl Future<Output = bool>;
}

/// The markers of [`Condition`]'s two kinds.
pub mod condition {
    /// A closure returning `bool`.
    #[derive(Debug)]
    pub enum Sync {}
    /// An async closure returning `bool`.
    #[derive(Debug)]
    pub enum Async {}
}

impl<F: FnMut() -> bool> Condition<condition::Sync> for F {
    fn check(&mut self) -> impl Future<Output = bool> {
        std::future::ready(self())
    }
}

impl<F: AsyncFnMut() -> bool> Condition<condition::Async> for F {
    fn check(&mut self) -> impl Future<Output = bool> {
        self()
    }
}

/// Waits until `condition` holds, checking every 10 ms, for at most `timeout`
/// (lymph's `assert_eventually_true`). An async condition that is still running when `timeout`
/// has passed is cancelled and counts as not holding.
///
/// # Errors
///
/// A [`TestError`] naming `what` when `condition` does not hold within `timeout`.
pub async fn eventually<M, C: Condition<M>>(what: &str, timeout: Duration, mut condition: C) -> Result<(), TestError> {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::time::timeout_at(deadline, condition.check()).await == Ok(true) {
            return Ok(());
        }
        if Instant::now() >= deadline {
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
pub async fn for_a_while<M, C: Condition<M>>(
    what: &str,
    duration: Duration,
    mut condition: C,
) -> Result<(), TestError> {
    let start = Instant::now();
    loop {
        if !condition.check().await {
            return Err(TestError::new(format!("{what}: stopped being true after {:?}", start.elapsed())));
        }
        if start.elapsed() >= duration {
            return Ok(());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    async fn later(value: u32) -> u32 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        value
    }

    #[tokio::test(start_paused = true)]
    async fn eventually_waits_for_a_sync_or_an_async_condition() {
        let calls = Cell::new(0);
        let sync = eventually("third call", Duration::from_secs(1), || {
            calls.set(calls.get() + 1);
            calls.get() == 3
        });
        assert_eq!(sync.await, Ok(()));
        let start = Instant::now();
        let asynchronous = eventually("later", Duration::from_secs(1), async || later(7).await == 7).await;
        assert_eq!(asynchronous, Ok(()));
        assert_eq!(start.elapsed(), Duration::from_millis(30));
        let never = eventually("never", Duration::from_millis(100), async || later(1).await == 2).await;
        assert_eq!(never, Err(TestError::new("never: not true within 100ms")));
    }

    #[tokio::test(start_paused = true)]
    async fn an_async_condition_slower_than_the_timeout_is_cut_short() {
        let start = Instant::now();
        let slow = eventually("slow", Duration::from_millis(50), async || {
            tokio::time::sleep(Duration::from_secs(10)).await;
            true
        });
        assert!(slow.await.is_err());
        assert_eq!(start.elapsed(), Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn for_a_while_takes_async_conditions() {
        assert_eq!(for_a_while("holds", Duration::from_millis(100), async || later(1).await == 1).await, Ok(()));
        let flips = Cell::new(0);
        let broken = for_a_while("flips", Duration::from_secs(1), async || {
            flips.set(flips.get() + 1);
            flips.get() < 3
        });
        assert!(broken.await.unwrap_err().to_string().starts_with("flips: stopped being true after"));
    }
}
