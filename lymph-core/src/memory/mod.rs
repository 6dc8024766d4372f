//! The embedded backends of the three seams: everything in one process, nothing to install.
//!
//! A [`MemoryNetwork`] is one in-process "cluster", the counterpart of lymph's
//! `MockServiceNetwork`: every container built from it gets its own [`MemoryRpc`] transport
//! (endpoints `mock://127.0.0.1:<n>`), and they all share one event broker ([`MemoryEvents`],
//! RabbitMQ's topic-exchange semantics) and one registry ([`MemoryRegistry`]).
//!
//! The broker and the registry are plain state machines behind a mutex and use only `tokio`
//! (channels and `tokio::time`), so the simulated broker and registry hosts of `lymph-testing`
//! run them as their server-side state.
//!
//! ```
//! use lymph_core::memory::MemoryNetwork;
//!
//! let network = MemoryNetwork::new();
//! let (events, registry) = (network.events(), network.registry());
//! # let _ = (events, registry);
//! ```

mod events;
mod registry;
mod rpc;

use std::sync::{Arc, Mutex, OnceLock};

pub use events::MemoryEvents;
pub use registry::MemoryRegistry;
pub use rpc::MemoryRpc;

/// One in-process cluster: an RPC endpoint table, an event broker and a registry, shared by
/// every transport created from it.
///
/// Cloning gives another handle to the same cluster.
#[derive(Clone, Debug, Default)]
pub struct MemoryNetwork {
    rpc: Arc<Mutex<rpc::Endpoints>>,
    events: MemoryEvents,
    registry: MemoryRegistry,
}

impl MemoryNetwork {
    /// A new, empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide default cluster, for code that does not pass one around.
    pub fn global() -> &'static MemoryNetwork {
        static GLOBAL: OnceLock<MemoryNetwork> = OnceLock::new();
        GLOBAL.get_or_init(MemoryNetwork::new)
    }

    /// A new RPC transport for one container of this cluster; it gets its endpoint on `bind`.
    pub fn rpc(&self) -> MemoryRpc {
        MemoryRpc::new(Arc::clone(&self.rpc))
    }

    /// A handle to this cluster's event broker.
    pub fn events(&self) -> MemoryEvents {
        self.events.clone()
    }

    /// A handle to this cluster's registry.
    pub fn registry(&self) -> MemoryRegistry {
        self.registry.clone()
    }
}
