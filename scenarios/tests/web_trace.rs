//! One trace id followed from an HTTP request through RPC, an event and another RPC, in the log
//! records of every service involved, on the embedded backends and in the simulator.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lymph::testing::{Cluster, Embedded, Result, TestError, World, eventually};
use lymph::web::http::StatusCode;
use lymph::{Container, Context, Event};
use scenarios::echo::{Echo, EchoClient};
use scenarios::listener::Listener;
use scenarios::web::Gateway;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

fn check(condition: bool, what: impl Into<String>) -> Result {
    if condition { Ok(()) } else { Err(Box::new(TestError::new(what))) }
}

/// Handles echo's event and calls `echo.echo` in the event's trace: the last hop.
#[derive(Debug, Clone, Default)]
struct Relay;

#[lymph::interface(name = "relay")]
impl Relay {
    #[event("uppercase_transform_finished")]
    async fn on_uppercase(&self, ctx: &Context, event: Event) -> lymph::Result<()> {
        let text = event.get("text").and_then(lymph::Value::as_str).unwrap_or_default().to_owned();
        let echoed = ctx.client::<EchoClient>().echo(text).await?;
        tracing::info!(%echoed, "relayed");
        Ok(())
    }
}

/// One log record: its message and the fields of the spans it was logged in.
#[derive(Debug, Clone)]
struct Record {
    message: String,
    spans: Vec<(String, BTreeMap<String, String>)>,
}

impl Record {
    fn span(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.spans.iter().find(|(n, _)| n == name).map(|(_, fields)| fields)
    }

    fn trace_id(&self) -> Option<&str> {
        self.spans.iter().rev().find_map(|(_, fields)| fields.get("trace_id")).map(String::as_str)
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Keeps every log record with the fields of its spans.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Record>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: LayerContext<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                let own = span.extensions().get::<Fields>().map(|f| f.0.clone()).unwrap_or_default();
                spans.push((span.name().to_owned(), own));
            }
        }
        let message = fields.0.remove("message").unwrap_or_default();
        self.0.lock().expect("capture lock").push(Record { message, spans });
    }
}

async fn one_trace_id_from_http_to_the_last_rpc(cluster: &impl Cluster, capture: &Capture) -> Result {
    cluster.start("echo", Box::new(|| Container::builder().interface(Echo::default()))).await?;
    let listener = Listener::default();
    let recorder = listener.clone();
    cluster.start("listener", Box::new(move || Container::builder().interface(recorder.clone()))).await?;
    cluster.start("relay", Box::new(|| Container::builder().interface(Relay))).await?;
    cluster.start("web", Box::new(|| Container::builder().web(Gateway))).await?;
    let http = cluster.http("web").await?;
    let response = http.post_json("/echo/upper", &json!({"text": "trace me"})).await?;
    check(response.status() == StatusCode::OK, format!("status {}", response.status()))?;
    let trace_id = response.trace_id().ok_or_else(|| TestError::new("no X-Trace-Id"))?.to_owned();
    let records = capture.0.clone();
    let relayed = {
        let trace_id = trace_id.clone();
        move || {
            let records = records.lock().expect("capture lock");
            records.iter().any(|r| r.message == "relayed" && r.trace_id() == Some(trace_id.as_str()))
        }
    };
    eventually("the relay called echo.echo", Duration::from_secs(5), relayed).await?;
    let records: Vec<Record> = capture.0.lock().expect("capture lock").clone();
    let traced: Vec<&Record> = records.iter().filter(|r| r.trace_id() == Some(trace_id.as_str())).collect();
    // Which service logged a record: the span it was logged in says.
    let logged = |what: &str, found: &dyn Fn(&Record) -> bool| -> Result {
        check(
            traced.iter().any(|r| found(r)),
            format!("no log record of {what} in trace {trace_id}; the trace has {traced:#?}"),
        )
    };
    let in_span = |name: &'static str, key: &'static str, value: &'static str| {
        move |r: &Record| r.span(name).and_then(|f| f.get(key)).is_some_and(|v| v == value)
    };
    logged("the gateway's handler", &|r| r.message == "gateway: upper" && in_span("http", "interface", "web")(r))?;
    logged("the gateway's access line", &|r| r.message == "POST /echo/upper" && r.span("http").is_some())?;
    logged("echo.upper", &|r| r.message == "upper-casing" && in_span("rpc", "subject", "echo.upper")(r))?;
    logged("the listener", &|r| r.message == "event received" && in_span("event", "handler", "on_uppercase")(r))?;
    logged("the relay", &|r| r.message == "relayed" && r.span("event").is_some())?;
    logged("echo.echo, the last RPC", &|r| in_span("rpc", "subject", "echo.echo")(r))?;
    check(listener.received().iter().all(|e| e.trace_id() == Some(trace_id.as_str())), "the event's trace id differs")
}

fn subscriber(capture: &Capture) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry().with(capture.clone())
}

#[tokio::test]
async fn one_trace_id_from_http_to_the_last_rpc_embedded() -> Result {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(subscriber(&capture));
    one_trace_id_from_http_to_the_last_rpc(&Embedded::new(), &capture).await
}

#[lymph::test(seeds = 2)]
async fn one_trace_id_from_http_to_the_last_rpc_simulated(world: World) -> Result {
    // Every host of the simulation runs on this thread, so one default subscriber sees them all.
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(subscriber(&capture));
    one_trace_id_from_http_to_the_last_rpc(&world, &capture).await?;
    // The simulator's timeline has the trace's RPCs and event too.
    let trace = response_trace(&capture);
    let entries = world.timeline().entries();
    let kinds: Vec<&str> =
        entries.iter().filter(|e| e.trace_id.as_deref() == trace.as_deref()).map(|e| e.kind.as_str()).collect();
    check(kinds.len() >= 3, format!("the timeline has only {kinds:?} in trace {trace:?}"))
}

/// The trace id the gateway logged its access line in.
fn response_trace(capture: &Capture) -> Option<String> {
    let records = capture.0.lock().expect("capture lock");
    records.iter().find(|r| r.message == "POST /echo/upper").and_then(|r| r.trace_id().map(str::to_owned))
}
