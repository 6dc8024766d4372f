//! Plugins see every request, event and HTTP request a container handles, and every failure; a
//! plugin that panics does not take the container down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lymph::plugin::{ContainerInfo, Handled, Plugin};
use lymph::testing::{Cluster, Embedded, Result, TestError, World, eventually};
use lymph::web::http::StatusCode;
use lymph::{Container, Value};
use scenarios::echo::Echo;
use scenarios::listener::Listener;
use scenarios::web::Gateway;
use serde_json::json;

fn check(condition: bool, what: impl Into<String>) -> Result {
    if condition { Ok(()) } else { Err(Box::new(TestError::new(what))) }
}

/// What a plugin saw: `hook kind interface name error`.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    fn push(&self, line: String) {
        self.0.lock().expect("recorder lock").push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("recorder lock").clone()
    }

    fn has(&self, line: &str) -> bool {
        self.lines().iter().any(|l| l == line)
    }
}

impl Plugin for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    fn on_start(&self, container: &ContainerInfo<'_>) {
        self.push(format!("start {}", container.interfaces.join(",")));
    }

    fn on_handled(&self, handled: &Handled<'_>) {
        let status = handled.status.map(|s| format!(" {s}")).unwrap_or_default();
        self.push(format!("handled {} {} {}{status}", handled.kind, handled.interface, handled.name));
    }

    fn on_error(&self, failure: &Handled<'_>) {
        self.push(format!("error {} {} {}", failure.kind, failure.interface, failure.name));
    }

    fn on_http_request(&self, interface: &str, trace_id: &str, request: &lymph::web::http::request::Parts) {
        self.push(format!("http {interface} {} {} {}", request.method, request.uri.path(), trace_id.len()));
    }
}

/// A plugin whose every hook panics.
struct Broken;

impl Plugin for Broken {
    fn name(&self) -> &str {
        "broken"
    }

    fn on_handled(&self, _: &Handled<'_>) {
        panic!("the plugin is broken");
    }
}

async fn plugins_see_requests_events_http_and_failures(cluster: &impl Cluster) -> Result {
    let echo_plugin = Recorder::default();
    let listener_plugin = Recorder::default();
    let web_plugin = Recorder::default();
    let (e, l, w) = (echo_plugin.clone(), listener_plugin.clone(), web_plugin.clone());
    cluster
        .start(
            "echo",
            Box::new(move || Container::builder().interface(Echo::default()).plugin(Broken).plugin(e.clone())),
        )
        .await?;
    cluster
        .start("listener", Box::new(move || Container::builder().interface(Listener::default()).plugin(l.clone())))
        .await?;
    cluster.start("web", Box::new(move || Container::builder().web(Gateway).plugin(w.clone()))).await?;
    check(echo_plugin.has("start echo,lymph"), format!("echo's plugin saw {:?}", echo_plugin.lines()))?;

    let http = cluster.http("web").await?;
    let ok = http.post_json("/echo/upper", &json!({"text": "hi"})).await?;
    check(ok.status() == StatusCode::OK, format!("status {}", ok.status()))?;
    check(web_plugin.has("http web POST /echo/upper 32"), format!("web's plugin saw {:?}", web_plugin.lines()))?;
    check(
        web_plugin.has("handled http web POST /echo/upper 200"),
        format!("web's plugin saw {:?}", web_plugin.lines()),
    )?;
    check(echo_plugin.has("handled rpc echo upper"), format!("echo's plugin saw {:?}", echo_plugin.lines()))?;
    eventually("the listener's plugin saw the event", Duration::from_secs(5), || {
        listener_plugin.has("handled event listener on_uppercase")
    })
    .await?;

    // A bad argument is a NACK, which is an error for the plugins; a declared error is not.
    let client = cluster.client().await?;
    let nack = client.proxy("echo").call::<String, _>("upper", &Value::map([("txt", "hi")])).await;
    check(nack.is_err(), "a bad argument was accepted")?;
    check(echo_plugin.has("error rpc echo upper"), format!("echo's plugin saw {:?}", echo_plugin.lines()))?;
    let declared = client.proxy("echo").call::<Value, _>("fail", &Value::map([("message", "no")])).await;
    check(declared.is_err(), "fail did not fail")?;
    check(echo_plugin.has("handled rpc echo fail"), format!("echo's plugin saw {:?}", echo_plugin.lines()))?;
    check(!echo_plugin.has("error rpc echo fail"), "a declared error was reported as a failure")?;
    // Heartbeats are not reported.
    check(!echo_plugin.lines().iter().any(|l| l.contains("ping")), "a heartbeat was reported")?;
    // A 404 is handled, not an error; the broken plugin changed nothing.
    let missing = http.get("/nowhere").await?;
    check(missing.status() == StatusCode::NOT_FOUND, format!("status {}", missing.status()))?;
    check(
        !web_plugin.lines().iter().any(|l| l.starts_with("error")),
        format!("web's plugin saw {:?}", web_plugin.lines()),
    )
}

#[tokio::test]
async fn plugins_see_requests_events_http_and_failures_embedded() -> Result {
    plugins_see_requests_events_http_and_failures(&Embedded::new()).await
}

#[lymph::test(seeds = 2)]
async fn plugins_see_requests_events_http_and_failures_simulated(world: World) -> Result {
    plugins_see_requests_events_http_and_failures(&world).await
}
