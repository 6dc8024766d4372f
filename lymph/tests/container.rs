//! The container on the embedded backends: dispatch, replies, errors, versions, heartbeats,
//! trace ids, malformed input and graceful stop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lymph::memory::MemoryNetwork;
use lymph::{Container, Context, Error, MessageKind, NotConnectedReason, PeerStatus, RpcTransport, Value};

#[derive(Debug, Clone, Default)]
struct Probe {
    seen_traces: Arc<Mutex<Vec<String>>>,
}

#[lymph::interface(name = "probe")]
impl Probe {
    /// Adds two numbers.
    #[rpc]
    async fn add(&self, a: i64, b: i64) -> lymph::Result<i64> {
        Ok(a + b)
    }

    /// Returns the trace id it runs in, and remembers it.
    #[rpc]
    async fn trace(&self, ctx: &Context) -> lymph::Result<String> {
        self.seen_traces.lock().unwrap().push(ctx.trace_id().to_owned());
        Ok(ctx.trace_id().to_owned())
    }

    /// Calls `probe.trace` on another instance, in the same trace.
    #[rpc]
    async fn relay(&self, ctx: &Context) -> lymph::Result<String> {
        ctx.proxy("probe").call("trace", &Value::Map(Vec::new())).await
    }

    /// Panics.
    #[rpc]
    async fn explode(&self) -> lymph::Result<()> {
        panic!("boom")
    }

    /// Fails with an error it does not declare.
    #[rpc]
    async fn undeclared(&self) -> lymph::Result<()> {
        Err(Error::raise("KeyError", "nope"))
    }

    /// Sleeps.
    #[rpc]
    async fn sleep(&self, millis: u64) -> lymph::Result<u64> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(millis)
    }
}

