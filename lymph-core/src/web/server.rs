//! Serving a web interface: the accept loop, one hyper connection per client, and what the
//! container adds to every request (trace id, health check, metrics, panics as 500).

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::task::JoinSet;
use tower::ServiceExt;
use tracing::Instrument;

use super::network::{Connection, WebListener};
use super::{WebConfig, WebInterface};
use crate::container::{Installed, Shared, panic_message};
use crate::plugin::{Handled, HandledKind};
use crate::{Context, Error, Latch, Result, TRACING_TARGET};

/// How long the accept loop waits after a failed accept (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The longest trace id taken from a request header.
const MAX_TRACE_ID_LEN: usize = 128;

/// A web interface installed in a container.
pub(crate) struct InstalledWeb {
    /// Its installation as a service (name, id, configuration).
    pub(crate) installed: Arc<Installed>,
    pub(crate) interface: Arc<dyn WebInterface>,
    pub(crate) config: WebConfig,
    /// Where it listens, once started.
    pub(crate) addr: Mutex<Option<SocketAddr>>,
}

impl InstalledWeb {
    pub(crate) fn new(installed: Arc<Installed>, interface: Arc<dyn WebInterface>) -> Result<Self> {
        let config = WebConfig::from_value(&installed.config)
            .map_err(|e| Error::Config(format!("interfaces.{}.{}", installed.name, config_detail(&e))))?;
        Ok(Self { installed, interface, config, addr: Mutex::new(None) })
    }

    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        *self.addr.lock().expect("web address lock")
    }
}

fn config_detail(error: &Error) -> String {
    match error {
        Error::Config(detail) => detail.clone(),
        other => other.to_string(),
    }
}

/// What handles one request of one web interface.
struct App {
    shared: Arc<Shared>,
    web: Arc<InstalledWeb>,
    router: axum::Router,
}

/// Binds the interface's port and starts serving it; returns where it listens.
pub(crate) async fn start(shared: &Arc<Shared>, web: &Arc<InstalledWeb>) -> Result<SocketAddr> {
    let port = web.config.port.unwrap_or(0);
    let name = &web.installed.name;
    let (listener, addr) = shared
        .web_network
        .bind(port)
        .await
        .map_err(|e| Error::Config(format!("interfaces.{name}: cannot listen on port {port}: {e}")))?;
    *web.addr.lock().expect("web address lock") = Some(addr);
    let router = web.interface.clone().router().layer(DefaultBodyLimit::max(web.config.max_body_size));
    let app = Arc::new(App { shared: shared.clone(), web: web.clone(), router });
    tokio::spawn(accept(app, listener));
    tracing::info!(target: TRACING_TARGET, interface = %name, %addr, "web interface listening");
    Ok(addr)
}

