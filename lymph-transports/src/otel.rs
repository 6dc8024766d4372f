//! An OpenTelemetry plugin: every request, event and HTTP request a container handles becomes
//! one span, exported over OTLP/HTTP (protobuf) to a collector. It stands in for lymph's Sentry
//! and New Relic plugins in a Rust deployment.
//!
//! # Spans
//!
//! | handled | span name | kind | attributes |
//! |---|---|---|---|
//! | an RPC request | the subject, `echo.upper` | server | `rpc.system = lymph`, `rpc.service`, `rpc.method` |
//! | an event, by one handler | `event <type>`, `event uppercase_transform_finished` | consumer | `messaging.system = lymph`, `messaging.operation.type = process`, `messaging.destination.name`, `lymph.handler` |
//! | an HTTP request | the method and path, `POST /echo/upper` | server | `http.request.method`, `url.path`, `http.response.status_code` |
//!
//! Every span also has `lymph.kind` (`rpc`, `event`, `http`), `lymph.interface` and
//! `lymph.trace_id`. Its trace id is the lymph trace id: lymph's are 32 hex digits, which is
//! exactly an OpenTelemetry trace id, so a collector groups the spans of the gateway, of `echo`
//! and of the listener that handled echo's event into one trace, and searching the collector for
//! a `X-Trace-Id` finds it. A trace id that is not 32 hex digits (or is all zeros) is hashed into
//! 128 bits (MD5), so its spans still group; `lymph.trace_id` keeps it as it was. lymph passes no
//! span ids between services, so the spans of a trace are siblings, ordered by time. Each span
//! gets a fresh random span id; it ends when the hook runs and starts `duration` earlier. A
//! failure (a NACK's cause, a failed event handler, a panic, an HTTP 5xx) sets the span's status
//! to error with its text; a declared error (an ERROR reply) and a 4xx are not failures.
//!
//! The resource's `service.name` is [`OtelConfig::with_service_name`], else the first interface
//! of the container other than `lymph`, else `lymph`; `service.instance.id` is the container's
//! identity. The `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_BSP_*`
//! environment variables apply as in any OpenTelemetry SDK; the endpoint is the configured one.
//!
//! # Export
//!
//! The hooks only queue finished spans (up to 2048; beyond that spans are dropped), so handling
//! never waits for the collector. The SDK's batch processor exports them from a thread of its
//! own every [`export_interval`](OtelConfig::with_export_interval) or 512 spans, over a hyper
//! client that runs on a small runtime of the plugin's (one thread), so export works whichever
//! runtime the container runs on. An export is bounded by [`timeout`](OtelConfig::with_timeout),
//! retries included. A collector that is down is logged once, at warn (the next failures at
//! debug, until an export succeeds again); its spans are lost. [`Plugin::on_stop`] exports what
//! is queued and shuts the exporter down, waiting for it at most the timeout and a second, so
//! that a process that exits after stopping its container loses no span; on a multi-threaded
//! runtime the wait runs under `block_in_place`, on a current-thread runtime it holds the
//! runtime's thread.
//!
//! The plugin reads the wall clock and draws span ids from the OS's randomness: it is for real
//! deployments, not for the simulator, whose determinism it would not change but whose time it
//! would not follow either.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use lymph_core::plugin::{ContainerInfo, Handled, HandledKind, Plugin};
use lymph_core::{Error, Result};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanExporter,
    SpanLinks, SpanProcessor,
};

/// The tracing target of this plugin.
const TARGET: &str = "lymph::otel";

/// How many spans are kept for export before the exporter is running; as many as it queues.
const EARLY_SPANS: usize = 2048;

/// Where and how an [`OtelPlugin`] exports.
#[derive(Debug, Clone)]
pub struct OtelConfig {
    endpoint: String,
    service_name: Option<String>,
    export_interval: Duration,
    timeout: Duration,
}

impl Default for OtelConfig {
    fn default() -> Self {
        Self {
            endpoint: Self::DEFAULT_ENDPOINT.to_owned(),
            service_name: None,
            export_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        }
    }
}

impl OtelConfig {
    /// The endpoint spans go to by default: an OpenTelemetry collector on this host.
    pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4318/v1/traces";

    /// Exports to [`DEFAULT_ENDPOINT`](Self::DEFAULT_ENDPOINT) every 5 s, with a 5 s timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// The OTLP/HTTP traces endpoint, an `http://` URL; one with no path gets OTLP's
    /// `/v1/traces`. `https://` needs TLS, which this plugin does not have: put a collector on
    /// the host or the pod and let it forward.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// The resource's `service.name` (default: the container's first interface other than
    /// `lymph`).
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// How often queued spans are exported (default 5 s; also every 512 spans).
    pub fn with_export_interval(mut self, interval: Duration) -> Self {
        self.export_interval = interval;
        self
    }

