//! The context handed to every handler: its trace, and the ways to reach other services.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use serde::Serialize;

use crate::container::Shared;
use crate::interface::Client;
use crate::{Proxy, Result, Value};

/// What a handler gets besides its arguments: the trace it runs in, emitting events, calling
/// other services, its interface's configuration, a seeded random generator and the clock.
///
/// Everything done through a context carries its trace id: requests (in their `trace_id`
/// header) and events (in theirs), so that one user action is one trace across services.
/// Cloning is cheap.
#[derive(Clone)]
pub struct Context {
    shared: Arc<Shared>,
    trace_id: Arc<str>,
    config: Arc<Value>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("trace_id", &self.trace_id).field("endpoint", &self.shared.endpoint).finish()
    }
}

impl Context {
    pub(crate) fn new(shared: Arc<Shared>, trace_id: String, config: Arc<Value>) -> Self {
        Self { shared, trace_id: trace_id.into(), config }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The trace id of the request or event being handled (a fresh one if it had none).
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The same context in another trace.
    pub fn with_trace_id(&self, trace_id: impl Into<String>) -> Self {
        Self { shared: self.shared.clone(), trace_id: trace_id.into().into(), config: self.config.clone() }
    }

    /// This container's endpoint.
    pub fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    /// This container's identity (the `source` of the events it emits).
    pub fn identity(&self) -> &str {
        &self.shared.identity
    }

    /// The configuration of the interface being run (`Value::Nil` when it has none).
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// Emits an event in this trace.
    ///
    /// # Errors
    ///
    /// When `event_type` is empty ([`Error::Config`](crate::Error::Config)), `body` cannot be
    /// encoded or the event system fails.
    pub async fn emit(&self, event_type: &str, body: impl Serialize) -> Result<()> {
        self.emit_delayed(event_type, body, Duration::ZERO).await
    }

    /// Emits an event that is published after `delay` (lymph's `emit(..., delay=s)`).
    ///
    /// # Errors
    ///
    /// When `event_type` is empty or longer than 255 bytes, or the name of its wait queue is
    /// ([`Error::Config`](crate::Error::Config)), `body` cannot be encoded or the event system fails.
    pub async fn emit_delayed(&self, event_type: &str, body: impl Serialize, delay: Duration) -> Result<()> {
        crate::event::check_emit(event_type, delay)?;
        let body = crate::value::to_value(&body)?;
        self.shared.emit(event_type, body, &self.trace_id, delay).await
    }

    /// A proxy to `address`: a service name (looked up in the registry) or an endpoint (`tcp://…`,
    /// `mock://…`). Its requests carry this context's trace id.
    pub fn proxy(&self, address: &str) -> Proxy {
        Proxy::new(self.shared.clone(), address, self.trace_id.clone())
    }

    /// The typed client `C` (e.g. `EchoClient`) of its service, in this trace.
    pub fn client<C: Client>(&self) -> C {
        C::from_proxy(self.proxy(C::SERVICE))
    }

    /// Runs `f` with the container's random generator, seeded (so replayable) in the simulator.
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        self.shared.with_rng(f)
    }

    /// The current time of the container's clock (simulated in the simulator).
    pub fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}
