//! The `echo` service of lymph's talk, as the Python peer's `interop/python/services/echo.py`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lymph::{Context, Error, Result};
use serde_json::json;

/// The event `upper` emits.
pub const UPPERCASED: &str = "uppercase_transform_finished";

/// Upper-cases and echoes text; counts the requests it serves.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    served: Arc<AtomicUsize>,
}

impl Echo {
    /// An echo service that counts the requests it serves in `served`.
    pub fn counting(served: Arc<AtomicUsize>) -> Self {
        Self { served }
    }

    /// How many requests this instance served.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }
}

#[lymph::interface(name = "echo")]
impl Echo {
    /// Upper-cases `text` and emits uppercase_transform_finished.
    #[rpc]
    async fn upper(&self, ctx: &Context, text: String) -> Result<String> {
        self.count();
        tracing::info!(%text, "upper-casing");
        ctx.emit(UPPERCASED, json!({ "text": text })).await?;
        Ok(text.to_uppercase())
    }

    /// Returns `text` unchanged (no side effects).
    #[rpc]
    async fn echo(&self, text: String) -> Result<String> {
        self.count();
        Ok(text)
    }

    /// Raises ValueError(message); the client gets an ERROR reply.
    #[rpc(raises = [ValueError])]
    async fn fail(&self, message: String) -> Result<()> {
        self.count();
        Err(Error::raise("ValueError", message))
    }
}