    /// How long one export may take, retries included (default 5 s); [`Plugin::on_stop`] waits
    /// for the last one at most this and a second.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoint, as configured.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The configured `service.name`, if any.
    pub fn service_name(&self) -> Option<&str> {
        self.service_name.as_deref()
    }

    /// The endpoint to post to: checked, with `/v1/traces` added to a bare `http://host:port`.
    fn traces_url(&self) -> Result<String> {
        let invalid = |why: &str| {
            Error::Config(format!(
                "endpoint: {why}, got {:?} (expected an http:// URL such as {})",
                self.endpoint,
                Self::DEFAULT_ENDPOINT
            ))
        };
        let uri: http::Uri = self.endpoint.parse().map_err(|_| invalid("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(invalid("https is not supported (no TLS), export to a collector over http")),
            _ => return Err(invalid("not an http:// URL")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        Ok(match uri.path() {
            "" | "/" => format!("{}/v1/traces", self.endpoint.trim_end_matches('/')),
            _ => self.endpoint.clone(),
        })
    }
}

/// What an [`OtelPlugin`] has exported so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtelStats {
    /// Spans the collector accepted.
    pub exported_spans: u64,
    /// Exports that failed (the collector down or refusing); their spans are lost.
    pub failed_exports: u64,
}

/// The counters behind [`OtelStats`], and whether the collector is failing right now.
#[derive(Debug, Default)]
struct Counters {
    exported_spans: AtomicU64,
    failed_exports: AtomicU64,
    failing: AtomicBool,
}

/// A [`Plugin`] that exports a span for every request, event and HTTP request to an
/// OpenTelemetry collector (see the [module docs](self)).
///
/// Install one per container: `Container::builder().plugin(OtelPlugin::new(config)?)`, or
/// from a configuration, `plugins: {tracing: {class: "lymph.plugins.otel:OpenTelemetryPlugin"}}`
/// (see `lymph::app::Application`).
pub struct OtelPlugin {
    config: OtelConfig,
    url: String,
    /// Set by the first `on_start`: the exporter, once the service name is known.
    pipeline: OnceLock<Option<Pipeline>>,
    /// Spans handled before `on_start` (an event can be delivered just before it runs).
    early: Mutex<Vec<SpanData>>,
    counters: Arc<Counters>,
    scope: InstrumentationScope,
    ids: RandomIdGenerator,
}

impl fmt::Debug for OtelPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelPlugin").field("url", &self.url).field("config", &self.config).finish_non_exhaustive()
    }
}

impl OtelPlugin {
    /// A plugin exporting as `config` says. Nothing is started before the container starts.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the endpoint is not an `http://` URL; the message starts with
    /// `endpoint:`.
    pub fn new(config: OtelConfig) -> Result<Self> {
        let url = config.traces_url()?;
        let scope = InstrumentationScope::builder("lymph").with_version(env!("CARGO_PKG_VERSION")).build();
        Ok(Self {
            config,
            url,
            pipeline: OnceLock::new(),
            early: Mutex::new(Vec::new()),
            counters: Arc::default(),
            scope,
            ids: RandomIdGenerator::default(),
        })
    }

    /// Exports to the default endpoint, with the default service name.
    pub fn with_defaults() -> Self {
        Self::new(OtelConfig::new()).expect("the default endpoint is valid")
    }

    /// The URL spans are posted to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What has been exported so far.
    pub fn stats(&self) -> OtelStats {
        OtelStats {
            exported_spans: self.counters.exported_spans.load(Ordering::Relaxed),
            failed_exports: self.counters.failed_exports.load(Ordering::Relaxed),
        }
    }