async fn start(network: &MemoryNetwork, probe: Probe) -> Container {
    Container::builder().network(network).interface(probe).seed(1).start().await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn requests_are_answered_with_the_right_kind() {
    let network = MemoryNetwork::new();
    let _service = start(&network, Probe::default()).await;
    let client = Container::builder().network(&network).start().await.unwrap();
    let probe: ProbeClient = client.client();
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
    assert!(matches!(probe.explode().await, Err(Error::Nack { .. })));
    assert!(matches!(probe.undeclared().await, Err(Error::Nack { .. })));
    // The container keeps serving after a panic and an undeclared error.
    assert_eq!(probe.add(1, 1).await.unwrap(), 2);
    let raw = client.proxy("probe").request("add", Bytes::from(Value::map([("a", 1)]).to_msgpack())).await.unwrap();
    assert_eq!(raw.kind, MessageKind::Nack, "a missing argument is a NACK");
    let raw = client.proxy("nosuch@1.0").request("x", Bytes::new()).await;
    assert!(raw.is_err());
}

#[tokio::test(start_paused = true)]
async fn the_builtin_interface_answers_ping_status_and_inspect() {
    let network = MemoryNetwork::new();
    let service = start(&network, Probe::default()).await;
    let client = Container::builder().network(&network).start().await.unwrap();
    let lymph = client.proxy(service.endpoint()).namespace("lymph");
    let pong: Value = lymph.call("ping", &Value::map([("payload", 42)])).await.unwrap();
    assert_eq!(pong, Value::from(42));
    let status: Value = lymph.call("status", &Value::Map(Vec::new())).await.unwrap();
    assert_eq!(status.get("endpoint").and_then(Value::as_str), Some(service.endpoint()));
    assert_eq!(status.get("identity").and_then(Value::as_str), Some(service.identity()));
    assert_eq!(service.endpoint(), "mock://127.0.0.1:1");
    assert_eq!(service.identity(), "52d967815c003dd3cd5c492971508657", "lymph's identity of mock://127.0.0.1:1");
    let inspect: Value = lymph.call("inspect", &Value::Map(Vec::new())).await.unwrap();
    let methods = inspect.get("methods").and_then(Value::as_array).unwrap();
    let add = methods.iter().find(|m| m.get("name").and_then(Value::as_str) == Some("probe.add")).unwrap();
    assert_eq!(add.get("help").and_then(Value::as_str), Some("Adds two numbers."));
    assert_eq!(add.get("params"), Some(&Value::Array(vec![Value::from("a"), Value::from("b")])));
    assert_eq!(add.get("version").and_then(Value::as_str), Some("None"));
}

#[tokio::test(start_paused = true)]
async fn a_trace_id_follows_a_request_across_services() {
    let network = MemoryNetwork::new();
    let probe = Probe::default();
    let _a = start(&network, probe.clone()).await;
    let client = Container::builder().network(&network).start().await.unwrap();
    let ctx = client.context_with_trace("0123456789abcdef0123456789abcdef");
    let seen = ctx.client::<ProbeClient>().relay().await.unwrap();
    assert_eq!(seen, "0123456789abcdef0123456789abcdef");
    // A request without a trace id gets a fresh one.
    let fresh = client.client::<ProbeClient>().trace().await.unwrap();
    assert_eq!(fresh.len(), 32);
    assert_ne!(fresh, seen);
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_deferred_calls() {
    let network = MemoryNetwork::new();
    let _service = start(&network, Probe::default()).await;
    let client = Container::builder().network(&network).start().await.unwrap();
    let slow = client.proxy("probe").timeout(Duration::from_millis(100));
    let timed_out = slow.call::<u64, _>("sleep", &Value::map([("millis", 500)])).await;
    assert!(matches!(timed_out, Err(Error::Timeout { .. })), "{timed_out:?}");
    let proxy = client.proxy("probe");
    let a = proxy.defer::<u64, _>("sleep", &Value::map([("millis", 2000)]));
    let b = proxy.defer::<u64, _>("sleep", &Value::map([("millis", 2000)]));
    let started = tokio::time::Instant::now();
    assert_eq!((a.await.unwrap(), b.await.unwrap()), (2000, 2000));
    assert!(started.elapsed() < Duration::from_millis(2900), "deferred calls run concurrently");
}

/// A request stops waiting however it ends: answered, timed out, or dropped by its caller. The
/// last one used to stay pending for ever.
#[tokio::test(start_paused = true)]
async fn no_request_stays_pending() {
    let network = MemoryNetwork::new();
    let _service = start(&network, Probe::default()).await;
    let client = Container::builder().network(&network).start().await.unwrap();
    let proxy = client.proxy("probe");
    assert_eq!(proxy.call::<i64, _>("add", &Value::map([("a", 1), ("b", 2)])).await.unwrap(), 3);
    assert_eq!(client.pending_requests(), 0, "after a reply");
    let timed_out =
        proxy.clone().timeout(Duration::from_millis(100)).call::<u64, _>("sleep", &Value::map([("millis", 500)])).await;
    assert!(matches!(timed_out, Err(Error::Timeout { .. })), "{timed_out:?}");
    assert_eq!(client.pending_requests(), 0, "after a timeout");
    let args = Value::map([("millis", 500)]);
    let call = proxy.call::<u64, _>("sleep", &args);
    let dropped = tokio::time::timeout(Duration::from_millis(100), call).await;
    assert!(dropped.is_err(), "the caller gave up first");
    assert_eq!(client.pending_requests(), 0, "after the caller dropped the call");
}

#[derive(Debug, Default)]
struct Foo;

#[lymph::interface(name = "foo")]
impl Foo {
    /// Returns the version it was installed as.
    #[rpc]
    async fn version(&self, ctx: &Context) -> lymph::Result<String> {
        Ok(ctx.config().get("v").and_then(Value::as_str).unwrap_or_default().to_owned())
    }
}

/// lymph's versioning test: `foo@1.1` and `foo@1.5`; asking for 1.2 reaches only 1.5, 1.7 nothing.
#[tokio::test(start_paused = true)]
async fn versions_are_matched_with_caret_semantics() {
    let network = MemoryNetwork::new();
    for v in ["1.1", "1.5"] {
        Container::builder()
            .network(&network)
            .interface_as(format!("foo@{v}"), Foo, Value::map([("v", v)]))
            .start()
            .await
            .unwrap();
    }
    let client = Container::builder().network(&network).start().await.unwrap();
    for _ in 0..10 {
        let v: String = client.proxy("foo").version("1.2").call("version", &Value::Map(Vec::new())).await.unwrap();
        assert_eq!(v, "1.5");
    }
    let none = client.proxy("foo").version("1.7").call::<String, _>("version", &Value::Map(Vec::new())).await;
    assert!(matches!(none, Err(Error::NotConnected { reason: NotConnectedReason::NoMatchingVersion, .. })), "{none:?}");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let v: String = client.proxy("foo").version("1.0").call("version", &Value::Map(Vec::new())).await.unwrap();
        seen.insert(v);
    }
    assert_eq!(seen.len(), 2, "1.0 accepts both 1.1 and 1.5: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn heartbeats_mark_a_silent_peer_unresponsive() {
    let network = MemoryNetwork::new();
    let service = start(&network, Probe::default()).await;
    let client = Container::builder().network(&network).start().await.unwrap();
    let probe: ProbeClient = client.client();
    probe.add(1, 2).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(client.peer_status(service.endpoint()), PeerStatus::Responsive, "heartbeats keep it responsive");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(client.peer_status(service.endpoint()), PeerStatus::Idle, "only heartbeats for 10 s");
    // A peer that vanishes without deregistering (its endpoint is gone, its registration stays).
    let ghost = network.rpc();
    let (ghost_endpoint, _inbox) = ghost.bind().await.unwrap();
    let instance = lymph::ServiceInstance::new(
        "ghost",
        lymph::id::container_identity(&ghost_endpoint),
        None,
        ghost_endpoint.clone(),
    );
    service.stop().await;
    lymph::Registry::register(&network.registry(), "probe", instance).await.unwrap();
    let failed = probe.add(1, 2).await;
    assert!(matches!(failed, Err(Error::Timeout { .. })), "{failed:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(client.peer_status(&ghost_endpoint), PeerStatus::Unresponsive);
    let skipped = probe.add(1, 2).await;
    assert!(
        matches!(skipped, Err(Error::NotConnected { reason: NotConnectedReason::AllUnresponsive(1), .. })),
        "{skipped:?}"
    );
    assert!(skipped.unwrap_err().to_string().contains("all 1 instances"));
}

#[tokio::test(start_paused = true)]
async fn malformed_frames_are_dropped_and_the_service_keeps_serving() {
    let network = MemoryNetwork::new();
    let service = start(&network, Probe::default()).await;
    let raw = network.rpc();
    raw.bind().await.unwrap();
    let garbage: Vec<Vec<Bytes>> = vec![
        vec![],
        vec![Bytes::from_static(b"only one")],
        vec![
            Bytes::from_static(b"id"),
            Bytes::from_static(b"REQ"),
            Bytes::from_static(b"probe.add"),
            Bytes::from_static(b"\xc1"),
            Bytes::from_static(b"\x80"),
        ],
        vec![
            Bytes::from_static(b"id"),
            Bytes::from_static(b"WHAT"),
            Bytes::from_static(b"probe.add"),
            Bytes::from_static(b"\x80"),
            Bytes::from_static(b"\x80"),
        ],
        vec![
            Bytes::from_static(b"\xff\xfe"),
            Bytes::from_static(b"REQ"),
            Bytes::from_static(b"probe.add"),
            Bytes::from_static(b"\x80"),
            Bytes::from_static(b"\x80"),
        ],
        vec![
            Bytes::from_static(b"id"),
            Bytes::from_static(b"REQ"),
            Bytes::from_static(b"probe.add"),
            Bytes::from_static(b"\x80"),
            Bytes::from_static(b"\xdc\xff\xff"),
        ],
    ];
    for frames in garbage {
        raw.send(service.endpoint(), frames).await.unwrap();
    }
    let client = Container::builder().network(&network).start().await.unwrap();
    assert_eq!(client.client::<ProbeClient>().add(20, 22).await.unwrap(), 42);
}

#[tokio::test(start_paused = true)]
async fn a_stopped_container_deregisters_and_drains() {
    let network = MemoryNetwork::new();
    let service = start(&network, Probe::default()).await;
    let client = Container::builder().network(&network).start().await.unwrap();
    let in_flight = client.proxy("probe").defer::<u64, _>("sleep", &Value::map([("millis", 1000)]));
    tokio::time::sleep(Duration::from_millis(10)).await;
    service.stop().await;
    assert_eq!(in_flight.await.unwrap(), 1000, "the in-flight request finished before the stop completed");
    let after = client.client::<ProbeClient>().add(1, 1).await;
    assert!(matches!(after, Err(Error::NotConnected { reason: NotConnectedReason::NoInstances, .. })), "{after:?}");
}

/// The value of the series entry `name` whose `subject` tag is `subject`.
fn counted(series: &Value, name: &str, subject: &str) -> Option<Value> {
    series.as_array()?.iter().find_map(|entry| {
        let parts = entry.as_array()?;
        let tagged = parts.get(2)?.get("subject").and_then(Value::as_str) == Some(subject);
        (parts.first()?.as_str() == Some(name) && tagged).then(|| parts[1].clone())
    })
}

#[tokio::test(start_paused = true)]
async fn metrics_are_those_of_get_metrics_and_the_monitoring_endpoint_is_registered() {
    let network = MemoryNetwork::new();
    let service = Container::builder()
        .network(&network)
        .interface(Probe::default())
        .monitoring_endpoint("tcp://127.0.0.1:40653")
        .start()
        .await
        .unwrap();
    let client = Container::builder().network(&network).start().await.unwrap();
    for instance in client.lookup("probe").await.unwrap().into_iter().chain(client.lookup("lymph").await.unwrap()) {
        assert_eq!(instance.monitoring_endpoint.as_deref(), Some("tcp://127.0.0.1:40653"), "{instance:?}");
    }
    let probe: ProbeClient = client.client();
    for n in 0..3 {
        assert_eq!(probe.add(n, 1).await.unwrap(), n + 1);
    }
    let served: Value =
        client.proxy(service.endpoint()).namespace("lymph").call("get_metrics", &Value::Map(Vec::new())).await.unwrap();
    let local = service.metrics();
    assert_eq!(counted(&served, "rpc", "probe.add"), Some(Value::Int(3)), "{served}");
    assert_eq!(counted(&local, "rpc", "probe.add"), Some(Value::Int(3)), "{local}");
    // The call of get_metrics is counted once it has been answered.
    assert_eq!(counted(&served, "rpc", "lymph.get_metrics"), None);
    assert_eq!(counted(&local, "rpc", "lymph.get_metrics"), Some(Value::Int(1)));

    let stopped = tokio::spawn({
        let service = service.clone();
        async move { service.stopped().await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!stopped.is_finished(), "stopped waits for the stop");
    service.stop().await;
    stopped.await.unwrap();
    service.stopped().await;
}

/// Records the log level changes asked of it.
#[derive(Debug, Default)]
struct Levels(Mutex<Vec<(String, String, Duration)>>);

impl lymph::LogLevels for Levels {
    fn change(&self, target: &str, level: &str, period: Duration) -> Result<(), String> {
        self.0.lock().unwrap().push((target.to_owned(), level.to_owned(), period));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn change_loglevel_takes_one_logger_name_and_a_bounded_period() {
    let network = MemoryNetwork::new();
    let levels = Arc::new(Levels::default());
    let service = Container::builder()
        .network(&network)
        .interface(Probe::default())
        .log_levels(levels.clone())
        .start()
        .await
        .unwrap();
    let client = Container::builder().network(&network).start().await.unwrap();
    let change = |qualname: &str, period: f64| {
        let body = Value::map([
            ("qualname", Value::from(qualname)),
            ("loglevel", Value::from("ERROR")),
            ("period", Value::F64(period)),
        ]);
        let proxy = client.proxy(service.endpoint()).namespace("lymph");
        async move { proxy.call::<Value, _>("change_loglevel", &body).await }
    };
    for qualname in ["lymph", "lymph::zmq", "zookeeper_client", "lymph.core", "echo-1"] {
        change(qualname, 2.0).await.unwrap_or_else(|e| panic!("{qualname}: {e}"));
    }
    change("echo", 86_400.0).await.unwrap();
    let long = "a".repeat(129);
    for qualname in ["trace,x", "", "lymph=trace", "a b", "lymph[span]", "x{y}", "é", long.as_str()] {
        let refused = change(qualname, 2.0).await;
        assert!(
            matches!(&refused, Err(Error::RemoteError { type_name, message }) if type_name == "ValueError" && message.contains("qualname")),
            "{qualname:?}: {refused:?}"
        );
    }
    for period in [1e300, f64::INFINITY, f64::NAN, 0.0, -1.0, 1e-12, 86_400.5] {
        let refused = change("lymph", period).await;
        assert!(
            matches!(&refused, Err(Error::RemoteError { type_name, message }) if type_name == "ValueError" && message.contains("period")),
            "{period}: {refused:?}"
        );
    }
    let recorded: Vec<(String, Duration)> =
        levels.0.lock().unwrap().iter().map(|(target, _, period)| (target.clone(), *period)).collect();
    let two = Duration::from_secs(2);
    assert_eq!(
        recorded,
        [
            ("lymph".to_owned(), two),
            ("lymph::zmq".to_owned(), two),
            ("zookeeper_client".to_owned(), two),
            ("lymph.core".to_owned(), two),
            ("echo-1".to_owned(), two),
            ("echo".to_owned(), Duration::from_secs(86_400)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn requests_for_made_up_methods_add_no_series() {
    let network = MemoryNetwork::new();
    let service = start(&network, Probe::default()).await;
    let client = Container::builder().network(&network).start().await.unwrap();
    let probe: ProbeClient = client.client();
    assert_eq!(probe.add(1, 1).await.unwrap(), 2);
    let series = |metrics: &Value| metrics.as_array().map_or(0, <[Value]>::len);
    let before = series(&service.metrics());
    let proxy = client.proxy("probe");
    for n in 0..3000 {
        let made_up = proxy.request(&format!("made_up_{n}"), Bytes::from(Value::Map(Vec::new()).to_msgpack())).await;
        assert!(matches!(made_up, Ok(ref reply) if reply.kind == MessageKind::Nack), "{made_up:?}");
    }
    let metrics = service.metrics();
    // The made-up subjects share one: `rpc`, its NACKs, its duration and its histogram.
    assert!(series(&metrics) <= before + 20, "{before} series grew to {}", series(&metrics));
    assert_eq!(counted(&metrics, "rpc", "unknown"), Some(Value::Int(3000)), "{metrics}");
    assert_eq!(counted(&metrics, "rpc", "probe.add"), Some(Value::Int(1)), "{metrics}");
    assert_eq!(counted(&metrics, "rpc", "probe.made_up_0"), None, "{metrics}");
}

/// Counts the events it handles, by a wildcard pattern.
#[derive(Debug, Clone, Default)]
struct Sink {
    handled: Arc<std::sync::atomic::AtomicUsize>,
}

#[lymph::interface(name = "sink")]
impl Sink {
    /// Handles every event type under `made.`.
    #[event("made.#")]
    async fn on_made(&self, _event: lymph::Event) -> lymph::Result<()> {
        self.handled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn events_of_made_up_types_under_a_wildcard_add_no_series() {
    let network = MemoryNetwork::new();
    let sink = Sink::default();
    let service = Container::builder().network(&network).interface(sink.clone()).start().await.unwrap();
    let client = Container::builder().network(&network).start().await.unwrap();
    let series = |metrics: &Value| metrics.as_array().map_or(0, <[Value]>::len);
    client.emit("made.first", Value::Map(Vec::new())).await.unwrap();
    let wait = |n: usize| {
        let handled = sink.handled.clone();
        async move {
            while handled.load(std::sync::atomic::Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait(1).await;
    let before = series(&service.metrics());
    for n in 0..500 {
        client.emit(&format!("made.up.{n}"), Value::Map(Vec::new())).await.unwrap();
    }
    wait(501).await;
    let metrics = service.metrics();
    assert_eq!(series(&metrics), before, "{metrics}");
    let events = metrics.as_array().unwrap().iter().find_map(|entry| {
        let parts = entry.as_array()?;
        let tagged = parts[2].get("event_type").and_then(Value::as_str) == Some("made.#");
        (parts[0].as_str() == Some("events") && tagged).then(|| parts[1].clone())
    });
    assert_eq!(events, Some(Value::Int(501)), "{metrics}");
}

#[tokio::test(start_paused = true)]
async fn an_empty_event_type_is_refused() {
    let network = MemoryNetwork::new();
    let client = Container::builder().network(&network).start().await.unwrap();
    let emitted = client.emit("", Value::Map(Vec::new())).await;
    assert!(matches!(emitted, Err(Error::Config(ref m)) if m.contains("event type")), "{emitted:?}");
    let delayed = client.context().emit_delayed("", Value::Map(Vec::new()), Duration::from_secs(1)).await;
    assert!(matches!(delayed, Err(Error::Config(_))), "{delayed:?}");
    client.emit("probe.done", Value::Map(Vec::new())).await.unwrap();
}

type Sent<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = lymph::Result<()>> + Send + 'a>>;

/// An embedded transport with two additions: sends to the endpoints in `dead` wait one second
/// (ZeroMQ's connect timeout) and fail without sending, as sends to a peer that is gone do on
/// real ZeroMQ; and it counts the `lymph.ping`s its container receives, by sender.
#[derive(Debug, Clone)]
struct Observed {
    inner: Arc<lymph::memory::MemoryRpc>,
    dead: Arc<Mutex<std::collections::BTreeSet<String>>>,
    pings: Arc<Mutex<std::collections::BTreeMap<String, usize>>>,
    disconnected: Arc<Mutex<Vec<String>>>,
}

impl Observed {
    fn new(network: &MemoryNetwork) -> Self {
        Self {
            inner: Arc::new(network.rpc()),
            dead: Arc::default(),
            pings: Arc::default(),
            disconnected: Arc::default(),
        }
    }

    fn rpc(&self) -> &lymph::memory::MemoryRpc {
        &self.inner
    }

    fn pings_from(&self, endpoint: &str) -> usize {
        self.pings.lock().unwrap().get(endpoint).copied().unwrap_or(0)
    }
}

impl RpcTransport for Observed {
    fn bind(&self) -> lymph::__private::BoxFuture<'_, lymph::Result<(String, lymph::rpc::Inbox)>> {
        Box::pin(async move {
            let (endpoint, mut inner) = self.rpc().bind().await?;
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            let pings = self.pings.clone();
            tokio::spawn(async move {
                while let Some(incoming) = inner.recv().await {
                    if incoming.frames.get(2).is_some_and(|subject| subject.as_ref() == b"lymph.ping") {
                        *pings.lock().unwrap().entry(incoming.source.clone()).or_default() += 1;
                    }
                    if tx.send(incoming).await.is_err() {
                        break;
                    }
                }
            });
            Ok((endpoint, lymph::rpc::Inbox::from(rx)))
        })
    }

    fn send<'a>(&'a self, endpoint: &'a str, frames: lymph::rpc::Frames) -> Sent<'a> {
        Box::pin(async move {
            if self.dead.lock().unwrap().contains(endpoint) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                return Err(Error::not_sent(format!("cannot connect to {endpoint}: timed out")));
            }
            self.rpc().send(endpoint, frames).await
        })
    }

    fn close(&self) -> lymph::__private::BoxFuture<'_, ()> {
        Box::pin(async move { self.rpc().close().await })
    }

    fn disconnect(&self, endpoint: &str) {
        self.disconnected.lock().unwrap().push(endpoint.to_owned());
    }
}

fn connection_count(container: &Container) -> Option<i64> {
    container.metrics().as_array()?.iter().find_map(|entry| {
        let parts = entry.as_array()?;
        (parts.first()?.as_str() == Some("rpc.connection_count")).then(|| parts[1].as_i64()).flatten()
    })
}

#[tokio::test(start_paused = true)]
async fn peers_that_cannot_be_reached_delay_no_heartbeat_to_live_ones_and_are_forgotten() {
    let network = MemoryNetwork::new();
    // A probe instance on `network` whose transport records what it sends.
    let observed_probe = async |seed: u64| {
        let rpc = Observed::new(&network);
        let builder = Container::builder().rpc(rpc.clone()).events(network.events()).registry(network.registry());
        (rpc, builder.interface(Probe::default()).seed(seed).start().await.unwrap())
    };
    let (live_rpc, live) = observed_probe(1).await;
    let (server_rpc, server) = observed_probe(2).await;
    // The server calls the live instance: it is a registered peer of the server's from now on.
    let live_probe = server.proxy(live.endpoint()).namespace("probe");
    assert_eq!(live_probe.call::<i64, _>("add", &Value::map([("a", 1), ("b", 2)])).await.unwrap(), 3);
    server.client::<ProbeClient>().add(1, 1).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = live_rpc.pings_from(server.endpoint());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let alone = live_rpc.pings_from(server.endpoint()) - before;

    // 300 callers that are gone once they sent their request, as `lymph request` runs are: every
    // send back to them (the reply, each heartbeat) costs a second and fails.
    let callers = 300;
    for i in 0..callers {
        let caller = network.rpc();
        let (endpoint, _inbox) = caller.bind().await.unwrap();
        server_rpc.dead.lock().unwrap().insert(endpoint);
        let request = lymph::Message {
            id: format!("{i:032x}"),
            kind: MessageKind::Req,
            subject: "probe.add".to_owned(),
            headers: lymph::Headers::rpc(None, Some("trace")),
            body: Bytes::from(Value::map([("a", 1), ("b", 2)]).to_msgpack()),
        };
        caller.send(server.endpoint(), request.to_frames()).await.unwrap();
        caller.close().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = connection_count(&server).unwrap();
    let before = live_rpc.pings_from(server.endpoint());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let with_dead = live_rpc.pings_from(server.endpoint()) - before;
    eprintln!("pings to the live peer in 10 s: {alone} alone, {with_dead} beside {callers} dead callers");
    eprintln!("connections: {peak} with the dead callers");
    assert!(alone >= 9, "a ping a second: {alone}");
    assert!(with_dead >= 9, "dead peers delay no ping to a live one: {with_dead} in 10 s");
    assert!(peak <= 256 + 2, "at most 256 peers that are not registered instances: {peak}");
    assert!(server.peer_status(live.endpoint()).is_alive());

    // Silent for 30 s, the callers are forgotten, by the transport too; the live peer is not.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = connection_count(&server).unwrap();
    eprintln!("connections: {after} 30 s later");
    assert!(after <= 2, "only the live instance (and its lymph registration's endpoint) stays: {after}");
    assert_eq!(server_rpc.disconnected.lock().unwrap().len(), callers);
    let before = live_rpc.pings_from(server.endpoint());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(live_rpc.pings_from(server.endpoint()) - before >= 4);
    server.stop().await;
    live.stop().await;
}

#[tokio::test(start_paused = true)]
async fn calls_skip_registrations_that_cannot_be_used_while_a_good_instance_exists() {
    let network = MemoryNetwork::new();
    let service = start(&network, Probe::default()).await;
    let registry = network.registry();
    let bad = [
        ("not-an-endpoint", "not an endpoint", None),
        ("nobody-listens", "mock://127.0.0.1:9999", None),
        // Sent with its version header, a request would be NACKed by the good instance.
        ("bad-version", service.endpoint(), Some("not.a.version")),
    ];
    for (id, endpoint, version) in bad {
        let instance = lymph::ServiceInstance::new(id, id, version.map(str::to_owned), endpoint.to_owned());
        lymph::Registry::register(&registry, "probe", instance).await.unwrap();
    }
    let client = Container::builder().network(&network).seed(3).start().await.unwrap();
    assert_eq!(client.lookup("probe").await.unwrap().len(), 4);
    let probe: ProbeClient = client.client();
    for n in 0..20 {
        assert_eq!(probe.add(n, 1).await.unwrap(), n + 1, "call {n}");
    }
    // The instances that could not be sent to are unresponsive now, and skipped without a try.
    assert_eq!(client.peer_status("not an endpoint"), PeerStatus::Unresponsive);
    assert_eq!(client.peer_status("mock://127.0.0.1:9999"), PeerStatus::Unresponsive);
    assert_eq!(client.pending_requests(), 0);

    // Without the good instance, the call fails: the two left are known to be unreachable.
    service.stop().await;
    let failed = probe.add(1, 1).await;
    assert!(
        matches!(failed, Err(Error::NotConnected { reason: NotConnectedReason::AllUnresponsive(2), .. })),
        "{failed:?}"
    );
    // A fresh client tries them, and fails with what the last try found.
    let fresh = Container::builder().network(&network).seed(4).start().await.unwrap();
    let failed = fresh.client::<ProbeClient>().add(1, 1).await;
    assert!(failed.as_ref().is_err_and(Error::is_not_sent), "{failed:?}");
}
