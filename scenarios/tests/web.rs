//! The talk's web gateway and what every web interface gets (trace ids, health check, metrics,
//! clear 4xx, panics as 500), each scenario run on the embedded backends (real loopback TCP), in
//! the simulator and, with the `real-infra` feature, on ZeroMQ, RabbitMQ and ZooKeeper.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lymph::testing::{Cluster, Result, TestError, eventually};
use lymph::web::http::{Method, StatusCode};
use lymph::web::routing::get;
use lymph::web::{Router, WebInterface, WebResponse};
use lymph::{Container, Value};
use scenarios::echo::{Echo, UPPERCASED};
use scenarios::listener::Listener;
use scenarios::web::{Gateway, Text};
use serde_json::json;

fn check(condition: bool, what: impl Into<String>) -> Result {
    if condition { Ok(()) } else { Err(Box::new(TestError::new(what))) }
}

fn status(response: &WebResponse, expected: StatusCode) -> Result {
    check(
        response.status() == expected,
        format!("expected {expected}, got {} with body {:?}", response.status(), response.text()),
    )
}

/// A trace id as lymph makes them: 32 hex digits.
fn is_trace_id(id: Option<&str>) -> bool {
    id.is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Starts `echo`, `listener` and the gateway `web` (with `config`); returns the listener.
async fn start_talk(cluster: &impl Cluster, config: Value) -> Result<Listener> {
    cluster.start("echo", Box::new(|| Container::builder().interface(Echo::default()))).await?;
    let listener = Listener::default();
    let recorder = listener.clone();
    cluster.start("listener", Box::new(move || Container::builder().interface(recorder.clone()))).await?;
    cluster
        .start("web", Box::new(move || Container::builder().web_arc("web", Arc::new(Gateway), config.clone())))
        .await?;
    Ok(listener)
}

async fn the_gateway_upper_cases_through_echo_in_one_trace(cluster: &impl Cluster) -> Result {
    let listener = start_talk(cluster, Value::Nil).await?;
    let http = cluster.http("web").await?;
    let response = http.post_json("/echo/upper", &json!({"text": "hi"})).await?;
    status(&response, StatusCode::OK)?;
    check(response.json::<Text>()? == Text { text: "HI".to_owned() }, format!("body {:?}", response.text()))?;
    let trace_id = response.trace_id().map(str::to_owned);
    check(is_trace_id(trace_id.as_deref()), format!("X-Trace-Id {trace_id:?}"))?;
    eventually("the listener got the event", Duration::from_secs(5), || !listener.received().is_empty()).await?;
    let event = &listener.received()[0];
    check(event.event_type == UPPERCASED, format!("event type {}", event.event_type))?;
    check(event.trace_id() == trace_id.as_deref(), format!("event trace {:?} != {trace_id:?}", event.trace_id()))?;
    // Every request gets a trace of its own.
    let again = http.post_json("/echo/upper", &json!({"text": "ho"})).await?;
    check(again.trace_id() != trace_id.as_deref(), "two requests share a trace id")
}

async fn health_check_and_unknown_routes_carry_the_trace_id(cluster: &impl Cluster) -> Result {
    start_talk(cluster, Value::Nil).await?;
    let http = cluster.http("web").await?;
    let health = http.get("/_health/").await?;
    status(&health, StatusCode::OK)?;
    check(is_trace_id(health.trace_id()), format!("health X-Trace-Id {:?}", health.trace_id()))?;
    let missing = http.get("/no/such/route").await?;
    status(&missing, StatusCode::NOT_FOUND)?;
    check(is_trace_id(missing.trace_id()), format!("404 X-Trace-Id {:?}", missing.trace_id()))?;
    let wrong_method = http.get("/echo/upper").await?;
    status(&wrong_method, StatusCode::METHOD_NOT_ALLOWED)?;
    // An incoming X-Trace-Id is not trusted unless configured.
    let forged = http.clone().header("X-Trace-Id", "forged").get("/_health/").await?;
    check(forged.trace_id() != Some("forged"), "an untrusted incoming trace id was used")
}

async fn bad_requests_get_a_clear_4xx_and_the_gateway_goes_on(cluster: &impl Cluster) -> Result {
    let config = Value::from_json(json!({"max_body_size": 64}));
    start_talk(cluster, config).await?;
    let http = cluster.http("web").await?;
    let send = |content_type: Option<&'static str>, body: &'static str| {
        let http = http.clone();
        async move { http.send(Method::POST, "/echo/upper", content_type, Bytes::from(body)).await }
    };
    let malformed = send(Some("application/json"), "{\"text\": ").await?;
    status(&malformed, StatusCode::BAD_REQUEST)?;
    check(malformed.text().contains("JSON"), format!("the 400 does not say why: {:?}", malformed.text()))?;
    status(&send(None, "{\"text\": \"hi\"}").await?, StatusCode::UNSUPPORTED_MEDIA_TYPE)?;
    let wrong_shape = send(Some("application/json"), "{\"txt\": \"hi\"}").await?;
    status(&wrong_shape, StatusCode::UNPROCESSABLE_ENTITY)?;
    check(wrong_shape.text().contains("text"), format!("the 422 does not name the field: {:?}", wrong_shape.text()))?;
    let big = format!("{{\"text\": \"{}\"}}", "x".repeat(100));
    let too_big = http.send(Method::POST, "/echo/upper", Some("application/json"), Bytes::from(big)).await?;
    status(&too_big, StatusCode::PAYLOAD_TOO_LARGE)?;
    let fine = http.post_json("/echo/upper", &json!({"text": "ok"})).await?;
    status(&fine, StatusCode::OK)
}

async fn a_missing_backend_is_a_503_with_a_json_error(cluster: &impl Cluster) -> Result {
    cluster.start("web", Box::new(|| Container::builder().web(Gateway))).await?;
    let http = cluster.http("web").await?;
    let response = http.post_json("/echo/upper", &json!({"text": "hi"})).await?;
    status(&response, StatusCode::SERVICE_UNAVAILABLE)?;
    let body: serde_json::Value = response.json()?;
    check(body["error"] == "service unavailable", format!("body {body}"))?;
    check(is_trace_id(response.trace_id()), "no X-Trace-Id on an error")
}

async fn metrics_count_the_traffic(cluster: &impl Cluster) -> Result {
    start_talk(cluster, Value::Nil).await?;
    let http = cluster.http("web").await?;
    for text in ["a", "b", "c"] {
        status(&http.post_json("/echo/upper", &json!({ "text": text })).await?, StatusCode::OK)?;
    }
    status(&http.get("/nowhere").await?, StatusCode::NOT_FOUND)?;
    let metrics = http.get("/_metrics").await?;
    status(&metrics, StatusCode::OK)?;
    let text = metrics.text();
    let line = |prefix: &str| text.lines().find(|l| l.starts_with(prefix)).map(str::to_owned);
    let posts = line("lymph_http_requests{interface=\"web\",method=\"POST\",status=\"200\"");
    check(posts.as_deref().is_some_and(|l| l.ends_with(" 3")), format!("POST 200 line {posts:?} in\n{text}"))?;
    let missing = line("lymph_http_requests{interface=\"web\",method=\"GET\",status=\"404\"");
    check(missing.as_deref().is_some_and(|l| l.ends_with(" 1")), format!("GET 404 line {missing:?} in\n{text}"))?;
    check(text.contains("# TYPE lymph_http_requests counter"), format!("no TYPE line in\n{text}"))?;
    // The latency histogram counts the same four requests, and each fell in the +Inf bucket.
    let latency = line("lymph_http_latency_ms_count{interface=\"web\"");
    check(latency.as_deref().is_some_and(|l| l.ends_with(" 4")), format!("latency count {latency:?} in\n{text}"))?;
    let inf = line("lymph_http_latency_ms_bucket{interface=\"web\",le=\"+Inf\"");
    check(inf.as_deref().is_some_and(|l| l.ends_with(" 4")), format!("+Inf bucket {inf:?} in\n{text}"))?;
    // The same figures through lymph.get_metrics of the gateway's container.
    let client = cluster.client().await?;
    let web = client.lookup("web").await?;
    let endpoint = &web.first().ok_or_else(|| TestError::new("web is not registered"))?.endpoint;
    let series: Value = client.proxy(endpoint).namespace("lymph").call("get_metrics", &Value::Map(Vec::new())).await?;
    let http_posts = series.as_array().unwrap_or_default().iter().find(|entry| {
        let entry = entry.as_array().unwrap_or_default();
        entry.first().and_then(Value::as_str) == Some("http.requests")
            && entry.get(2).and_then(|tags| tags.get("method")).and_then(Value::as_str) == Some("POST")
    });
    let count = http_posts.and_then(|e| e.as_array()?.get(1)?.as_i64());
    check(count == Some(3), format!("http.requests POST in lymph.get_metrics: {count:?}"))
}

async fn trace_headers_follow_the_configuration(cluster: &impl Cluster) -> Result {
    let config = Value::from_json(json!({
        "tracing": {"request_header": "X-Request-Id", "response_header": "X-Trace"},
        "healthcheck": {"endpoint": "/healthz"},
    }));
    start_talk(cluster, config).await?;
    let http = cluster.http("web").await?;
    let seeded = http.clone().header("X-Request-Id", "0123456789abcdef").get("/healthz").await?;
    status(&seeded, StatusCode::OK)?;
    check(seeded.header("X-Trace") == Some("0123456789abcdef"), format!("X-Trace {:?}", seeded.header("X-Trace")))?;
    check(seeded.trace_id().is_none(), "X-Trace-Id is sent though another header is configured")?;
    status(&http.get("/_health/").await?, StatusCode::NOT_FOUND)
}

/// A web interface that is unhealthy and whose one route panics.
struct Sick;

impl WebInterface for Sick {
    fn name(&self) -> &'static str {
        "sick"
    }

    fn router(self: Arc<Self>) -> Router {
        Router::new().route("/panic", get(give_up))
    }

    fn is_healthy(&self) -> bool {
        false
    }
}

async fn give_up() -> &'static str {
    panic!("the handler gave up")
}

async fn an_unhealthy_or_panicking_interface_answers_503_and_500(cluster: &impl Cluster) -> Result {
    cluster.start("sick", Box::new(|| Container::builder().web(Sick))).await?;
    let http = cluster.http("sick").await?;
    status(&http.get("/_health/").await?, StatusCode::SERVICE_UNAVAILABLE)?;
    let panicked = http.get("/panic").await?;
    status(&panicked, StatusCode::INTERNAL_SERVER_ERROR)?;
    check(is_trace_id(panicked.trace_id()), "no X-Trace-Id on a 500")?;
    // The server goes on.
    status(&http.get("/panic").await?, StatusCode::INTERNAL_SERVER_ERROR)
}

lymph::testing::every_world!(
    seeds = 2, embedded_clock = real;
    the_gateway_upper_cases_through_echo_in_one_trace,
    health_check_and_unknown_routes_carry_the_trace_id,
    bad_requests_get_a_clear_4xx_and_the_gateway_goes_on,
    a_missing_backend_is_a_503_with_a_json_error,
    metrics_count_the_traffic,
    trace_headers_follow_the_configuration,
    an_unhealthy_or_panicking_interface_answers_503_and_500,
);