async fn accept(app: Arc<App>, mut listener: Box<dyn WebListener>) {
    let shutdown = app.shared.shutdown.clone();
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.wait() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(io) => {
                while connections.try_join_next().is_some() {}
                connections.spawn(serve_connection(app.clone(), io, shutdown.clone()));
            }
            Err(error) => {
                tracing::warn!(target: TRACING_TARGET, %error, interface = %app.web.installed.name, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    drop(listener);
    // Open connections finish their requests and close.
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(app: Arc<App>, io: Connection, shutdown: Latch) {
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(app.handle(request.map(Body::new)).await) }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = shutdown.wait() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        tracing::debug!(target: TRACING_TARGET, %error, "web connection ended with an error");
    }
}

impl App {
    async fn handle(&self, mut request: Request<Body>) -> Response {
        let shared = &self.shared;
        let config = &self.web.config;
        let trace_id = config
            .request_header
            .as_ref()
            .and_then(|name| request.headers().get(name))
            .and_then(|value| value.to_str().ok())
            .filter(|id| !id.is_empty() && id.len() <= MAX_TRACE_ID_LEN)
            .map_or_else(|| shared.new_id(), str::to_owned);
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let name = &self.web.installed.name;
        let span = tracing::info_span!(
            target: TRACING_TARGET, "http", interface = %name, method = %method, path = %path, trace_id = %trace_id
        );
        let _in_flight = shared.track();
        let started = tokio::time::Instant::now();
        let is_get = method == Method::GET || method == Method::HEAD;
        let health = is_get && config.health_path.as_deref() == Some(&path);
        let metrics = is_get && config.metrics_path.as_deref() == Some(&path);
        let mut failure = None;
        let mut response = if health {
            let healthy = AssertUnwindSafe(async { self.web.interface.is_healthy() }).catch_unwind().await;
            let status = if matches!(healthy, Ok(true)) { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            status.into_response()
        } else if metrics {
            let text = crate::metrics::prometheus_text(&shared.metrics_series());
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
        } else {
            let ctx = Context::new(shared.clone(), trace_id.clone(), self.web.installed.config.clone());
            request.extensions_mut().insert(ctx);
            if !shared.plugins.is_empty() {
                let (parts, body) = request.into_parts();
                shared.plugins.each("on_http_request", |plugin| plugin.on_http_request(name, &trace_id, &parts));
                request = Request::from_parts(parts, body);
            }
            let handled =
                AssertUnwindSafe(self.router.clone().oneshot(request)).catch_unwind().instrument(span.clone()).await;
            match handled {
                Ok(Ok(response)) => response,
                Ok(Err(infallible)) => match infallible {},
                Err(panic) => {
                    let message = panic_message(&panic);
                    span.in_scope(|| tracing::error!(target: TRACING_TARGET, panic = %message, "handler panicked"));
                    failure = Some(format!("panic: {message}"));
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            }
        };
        let status = response.status().as_u16();
        let duration = started.elapsed();
        // The built-in endpoints are not counted, as heartbeats are not among requests.
        if !health && !metrics {
            shared.metrics.http(name, method.as_str(), status, duration);
            if !shared.plugins.is_empty() {
                if failure.is_none() && status >= 500 {
                    failure = Some(format!("HTTP {status}"));
                }
                let route = format!("{method} {path}");
                shared.plugins.handled(&Handled {
                    kind: HandledKind::Http,
                    interface: name,
                    name: &route,
                    subject: &path,
                    trace_id: &trace_id,
                    duration,
                    error: failure.as_deref(),
                    status: Some(status),
                });
            }
        }
        span.in_scope(|| tracing::info!(target: TRACING_TARGET, status, ?duration, "{method} {path}"));
        if let Ok(value) = HeaderValue::from_str(&trace_id) {
            response.headers_mut().insert(config.response_header.clone(), value);
        }
        response
    }
}

/// The interface a web interface is installed as among the container's services: it has no
/// methods and no event handlers, as lymph's `WebServiceInterface`.
pub(crate) struct WebService;

pub(crate) static WEB_SPEC: crate::interface::InterfaceSpec = crate::interface::InterfaceSpec {
    name: "web",
    version: None,
    doc: "A web interface: its routes are served over HTTP.",
    methods: &[],
    event_handlers: &[],
};

impl crate::Interface for WebService {
    fn spec(&self) -> &'static crate::interface::InterfaceSpec {
        &WEB_SPEC
    }

    fn call<'a>(
        &'a self,
        _ctx: &'a Context,
        _method: &'a str,
        _body: &'a [u8],
    ) -> futures::future::BoxFuture<'a, std::result::Result<Vec<u8>, crate::interface::CallError>> {
        Box::pin(async { Err(crate::interface::CallError::UnknownMethod) })
    }

    fn handle_event<'a>(
        &'a self,
        _ctx: &'a Context,
        handler: &'a str,
        _event: &'a crate::Event,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move { Err(Error::Config(format!("a web interface has no event handler {handler:?}"))) })
    }
}
