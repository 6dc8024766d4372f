//! The OpenTelemetry plugin (feature `otel`) against a fake OTLP/HTTP collector on 127.0.0.1: the
//! talk's gateway, echo and listener each export their spans, all in the trace of the gateway's
//! `X-Trace-Id`; a collector that is down slows nothing down; `plugins:` in a `.lymph.yml`
//! installs the plugin.
//!
//! `cargo test -p scenarios --features otel --test otel`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lymph::Container;
use lymph::app::InstanceOptions;
use lymph::config::Config;
use lymph::plugin::Plugin;
use lymph::testing::{Cluster, Embedded, Result, TestError, eventually};
use lymph::transports::otel::{OtelConfig, OtelPlugin};
use lymph::web::axum::body::Bytes;
use lymph::web::axum::{self, Router, routing::post};
use lymph::web::http::{StatusCode, header};
use lymph::{Value, web::http::HeaderMap};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use prost::Message as _;
use scenarios::echo::{Echo, UPPERCASED};
use scenarios::listener::Listener;
use scenarios::web::Gateway;
use serde_json::json;

fn check(condition: bool, what: impl Into<String>) -> Result {
    if condition { Ok(()) } else { Err(Box::new(TestError::new(what))) }
}

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    kind: SpanKind,
    trace_id: String,
    error: Option<String>,
    attributes: BTreeMap<String, String>,
}

/// A fake OpenTelemetry collector: `POST /v1/traces` with OTLP protobuf bodies.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
    /// Bodies that were not OTLP protobuf.
    rejected: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    /// Serves on a free port of 127.0.0.1, on a thread and runtime of its own as a real
    /// collector is a process of its own: a container stopping on the test's runtime waits for
    /// its last export. Returns the traces URL.
    fn start(&self) -> Result<String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}/v1/traces", listener.local_addr()?);
        let collector = self.clone();
        let router = Router::new().route(
            "/v1/traces",
            post(move |headers: HeaderMap, body: Bytes| {
                let collector = collector.clone();
                async move { collector.receive(&headers, &body) }
            }),
        );
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                axum::serve(listener, router).await
            })
        });
        Ok(url)
    }

    fn receive(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let request = match ExportTraceServiceRequest::decode(body) {
            Ok(request) if content_type == "application/x-protobuf" => request,
            other => {
                self.rejected.lock().unwrap().push(format!("{content_type}: {other:?}"));
                return (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain")], Vec::new());
            }
        };
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.map(|r| strings(&r.attributes)).unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                let error = span
                    .status
                    .as_ref()
                    .filter(|status| status.code == SpanStatus::Error as i32)
                    .map(|status| status.message.clone());
                spans.push(Received {
                    service: service.clone(),
                    name: span.name.clone(),
                    kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                    trace_id: span.trace_id.iter().map(|b| format!("{b:02x}")).collect(),
                    error,
                    attributes: strings(&span.attributes),
                });
            }
        }
        // An empty ExportTraceServiceResponse: everything accepted.
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-protobuf")], Vec::new())
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    fn find(&self, pred: impl Fn(&Received) -> bool) -> Option<Received> {
        self.spans().into_iter().find(pred)
    }
}

