//! Plugins: code that watches what a container handles, for error reporting, tracing exporters
//! and the like (lymph's `Plugin` with its `error_hook` and `http_request_hook`).
//!
//! A plugin's hooks run inline, on the task that handled the request, so they should be quick
//! (hand work to a channel or a background task). A hook that panics is logged and the container
//! goes on, as lymph logs exceptions in hook callbacks.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use crate::TRACING_TARGET;

/// What was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandledKind {
    /// An RPC request.
    Rpc,
    /// An event, by one event handler.
    Event,
    /// An HTTP request to a web interface.
    Http,
}

impl fmt::Display for HandledKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rpc => "rpc",
            Self::Event => "event",
            Self::Http => "http",
        })
    }
}

/// One request, event or HTTP request a container has handled.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Handled<'a> {
    /// What it was.
    pub kind: HandledKind,
    /// The interface it went to, as installed (`echo`, `web`).
    pub interface: &'a str,
    /// The method (`upper`), the event handler (`on_uppercase`) or the route (`POST /echo/upper`).
    pub name: &'a str,
    /// The request's subject (`echo.upper`), the event's type, or the HTTP path.
    pub subject: &'a str,
    /// Its trace id.
    pub trace_id: &'a str,
    /// How long handling it took.
    pub duration: Duration,
    /// Why it failed, if it did: a NACK's cause, a failed event handler, a panic, an HTTP 5xx.
    pub error: Option<&'a str>,
    /// The HTTP status, for HTTP requests.
    pub status: Option<u16>,
}

/// What a plugin learns about the container it is installed in.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ContainerInfo<'a> {
    /// The container's identity.
    pub identity: &'a str,
    /// Its RPC endpoint.
    pub endpoint: &'a str,
    /// The names of the interfaces it serves.
    pub interfaces: Vec<&'a str>,
}

/// A container plugin. Every hook has a default that does nothing.
pub trait Plugin: Send + Sync + 'static {
    /// The plugin's name, for log lines.
    fn name(&self) -> &str;

    /// The container has started (before it registers).
    fn on_start(&self, container: &ContainerInfo<'_>) {
        let _ = container;
    }

    /// Every request, event and HTTP request handled, whatever the outcome (heartbeats aside).
    fn on_handled(&self, handled: &Handled<'_>) {
        let _ = handled;
    }

    /// lymph's `error_hook`: a request was NACKed because its handler failed or panicked, an
    /// event handler failed, or an HTTP request ended in a 5xx. Called after
    /// [`on_handled`](Plugin::on_handled).
    fn on_error(&self, failure: &Handled<'_>) {
        let _ = failure;
    }

    /// lymph's `http_request_hook`: an HTTP request is about to be handled by `interface`.
    fn on_http_request(&self, interface: &str, trace_id: &str, request: &http::request::Parts) {
        let _ = (interface, trace_id, request);
    }

    /// The container is stopping; flush what is buffered.
    fn on_stop(&self) {}
}

/// The plugins of one container.
#[derive(Clone, Default)]
pub(crate) struct Plugins(Vec<Arc<dyn Plugin>>);

impl fmt::Debug for Plugins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|p| p.name())).finish()
    }
}

impl Plugins {
    pub(crate) fn new(plugins: Vec<Arc<dyn Plugin>>) -> Self {
        Self(plugins)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Runs `hook` on every plugin; a panic is logged and the next plugin runs.
    pub(crate) fn each(&self, hook: &str, call: impl Fn(&dyn Plugin)) {
        for plugin in &self.0 {
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| call(plugin.as_ref()))) {
                let message = crate::container::panic_message(&panic);
                tracing::error!(target: TRACING_TARGET, plugin = plugin.name(), hook, panic = %message, "plugin hook panicked");
            }
        }
    }

    /// Reports `handled`, and its failure if it failed.
    pub(crate) fn handled(&self, handled: &Handled<'_>) {
        if self.is_empty() {
            return;
        }
        self.each("on_handled", |plugin| plugin.on_handled(handled));
        if handled.error.is_some() {
            self.each("on_error", |plugin| plugin.on_error(handled));
        }
    }
}
