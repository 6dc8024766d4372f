//! A one-way flag tasks can wait on, which wakes them in a replayable order.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// A flag that starts unset and, once [`set`](Latch::set), stays set; [`wait`](Latch::wait)
/// returns once it is. Clones share the flag.
///
/// Waiters wake in the order they started waiting. `tokio::sync::watch`, the usual tool for this,
/// spreads its waiters over several queues picked with tokio's per-thread random generator,
/// which the simulator cannot seed, so tasks woken by a watch run in an order that changes from
/// run to run. Code that runs in the simulator waits on a `Latch` instead.
#[derive(Clone, Default)]
pub struct Latch {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    set: AtomicBool,
    notify: Notify,
}

impl fmt::Debug for Latch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Latch").field(&self.is_set()).finish()
    }
}

impl Latch {
    /// An unset latch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the latch and wakes every waiter; returns whether it was set already.
    pub fn set(&self) -> bool {
        let was_set = self.inner.set.swap(true, Ordering::AcqRel);
        if !was_set {
            self.inner.notify.notify_waiters();
        }
        was_set
    }

    /// Whether the latch is set.
    pub fn is_set(&self) -> bool {
        self.inner.set.load(Ordering::Acquire)
    }

    /// Waits until the latch is set (at once if it is).
    pub async fn wait(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Latch;

    #[tokio::test]
    async fn waiters_wake_in_the_order_they_started_waiting() {
        let latch = Latch::new();
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (latch, order) = (latch.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                latch.wait().await;
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        assert!(!latch.set());
        assert!(latch.set(), "setting twice reports the first set");
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
        latch.wait().await;
    }
}