/// OTLP attributes as text.
fn strings(attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// A plugin exporting to `url` every 100 ms.
fn plugin(url: &str, service_name: Option<&str>) -> Result<Arc<OtelPlugin>> {
    let mut config = OtelConfig::new().with_endpoint(url).with_export_interval(Duration::from_millis(100));
    if let Some(name) = service_name {
        config = config.with_service_name(name);
    }
    Ok(Arc::new(OtelPlugin::new(config)?))
}

fn installed(plugin: &Arc<OtelPlugin>) -> Arc<dyn Plugin> {
    plugin.clone()
}

#[tokio::test]
async fn one_request_is_one_trace_across_the_gateway_echo_and_the_listener() -> Result {
    let collector = Collector::default();
    let url = collector.start()?;
    let cluster = Embedded::new();
    let echo_plugin = plugin(&url, None)?;
    let listener_plugin = plugin(&url, None)?;
    let web_plugin = plugin(&url, Some("gateway"))?;
    let (e, l, w) = (installed(&echo_plugin), installed(&listener_plugin), installed(&web_plugin));
    cluster
        .start("echo", Box::new(move || Container::builder().interface(Echo::default()).plugin_arc(e.clone())))
        .await?;
    cluster
        .start("listener", Box::new(move || Container::builder().interface(Listener::default()).plugin_arc(l.clone())))
        .await?;
    cluster.start("web", Box::new(move || Container::builder().web(Gateway).plugin_arc(w.clone()))).await?;

    let http = cluster.http("web").await?;
    let response = http.post_json("/echo/upper", &json!({"text": "hi"})).await?;
    check(response.status() == StatusCode::OK, format!("status {}", response.status()))?;
    let trace = response.trace_id().unwrap_or_default().to_owned();
    check(trace.len() == 32, format!("X-Trace-Id {trace:?}"))?;

    // A bad argument is a NACK: an error span, in a trace id that is not hex (hashed).
    let client = cluster.client().await?;
    let nack =
        client.proxy("echo").with_trace_id("nack-trace").call::<String, _>("upper", &Value::map([("txt", "hi")])).await;
    check(nack.is_err(), "a bad argument was accepted")?;

    let event_name = format!("event {UPPERCASED}");
    eventually(
        "the collector got the spans of the gateway, echo, the listener and the NACK",
        Duration::from_secs(10),
        || {
            let spans = collector.spans();
            let in_trace = |name: &str| spans.iter().any(|s| s.trace_id == trace && s.name == name);
            in_trace("POST /echo/upper")
                && in_trace("echo.upper")
                && in_trace(&event_name)
                && spans.iter().any(|s| s.attributes.get("lymph.trace_id").map(String::as_str) == Some("nack-trace"))
        },
    )
    .await
    .map_err(|e| format!("{e}; the collector got {:#?}", collector.spans()))?;

    let web = collector.find(|s| s.trace_id == trace && s.name == "POST /echo/upper").unwrap();
    check(web.service == "gateway", format!("web span {web:?}"))?;
    check(web.kind == SpanKind::Server && web.error.is_none(), format!("web span {web:?}"))?;
    check(web.attributes.get("http.response.status_code").map(String::as_str) == Some("200"), format!("{web:?}"))?;
    check(web.attributes.get("http.request.method").map(String::as_str) == Some("POST"), format!("{web:?}"))?;
    check(web.attributes.get("lymph.kind").map(String::as_str) == Some("http"), format!("{web:?}"))?;

    let echo = collector.find(|s| s.trace_id == trace && s.name == "echo.upper").unwrap();
    check(echo.service == "echo" && echo.kind == SpanKind::Server && echo.error.is_none(), format!("{echo:?}"))?;
    check(echo.attributes.get("rpc.method").map(String::as_str) == Some("upper"), format!("{echo:?}"))?;
    check(echo.attributes.get("lymph.interface").map(String::as_str) == Some("echo"), format!("{echo:?}"))?;
    check(echo.attributes.get("lymph.trace_id") == Some(&trace), format!("{echo:?}"))?;

    let event = collector.find(|s| s.trace_id == trace && s.name == event_name).unwrap();
    check(event.service == "listener" && event.kind == SpanKind::Consumer, format!("{event:?}"))?;
    check(event.attributes.get("lymph.kind").map(String::as_str) == Some("event"), format!("{event:?}"))?;
    check(
        event.attributes.get("messaging.destination.name").map(String::as_str) == Some(UPPERCASED),
        format!("{event:?}"),
    )?;

    let failed =
        collector.find(|s| s.attributes.get("lymph.trace_id").map(String::as_str) == Some("nack-trace")).unwrap();
    check(failed.name == "echo.upper" && failed.service == "echo", format!("{failed:?}"))?;
    check(
        failed.error.as_ref().is_some_and(|m| !m.is_empty()),
        format!("the NACK's span has no error status: {failed:?}"),
    )?;
    check(failed.trace_id.len() == 32 && failed.trace_id != "0".repeat(32), format!("{failed:?}"))?;
    check(failed.trace_id != trace, "the NACK joined the gateway's trace")?;

    // Nothing else: no heartbeats, no health checks, nothing malformed.
    check(!collector.spans().iter().any(|s| s.name.contains("ping")), "a heartbeat was exported")?;
    check(collector.rejected.lock().unwrap().is_empty(), format!("rejected bodies {:?}", collector.rejected))?;

    // Stopping flushes: a request just before the stop is exported by it.
    let last = http.post_json("/echo/upper", &json!({"text": "last"})).await?;
    let last_trace = last.trace_id().unwrap_or_default().to_owned();
    let started = Instant::now();
    cluster.stop("web").await?;
    check(started.elapsed() < Duration::from_secs(3), format!("stopping took {:?}", started.elapsed()))?;
    check(
        collector.find(|s| s.trace_id == last_trace && s.name == "POST /echo/upper").is_some(),
        "the span of the last request was not flushed by the stop",
    )?;
    cluster.stop("echo").await?;
    cluster.stop("listener").await?;
    let exported = echo_plugin.stats().exported_spans + listener_plugin.stats().exported_spans;
    check(exported >= 3, format!("stats {:?} {:?}", echo_plugin.stats(), listener_plugin.stats()))?;
    check(web_plugin.stats().failed_exports == 0, format!("web stats {:?}", web_plugin.stats()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_slows_nothing_and_stopping_is_bounded() -> Result {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let config = OtelConfig::new()
        .with_endpoint(format!("http://{closed}/v1/traces"))
        .with_export_interval(Duration::from_millis(50))
        .with_timeout(Duration::from_millis(500));
    let echo_plugin = Arc::new(OtelPlugin::new(config)?);
    let e = installed(&echo_plugin);
    let cluster = Embedded::new();
    cluster
        .start("echo", Box::new(move || Container::builder().interface(Echo::default()).plugin_arc(e.clone())))
        .await?;
    let client = cluster.client().await?;
    let started = Instant::now();
    for i in 0..50 {
        let text: String = client.proxy("echo").call("echo", &Value::map([("text", format!("t{i}"))])).await?;
        check(text == format!("t{i}"), format!("echo answered {text:?}"))?;
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }
    check(started.elapsed() < Duration::from_secs(5), format!("50 requests took {:?}", started.elapsed()))?;
    eventually("an export failed", Duration::from_secs(10), || echo_plugin.stats().failed_exports > 0).await?;
    check(echo_plugin.stats().exported_spans == 0, format!("stats {:?}", echo_plugin.stats()))?;
    let stopping = Instant::now();
    cluster.stop("echo").await?;
    check(stopping.elapsed() < Duration::from_secs(3), format!("stopping took {:?}", stopping.elapsed()))
}

#[tokio::test]
async fn a_plugins_section_installs_the_plugin() -> Result {
    let collector = Collector::default();
    let url = collector.start()?;
    let yaml = format!(
        "container:
  registry: {{class: 'lymph.discovery.static:StaticServiceRegistryHub'}}
  events: {{class: 'lymph.events.local:LocalEventSystem'}}
interfaces:
  echo: {{class: 'echo:Echo'}}
plugins:
  tracing:
    class: lymph.plugins.otel:OpenTelemetryPlugin
    endpoint: {url}
    service_name: echo-from-yaml
"
    );
    let config = Config::from_yaml_str(&yaml, None)?;
    let cluster = Embedded::new();
    let app = scenarios::application().with_network(cluster.network());
    check(app.plugin_classes().any(|c| c == "lymph.plugins.otel:OpenTelemetryPlugin"), "no otel class")?;
    let container = app.container(&config, &InstanceOptions::default()).await?.start().await?;
    let client = cluster.client().await?;
    let text: String =
        client.proxy("echo").with_trace_id(&"ab".repeat(16)).call("echo", &Value::map([("text", "x")])).await?;
    check(text == "x", format!("echo answered {text:?}"))?;
    // The default export interval is 5 s: the stop flushes.
    container.stop().await;
    let span = collector.find(|s| s.name == "echo.echo");
    check(
        span.as_ref().is_some_and(|s| s.service == "echo-from-yaml" && s.trace_id == "ab".repeat(16)),
        format!("the collector got {:#?}", collector.spans()),
    )
}
