//! The `listener` service of lymph's talk, as the Python peer's `interop/python/services/listener.py`.

use std::sync::{Arc, Mutex};

use lymph::{Event, Result};

/// Records every event it handles.
#[derive(Debug, Clone, Default)]
pub struct Listener {
    received: Arc<Mutex<Vec<Event>>>,
}

impl Listener {
    /// The events handled so far, in order.
    pub fn received(&self) -> Vec<Event> {
        self.received.lock().expect("listener lock").clone()
    }

    fn record(&self, event: Event) {
        tracing::info!(event_type = %event.event_type, body = %event.body, "event received");
        self.received.lock().expect("listener lock").push(event);
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
