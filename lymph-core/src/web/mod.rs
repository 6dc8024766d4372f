//! Web interfaces: lymph's third kind of interface, HTTP, on axum.
//!
//! A [`WebInterface`] gives an [`axum::Router`]; its handlers take the same [`Context`] RPC
//! handlers get (as an extractor), so they call services and emit events in the request's trace.
//! The container serves the router on a [`WebNetwork`] (real TCP, or `turmoil::net` in the
//! simulator), registers the interface as a service and, as lymph does, under `/http/<name>/<id>`
//! with its `http_port`, and adds what lymph adds to every request:
//!
//! - a trace id per request, sent back in `X-Trace-Id` (`tracing.response_header`); an incoming
//!   header seeds it only when `tracing.request_header` names one, since by default incoming
//!   headers are not trusted;
//! - a health check, `GET /_health/` (`healthcheck.endpoint`, `healthcheck.enabled`): 200 when
//!   [`WebInterface::is_healthy`], else 503;
//! - the container's metrics in Prometheus text form at `GET /_metrics` (`metrics.endpoint`,
//!   `metrics.enabled`);
//! - a request body limit, `max_body_size` bytes (2 MiB by default);
//! - a panicking handler answers 500 and the server goes on.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use lymph_core::Context;
//! use lymph_core::web::{Json, Router, WebInterface, routing::post};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Text {
//!     text: String,
//! }
//!
//! struct Gateway;
//!
//! impl WebInterface for Gateway {
//!     fn name(&self) -> &'static str {
//!         "web"
//!     }
//!
//!     fn router(self: Arc<Self>) -> Router {
//!         Router::new().route("/echo/upper", post(upper))
//!     }
//! }
//!
//! async fn upper(ctx: Context, Json(body): Json<Text>) -> lymph_core::Result<Json<Text>> {
//!     let text: String = ctx.proxy("echo").call("upper", &[("text", body.text)]).await?;
//!     Ok(Json(Text { text }))
//! }
//! ```

mod client;
mod network;
pub(crate) mod server;

use std::sync::Arc;

pub use axum::{self, Json, Router, extract, http, response, routing};
pub use client::{WebClient, WebResponse};
pub use network::{Connection, TcpWebNetwork, WebIo, WebListener, WebNetwork};

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::{Context, Error, Result, Value};

/// An HTTP interface (lymph's `WebServiceInterface`).
///
/// Install it with [`ContainerBuilder::web`](crate::ContainerBuilder::web) or, from a
/// configuration, through an application's web class.
pub trait WebInterface: Send + Sync + 'static {
    /// The name it is installed and registered under by default (`web`).
    fn name(&self) -> &'static str;

    /// Its routes. Handlers take [`Context`] as an extractor; state of the interface itself is
    /// best passed with [`Router::with_state`].
    fn router(self: Arc<Self>) -> Router;

    /// Whether the interface is healthy: the health check answers 200 if so, else 503.
    fn is_healthy(&self) -> bool {
        true
    }
}

/// The settings of a web interface, from its configuration section (lymph's keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// `port`: the port to listen on; any free port when unset.
    pub port: Option<u16>,
    /// `healthcheck.endpoint` when `healthcheck.enabled` (default `/_health/`); `None` if disabled.
    pub health_path: Option<String>,
    /// `metrics.endpoint` when `metrics.enabled` (default `/_metrics`); `None` if disabled.
    pub metrics_path: Option<String>,
    /// `tracing.response_header`: the response header that carries the trace id (`X-Trace-Id`).
    pub response_header: http::HeaderName,
    /// `tracing.request_header`: a request header whose value, if present, becomes the trace id;
    /// none by default.
    pub request_header: Option<http::HeaderName>,
    /// `max_body_size`: the largest request body handlers read, in bytes (2 MiB).
    pub max_body_size: usize,
}

/// lymph's trace id response header.
pub const TRACE_ID_HEADER: &str = "X-Trace-Id";