    /// The span for `handled`, ending now.
    fn span(&self, handled: &Handled<'_>) -> SpanData {
        let end_time = SystemTime::now();
        let start_time = end_time.checked_sub(handled.duration).unwrap_or(end_time);
        let span_context = SpanContext::new(
            trace_id(handled.trace_id),
            self.ids.new_span_id(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let status = match handled.error {
            Some(error) => Status::error(error.to_owned()),
            None => Status::Unset,
        };
        SpanData {
            span_context,
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: span_kind(handled.kind),
            name: Cow::Owned(span_name(handled.kind, handled.name, handled.subject)),
            start_time,
            end_time,
            attributes: attributes(handled),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }

    /// Starts the exporter for the container `info` describes.
    fn start(&self, info: &ContainerInfo<'_>) -> Option<Pipeline> {
        let service_name = self
            .config
            .service_name
            .clone()
            .or_else(|| info.interfaces.iter().find(|name| **name != "lymph").map(|name| (*name).to_owned()))
            .unwrap_or_else(|| "lymph".to_owned());
        let resource = Resource::builder()
            .with_service_name(service_name.clone())
            .with_attribute(KeyValue::new("service.instance.id", info.identity.to_owned()))
            .build();
        match Pipeline::start(&self.config, &self.url, resource, self.counters.clone()) {
            Ok(pipeline) => {
                tracing::info!(target: TARGET, url = %self.url, service = %service_name, "exporting spans");
                Some(pipeline)
            }
            Err(error) => {
                tracing::error!(target: TARGET, url = %self.url, %error, "cannot start the span exporter, no spans will be exported");
                None
            }
        }
    }
}

impl Plugin for OtelPlugin {
    fn name(&self) -> &str {
        "otel"
    }

    fn on_start(&self, container: &ContainerInfo<'_>) {
        let pipeline = self.pipeline.get_or_init(|| self.start(container));
        let early = std::mem::take(&mut *self.early.lock().expect("early spans lock"));
        if let Some(pipeline) = pipeline {
            for span in early {
                pipeline.processor.on_end(span);
            }
        }
    }

    fn on_handled(&self, handled: &Handled<'_>) {
        let span = self.span(handled);
        if let Some(pipeline) = self.pipeline.get() {
            if let Some(pipeline) = pipeline {
                pipeline.processor.on_end(span);
            }
            return;
        }
        let mut early = self.early.lock().expect("early spans lock");
        // `on_start` may have run meanwhile: it sets the pipeline, then takes this buffer.
        match self.pipeline.get() {
            Some(Some(pipeline)) => pipeline.processor.on_end(span),
            Some(None) => {}
            None if early.len() < EARLY_SPANS => early.push(span),
            None => {}
        }
    }

    fn on_stop(&self) {
        let Some(Some(pipeline)) = self.pipeline.get() else { return };
        let shutdown = || pipeline.processor.shutdown_with_timeout(self.config.timeout + Duration::from_secs(1));
        // The wait is short and bounded, but a worker of a multi-threaded runtime says so.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let result = if multi_thread { tokio::task::block_in_place(shutdown) } else { shutdown() };
        match result {
            Ok(()) => tracing::debug!(target: TARGET, stats = ?self.stats(), "span exporter stopped"),
            Err(error) => tracing::warn!(target: TARGET, %error, "the span exporter did not stop cleanly"),
        }
    }
}

/// A running exporter: the SDK's batch processor, and the runtime its HTTP client runs on.
struct Pipeline {
    processor: BatchSpanProcessor,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Pipeline {
    fn start(
        config: &OtelConfig,
        url: &str,
        resource: Resource,
        counters: Arc<Counters>,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lymph-otel-http")
            .enable_all()
            .build()?;
        let client = OnRuntime {
            client: HyperClient::with_default_connector(config.timeout, None),
            runtime: runtime.handle().clone(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(config.timeout)
            .build()?;
        let exporter = Reporting { exporter, url: url.to_owned(), counters };
        let batch = BatchConfigBuilder::default().with_scheduled_delay(config.export_interval).build();
        let mut processor = BatchSpanProcessor::new(exporter, batch);
        processor.set_resource(&resource);
        Ok(Self { processor, runtime: Some(runtime) })
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async context forbids; its thread ends by itself.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The OTLP exporter, counting what it exported and logging a collector that fails once.
#[derive(Debug)]
struct Reporting {
    exporter: opentelemetry_otlp::SpanExporter,
    url: String,
    counters: Arc<Counters>,
}

impl SpanExporter for Reporting {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.exporter.export(batch).await;
        let counters = &self.counters;
        match &result {
            Ok(()) => {
                counters.exported_spans.fetch_add(spans, Ordering::Relaxed);
                if counters.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(target: TARGET, url = %self.url, "exporting spans again");
                }
            }
            Err(error) => {
                counters.failed_exports.fetch_add(1, Ordering::Relaxed);
                if counters.failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(target: TARGET, url = %self.url, %error, spans, "cannot export spans");
                } else {
                    tracing::warn!(
                        target: TARGET, url = %self.url, %error, spans,
                        "cannot export spans, they are dropped (further failures are logged at debug until an export succeeds)"
                    );
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.exporter.set_resource(resource);
    }
}

/// hyper's client, run on the plugin's runtime: the SDK's batch thread polls exports with a
/// plain executor, where hyper finds no Tokio reactor.
#[derive(Debug)]
struct OnRuntime {
    client: HyperClient,
    runtime: tokio::runtime::Handle,
}

impl HttpClient for OnRuntime {
    fn send_bytes<'a, 'f>(
        &'a self,
        request: http::Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<http::Response<Bytes>, HttpError>> + Send + 'f>>
    where
        'a: 'f,
        Self: 'f,
    {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move { client.send_bytes(request).await });
        Box::pin(async move { sent.await.map_err(|error| Box::new(error) as HttpError)? })
    }
}

/// The OpenTelemetry trace id of a lymph trace id: the same 128 bits when it is 32 hex digits,
/// else its MD5.
fn trace_id(lymph: &str) -> TraceId {
    if lymph.len() == 32
        && lymph.bytes().all(|b| b.is_ascii_hexdigit())
        && let Ok(id) = TraceId::from_hex(lymph)
        && id != TraceId::INVALID
    {
        return id;
    }
    use md5::Digest as _;
    let digest: [u8; 16] = md5::Md5::digest(lymph.as_bytes()).into();
    match TraceId::from_bytes(digest) {
        TraceId::INVALID => TraceId::from_bytes([0xff; 16]),
        id => id,
    }
}

fn span_kind(kind: HandledKind) -> SpanKind {
    match kind {
        HandledKind::Event => SpanKind::Consumer,
        _ => SpanKind::Server,
    }
}

fn span_name(kind: HandledKind, name: &str, subject: &str) -> String {
    match kind {
        HandledKind::Rpc => subject.to_owned(),
        HandledKind::Event => format!("event {subject}"),
        _ => name.to_owned(),
    }
}

fn attributes(handled: &Handled<'_>) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("lymph.kind", handled.kind.to_string()),
        KeyValue::new("lymph.interface", handled.interface.to_owned()),
        KeyValue::new("lymph.trace_id", handled.trace_id.to_owned()),
    ];
    match handled.kind {
        HandledKind::Rpc => attributes.extend([
            KeyValue::new("rpc.system", "lymph"),
            KeyValue::new("rpc.service", handled.interface.to_owned()),
            KeyValue::new("rpc.method", handled.name.to_owned()),
        ]),
        HandledKind::Event => attributes.extend([
            KeyValue::new("messaging.system", "lymph"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.name", handled.subject.to_owned()),
            KeyValue::new("lymph.handler", handled.name.to_owned()),
        ]),
        _ => {
            if let Some((method, _)) = handled.name.split_once(' ') {
                attributes.push(KeyValue::new("http.request.method", method.to_owned()));
            }
            attributes.push(KeyValue::new("url.path", handled.subject.to_owned()));
            if let Some(status) = handled.status {
                attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
            }
        }
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lymph_trace_ids_are_otel_trace_ids() {
        let lymph = "0af7651916cd43dd8448eb211c80319c";
        assert_eq!(trace_id(lymph).to_string(), lymph);
        assert_eq!(trace_id(&lymph.to_uppercase()).to_string(), lymph);
    }

    #[test]
    fn other_trace_ids_are_hashed_into_128_bits() {
        let id = trace_id("my-trace");
        assert_ne!(id, TraceId::INVALID);
        assert_eq!(id, trace_id("my-trace"), "the same id groups");
        assert_ne!(id, trace_id("my-trace-2"));
        // 32 characters that are not all hex, and the all-zero id OpenTelemetry forbids.
        assert_ne!(trace_id("0af7651916cd43dd8448eb211c80319z"), TraceId::INVALID);
        assert_ne!(trace_id(&"0".repeat(32)), TraceId::INVALID);
        assert_ne!(trace_id(""), TraceId::INVALID);
    }

    #[test]
    fn names_and_kinds() {
        assert_eq!(span_name(HandledKind::Rpc, "upper", "echo.upper"), "echo.upper");
        assert_eq!(span_name(HandledKind::Event, "on_uppercase", "done"), "event done");
        assert_eq!(span_name(HandledKind::Http, "POST /echo/upper", "/echo/upper"), "POST /echo/upper");
        assert_eq!(span_kind(HandledKind::Rpc), SpanKind::Server);
        assert_eq!(span_kind(HandledKind::Http), SpanKind::Server);
        assert_eq!(span_kind(HandledKind::Event), SpanKind::Consumer);
    }

    #[test]
    fn endpoints_are_checked() {
        let url = |endpoint: &str| OtelConfig::new().with_endpoint(endpoint).traces_url();
        assert_eq!(url("http://127.0.0.1:4318/v1/traces").unwrap(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(url("http://collector:4318").unwrap(), "http://collector:4318/v1/traces");
        assert_eq!(url("http://collector:4318/").unwrap(), "http://collector:4318/v1/traces");
        assert_eq!(url("http://collector/otlp/traces").unwrap(), "http://collector/otlp/traces");
        for bad in ["", "collector:4318", "not a url", "ftp://collector/", "https://collector:4318/v1/traces"] {
            let error = url(bad).unwrap_err().to_string();
            assert!(error.contains("endpoint: "), "{bad:?}: {error}");
        }
    }
}
