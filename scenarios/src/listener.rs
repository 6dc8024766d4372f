//! The `listener` service of lymph's talk, as the Python peer's `interop/python/services/listener.py`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use lymph::{Event, Result};

/// The most events a [`Listener`] keeps: the oldest go first.
pub const MAX_RECORDED: usize = 1024;
/// The most bytes of event bodies (as msgpack) a [`Listener`] keeps: the oldest go first.
pub const MAX_RECORDED_BYTES: usize = 4 << 20;

/// Records the events it handles: the last [`MAX_RECORDED`], within [`MAX_RECORDED_BYTES`] of
/// bodies, so that a long-running instance (`scenarios instance`) holds bounded memory whatever
/// is published to it.
#[derive(Debug, Clone, Default)]
pub struct Listener {
    received: Arc<Mutex<Recorded>>,
}

#[derive(Debug, Default)]
struct Recorded {
    events: VecDeque<(Event, usize)>,
    bytes: usize,
}

impl Listener {
    /// The events handled so far (the last ones, see [`Listener`]), in order.
    pub fn received(&self) -> Vec<Event> {
        self.received.lock().expect("listener lock").events.iter().map(|(event, _)| event.clone()).collect()
    }

    fn record(&self, event: Event) {
        tracing::info!(event_type = %event.event_type, body = %event.body, "event received");
        let size = event.body.to_msgpack().len() + event.event_type.len();
        let mut recorded = self.received.lock().expect("listener lock");
        recorded.bytes += size;
        recorded.events.push_back((event, size));
        while recorded.events.len() > MAX_RECORDED || (recorded.bytes > MAX_RECORDED_BYTES && recorded.events.len() > 1)
        {
            let (_, size) = recorded.events.pop_front().expect("not empty");
            recorded.bytes -= size;
        }
    }
}

#[lymph::interface(name = "listener")]
impl Listener {
    /// Handles uppercase_transform_finished, emitted by echo.upper.
    #[event("uppercase_transform_finished")]
    async fn on_uppercase(&self, event: Event) -> Result<()> {
        self.record(event);
        Ok(())
    }

    /// Handles every event type under `interop.`.
    #[event("interop.#")]
    async fn on_interop(&self, event: Event) -> Result<()> {
        self.record(event);
        Ok(())
    }
}