/// The default request body limit: 2 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 2 * 1024 * 1024;

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            port: None,
            health_path: Some("/_health/".to_owned()),
            metrics_path: Some("/_metrics".to_owned()),
            response_header: http::HeaderName::from_static("x-trace-id"),
            request_header: None,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
        }
    }
}

impl WebConfig {
    /// Reads the settings from an interface's configuration; `Value::Nil` gives the defaults.
    /// Keys may be nested (`healthcheck: {enabled: false}`) or dotted (`healthcheck.enabled`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the key whose value is wrong.
    pub fn from_value(config: &Value) -> Result<Self> {
        let mut web = Self::default();
        let bad = |key: &str, what: &str| Error::Config(format!("{key}: {what}"));
        if let Some(port) = lookup(config, "port") {
            let port = port.as_u64().ok_or_else(|| bad("port", "expected a port number"))?;
            web.port = Some(u16::try_from(port).map_err(|_| bad("port", "out of range"))?);
        }
        let path = |key: &str| -> Result<Option<String>> {
            match lookup(config, key) {
                None => Ok(None),
                Some(value) => match value.as_str() {
                    Some(path) if path.starts_with('/') => Ok(Some(path.to_owned())),
                    _ => Err(bad(key, "expected a path starting with '/'")),
                },
            }
        };
        let enabled = |key: &str| -> Result<bool> {
            lookup(config, key).map_or(Ok(true), |v| v.as_bool().ok_or_else(|| bad(key, "expected true or false")))
        };
        if let Some(endpoint) = path("healthcheck.endpoint")? {
            web.health_path = Some(endpoint);
        }
        if !enabled("healthcheck.enabled")? {
            web.health_path = None;
        }
        if let Some(endpoint) = path("metrics.endpoint")? {
            web.metrics_path = Some(endpoint);
        }
        if !enabled("metrics.enabled")? {
            web.metrics_path = None;
        }
        let header = |key: &str| -> Result<Option<http::HeaderName>> {
            let Some(value) = lookup(config, key) else { return Ok(None) };
            let name = value.as_str().ok_or_else(|| bad(key, "expected a header name"))?;
            http::HeaderName::from_bytes(name.as_bytes()).map(Some).map_err(|_| bad(key, "not a valid header name"))
        };
        if let Some(name) = header("tracing.response_header")? {
            web.response_header = name;
        }
        web.request_header = header("tracing.request_header")?;
        if let Some(size) = lookup(config, "max_body_size") {
            let size = size.as_u64().ok_or_else(|| bad("max_body_size", "expected a number of bytes"))?;
            web.max_body_size = usize::try_from(size).map_err(|_| bad("max_body_size", "out of range"))?;
        }
        Ok(web)
    }
}

/// `key` in `config`, nested (`a: {b: ..}`) or flat (`"a.b": ..`).
fn lookup<'a>(config: &'a Value, key: &str) -> Option<&'a Value> {
    if let Some(value) = config.get(key) {
        return Some(value);
    }
    let (head, rest) = key.split_once('.')?;
    lookup(config.get(head)?, rest)
}

/// The request's [`Context`]: its trace, calls to other services, events.
impl<S: Send + Sync> FromRequestParts<S> for Context {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Context>()
            .cloned()
            .ok_or((StatusCode::INTERNAL_SERVER_ERROR, "no lymph context: this router is not served by a container"))
    }
}

/// A lymph error as an HTTP response, so handlers can use `?` on calls to other services:
/// 504 for a timeout, 503 when the service cannot be reached, 502 when it failed, 500 otherwise,
/// with the JSON body `{"error": <kind>, "message": <text>}`.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            Error::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Error::LookupFailure { .. } | Error::NotConnected { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "service unavailable")
            }
            Error::Nack { .. } => (StatusCode::BAD_GATEWAY, "nack"),
            Error::RemoteError { .. } => (StatusCode::BAD_GATEWAY, "remote error"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        };
        tracing::warn!(target: crate::TRACING_TARGET, error = %self, status = status.as_u16(), "request failed");
        let body = serde_json::json!({ "error": kind, "message": self.to_string() });
        (status, Json(body)).into_response()
    }
}
