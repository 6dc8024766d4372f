//! The simulated backends in turmoil worlds: RPC, registry sessions, the broker, faults, replay.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use lymph_core::event::{EventSystem, Subscription};
use lymph_core::registry::{Registry, ServiceInstance, WebInstance};
use lymph_core::rpc::RpcTransport;
use lymph_core::{Error, Event, Headers, Message, MessageKind, Value};
use lymph_testing::sim::{self, SimEvents, SimHost, SimRegistry, SimRpc};
use lymph_testing::{RenderOptions, Timeline};
use tokio::time::{sleep, timeout};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const REGISTRY: &str = "registry:2181";
const BROKER: &str = "broker:5672";

fn sim<'a>(seed: u64) -> turmoil::Sim<'a> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .simulation_duration(Duration::from_secs(60))
        .build()
}

/// Steps the simulation until every client is done, calling `each` after every step.
fn run(sim: &mut turmoil::Sim<'_>, mut each: impl FnMut(&mut turmoil::Sim<'_>)) -> Result {
    while !sim.step()? {
        each(sim);
    }
    Ok(())
}

fn flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

fn request(id: &str, subject: &str, trace: &str, body: &str) -> Vec<Bytes> {
    Message {
        id: id.to_owned(),
        kind: MessageKind::Req,
        subject: subject.to_owned(),
        headers: Headers::rpc(None, Some(trace)),
        body: Bytes::from(Value::from(body).to_msgpack()),
    }
    .to_frames()
}

fn instance(id: &str, endpoint: &str) -> ServiceInstance {
    ServiceInstance::new(id, format!("identity-{id}"), None, endpoint)
}

fn sub(queue: &str, patterns: &[&str]) -> Subscription {
    Subscription {
        queue: queue.to_owned(),
        patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        broadcast: false,
        once: false,
    }
}

/// An echo server host: answers every request with a REP carrying the upper-cased body.
fn echo_host(sim: &mut turmoil::Sim<'_>, timeline: &Timeline) {
    let timeline = timeline.clone();
    sim.host("echo", move || {
        let timeline = timeline.clone();
        async move {
            let rpc = SimRpc::new(&SimHost::new("echo", timeline), 4000);
            let (_, mut inbox) = rpc.bind().await?;
            while let Some(incoming) = inbox.recv().await {
                let Ok(request) = Message::from_frames(&incoming.frames) else { continue };
                let text = request.body_value()?.as_str().unwrap_or_default().to_uppercase();
                let reply = Message {
                    id: format!("{}-reply", request.id),
                    kind: MessageKind::Rep,
                    subject: request.id.clone(),
                    headers: request.headers.clone(),
                    body: Bytes::from(Value::from(text.as_str()).to_msgpack()),
                };
                rpc.send(&incoming.source, reply.to_frames()).await?;
            }
            Ok(())
        }
    });
}

fn rpc_scenario(seed: u64) -> Result<Timeline> {
    let timeline = Timeline::new();
    let mut sim = sim(seed);
    echo_host(&mut sim, &timeline);
    let tl = timeline.clone();
    sim.client("caller", async move {
        let rpc = SimRpc::new(&SimHost::new("caller", tl), 4000);
        let (endpoint, mut inbox) = rpc.bind().await?;
        assert_eq!(endpoint, "tcp://caller:4000");
        sleep(Duration::from_millis(100)).await;
        for (i, word) in ["hello", "world"].iter().enumerate() {
            let id = format!("{i:032x}");
            rpc.send("tcp://echo:4000", request(&id, "echo.upper", "trace-0123456789", word)).await?;
            let reply = timeout(Duration::from_secs(1), inbox.recv()).await?.expect("a reply");
            assert_eq!(reply.source, "tcp://echo:4000");
            let reply = Message::from_frames(&reply.frames)?;
            assert_eq!(reply.kind, MessageKind::Rep);
            assert_eq!(reply.subject, id);
            assert_eq!(reply.body_value()?.as_str(), Some(word.to_uppercase().as_str()));
        }
        let error = rpc.send("tcp://nobody:4000", request("x", "a.b", "t", "")).await;
        assert!(error.is_err(), "an unknown host cannot be reached");
        Ok(())
    });
    sim.run()?;
    Ok(timeline)
}

#[test]
fn rpc_round_trip_is_recorded_on_both_sides() -> Result {
    let timeline = rpc_scenario(1)?;
    let seen: Vec<(String, String, String)> =
        timeline.entries().into_iter().map(|e| (e.host, e.kind, e.subject)).take(4).collect();
    let s = |h: &str, k: &str, sub: &str| (h.to_owned(), k.to_owned(), sub.to_owned());
    assert_eq!(
        seen,
        [
            s("caller", "REQ", "echo.upper"),
            s("echo", "REQ", "echo.upper"),
            s("echo", "REP", "echo.upper (re 00000000)"),
            s("caller", "REP", "echo.upper (re 00000000)"),
        ]
    );
    assert!(timeline.entries().iter().take(4).all(|e| e.trace_id.as_deref() == Some("trace-0123456789")));
    let rendered = timeline.render(&RenderOptions::default());
    assert!(rendered.contains("trace=trace-01"), "{rendered}");
    assert!(rendered.contains("-> tcp://echo:4000"), "{rendered}");
    Ok(())
}

#[test]
fn registry_session_death_unregisters_its_instances() -> Result {
    let timeline = Timeline::new();
    let mut sim = sim(2);
    sim.host("registry", || {
        sim::registry_server(SimHost::new("registry", Timeline::new()), sim::DEFAULT_REGISTRY_PORT)
    });
    let tl = timeline.clone();
    sim.host("svc", move || {
        let tl = tl.clone();
        async move {
            let registry = SimRegistry::connect(REGISTRY, &SimHost::new("svc", tl))?;
            registry.register("echo", instance("aaaa", "tcp://svc:4000")).await?;
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let (seen, vanished) = (flag(), flag());
    let (seen2, vanished2, tl) = (seen.clone(), vanished.clone(), timeline.clone());
    sim.client("watcher", async move {
        let registry = SimRegistry::connect(REGISTRY, &SimHost::new("watcher", tl))?;
        let mut watch = loop {
            match registry.watch("echo").await {
                Ok(watch) => break watch,
                Err(Error::LookupFailure { .. }) => sleep(Duration::from_millis(50)).await,
                Err(error) => return Err(error.into()),
            }
        };
        timeout(Duration::from_secs(5), watch.wait_for(|list| list.len() == 1)).await??;
        assert_eq!(watch.borrow()[0].endpoint, "tcp://svc:4000");
        seen2.store(true, Ordering::SeqCst);
        timeout(sim::REGISTRY_SESSION_TIMEOUT + Duration::from_secs(5), watch.wait_for(|list| list.is_empty()))
            .await??;
        vanished2.store(true, Ordering::SeqCst);
        assert_eq!(registry.discover().await?, ["echo"], "the service stays known");
        Ok(())
    });
    let mut crashed = false;
    run(&mut sim, |sim| {
        if seen.load(Ordering::SeqCst) && !crashed {
            sim.crash("svc");
            crashed = true;
        }
    })?;
    assert!(vanished.load(Ordering::SeqCst));
    let kinds: Vec<(String, String)> = timeline.entries().into_iter().map(|e| (e.host, e.kind)).collect();
    assert!(kinds.contains(&("svc".into(), "register".into())), "{kinds:?}");
    Ok(())
}

#[test]
fn broker_delivers_and_acks_across_hosts() -> Result {
    let timeline = Timeline::new();
    let mut sim = sim(3);
    let events = lymph_core::memory::MemoryEvents::new();
    let broker_state = events.clone();
    sim.host("broker", move || {
        sim::broker_server_on(SimHost::new("broker", Timeline::new()), sim::DEFAULT_BROKER_PORT, broker_state.clone())
    });
    let tl = timeline.clone();
    sim.client("consumer", async move {
        let events = SimEvents::connect(BROKER, &SimHost::new("consumer", tl))?;
        let mut deliveries = events.subscribe(sub("listener-on_upper", &["uppercase.*"])).await?;
        let delivery = timeout(Duration::from_secs(5), deliveries.recv()).await?.expect("a delivery");
        assert_eq!(delivery.event.event_type, "uppercase.done");
        assert_eq!(delivery.event.get("text").and_then(Value::as_str), Some("HI"));
        delivery.acker.ack().await?;
        Ok(())
    });
    let tl = timeline.clone();
    sim.client("producer", async move {
        let events = SimEvents::connect(BROKER, &SimHost::new("producer", tl))?;
        sleep(Duration::from_secs(1)).await;
        let body = Value::map([("text", Value::from("HI"))]);
        events.emit(Event::new("uppercase.done", body, Some("trace-77".into())), Duration::ZERO).await?;
        Ok(())
    });
    run(&mut sim, |_| {})?;
    assert_eq!(events.queue_len("listener-on_upper"), Some(0));
    let kinds: Vec<(String, String, Option<String>)> = timeline
        .entries()
        .into_iter()
        .filter(|e| ["emit", "deliver", "ack"].contains(&e.kind.as_str()))
        .map(|e| (e.host, e.kind, e.trace_id))
        .collect();
    let k = |h: &str, kind: &str| (h.to_owned(), kind.to_owned(), Some("trace-77".to_owned()));
    assert_eq!(kinds, [k("producer", "emit"), k("consumer", "deliver"), k("consumer", "ack")]);
    Ok(())
}

#[test]
fn the_broker_client_refuses_an_empty_event_type() -> Result {
    let timeline = Timeline::new();
    let mut sim = sim(4);
    let events = lymph_core::memory::MemoryEvents::new();
    let broker_state = events.clone();
    sim.host("broker", move || {
        sim::broker_server_on(SimHost::new("broker", Timeline::new()), sim::DEFAULT_BROKER_PORT, broker_state.clone())
    });
    let tl = timeline.clone();
    sim.client("producer", async move {
        let events = SimEvents::connect(BROKER, &SimHost::new("producer", tl))?;
        let emitted = events.emit(Event::new("", Value::Nil, None), Duration::ZERO).await;
        assert!(matches!(emitted, Err(Error::Config(_))), "{emitted:?}");
        // AMQP's limit on names holds here as on RabbitMQ: 255 bytes.
        for (event_type, delay) in [("t".repeat(256), Duration::ZERO), ("t".repeat(250), Duration::from_secs(1))] {
            let emitted = events.emit(Event::new(event_type, Value::Nil, None), delay).await;
            assert!(matches!(&emitted, Err(Error::Config(m)) if m.contains("at most 255")), "{emitted:?}");
        }
        let long_queue =
            Subscription { queue: "q".repeat(256), patterns: vec!["a".into()], broadcast: false, once: false };
        let subscribed = events.subscribe(long_queue).await;
        assert!(matches!(&subscribed, Err(Error::Config(m)) if m.contains("at most 255")), "{subscribed:?}");
        Ok(())
    });
    run(&mut sim, |_| {})?;
    assert!(timeline.entries().iter().all(|e| e.kind != "emit"), "nothing was emitted");
    Ok(())
}

#[test]
fn unacked_delivery_goes_to_another_consumer_when_its_host_crashes() -> Result {
    let timeline = Timeline::new();
    let mut sim = sim(4);
    sim.host("broker", || sim::broker_server(SimHost::new("broker", Timeline::new()), sim::DEFAULT_BROKER_PORT));
    let got_first = flag();
    let (got, tl) = (got_first.clone(), timeline.clone());
    sim.host("first", move || {
        let (got, tl) = (got.clone(), tl.clone());
        async move {
            let events = SimEvents::connect(BROKER, &SimHost::new("first", tl))?;
            let mut deliveries = events.subscribe(sub("svc-work", &["job"])).await?;
            let _held = deliveries.recv().await.expect("a delivery");
            got.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let tl = timeline.clone();
    sim.client("second", async move {
        let events = SimEvents::connect(BROKER, &SimHost::new("second", tl))?;
        sleep(Duration::from_millis(500)).await;
        let mut deliveries = events.subscribe(sub("svc-work", &["job"])).await?;
        sleep(Duration::from_millis(500)).await;
        events.emit(Event::new("job", Value::from(42i64), Some("trace-job".into())), Duration::ZERO).await?;
        let delivery = timeout(Duration::from_secs(10), deliveries.recv()).await?.expect("redelivered");
        assert_eq!(delivery.event.body.as_i64(), Some(42));
        delivery.acker.ack().await?;
        Ok(())
    });
    let mut crashed = false;
    run(&mut sim, |sim| {
        if got_first.load(Ordering::SeqCst) && !crashed {
            sim.crash("first");
            crashed = true;
        }
    })?;
    assert!(crashed, "the first consumer got the event first (round-robin)");
    let delivers: Vec<String> =
        timeline.entries().into_iter().filter(|e| e.kind == "deliver").map(|e| e.host).collect();
    assert_eq!(delivers, ["first", "second"]);
    Ok(())
}

#[test]
fn a_broker_connection_outlives_a_partition_shorter_than_its_heartbeat() -> Result {
    let timeline = Timeline::new();
    let mut sim = sim(5);
    sim.host("broker", || sim::broker_server(SimHost::new("broker", Timeline::new()), sim::DEFAULT_BROKER_PORT));
    let tl = timeline.clone();
    sim.client("listener", async move {
        let events = SimEvents::connect(BROKER, &SimHost::new("listener", tl))?;
        let mut deliveries = events.subscribe(sub("listener-news", &["news"])).await?;
        sleep(Duration::from_secs(1)).await;
        turmoil::hold("listener", "broker");
        sleep(Duration::from_secs(20)).await;
        turmoil::release("listener", "broker");
        // The producer emitted at 10 s, into the partition: held, then delivered.
        let delivery = timeout(Duration::from_secs(5), deliveries.recv()).await?.expect("the held delivery");
        assert_eq!(delivery.event.body.as_i64(), Some(2));
        delivery.acker.ack().await?;
        Ok(())
    });
    let tl = timeline.clone();
    sim.client("producer", async move {
        let events = SimEvents::connect(BROKER, &SimHost::new("producer", tl))?;
        sleep(Duration::from_secs(10)).await;
        events.emit(Event::new("news", Value::from(2i64), None), Duration::ZERO).await?;
        Ok(())
    });
    run(&mut sim, |_| {})?;
    let listener: Vec<(String, Duration)> =
        timeline.entries().into_iter().filter(|e| e.host == "listener").map(|e| (e.kind, e.time)).collect();
    let kinds: Vec<&str> = listener.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, ["connect", "deliver", "ack"], "one connection throughout");
    assert!(listener[1].1 >= Duration::from_secs(21), "delivered when the partition healed: {listener:?}");
    Ok(())
}

#[test]
fn a_partition_longer_than_the_heartbeat_ends_the_broker_connection() -> Result {
    let timeline = Timeline::new();
    let mut sim = turmoil::Builder::new()
        .rng_seed(5)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .simulation_duration(Duration::from_secs(300))
        .build();
    sim.host("broker", || sim::broker_server(SimHost::new("broker", Timeline::new()), sim::DEFAULT_BROKER_PORT));
    let tl = timeline.clone();
    sim.client("listener", async move {
        let events = SimEvents::connect(BROKER, &SimHost::new("listener", tl))?;
        let mut deliveries = events.subscribe(sub("listener-news", &["news"])).await?;
        sleep(Duration::from_secs(1)).await;
        turmoil::hold("listener", "broker");
        sleep(sim::AMQP_HEARTBEAT * 2 + Duration::from_secs(10)).await;
        turmoil::release("listener", "broker");
        // The producer emits after the client has reconnected and subscribed again.
        let delivery = timeout(Duration::from_secs(60), deliveries.recv()).await?.expect("a delivery after repair");
        assert_eq!(delivery.event.body.as_i64(), Some(2));
        delivery.acker.ack().await?;
        Ok(())
    });
    let tl = timeline.clone();
    sim.client("producer", async move {
        let events = SimEvents::connect(BROKER, &SimHost::new("producer", tl))?;
        sleep(sim::AMQP_HEARTBEAT * 2 + Duration::from_secs(20)).await;
        events.emit(Event::new("news", Value::from(2i64), None), Duration::ZERO).await?;
        Ok(())
    });
    run(&mut sim, |_| {})?;
    let listener: Vec<(String, String, Duration)> =
        timeline.entries().into_iter().filter(|e| e.host == "listener").map(|e| (e.kind, e.detail, e.time)).collect();
    let kinds: Vec<&str> = listener.iter().map(|(kind, ..)| kind.as_str()).collect();
    assert_eq!(kinds, ["connect", "disconnect", "connect", "deliver", "ack"]);
    // lapin gives up after twice the heartbeat without a byte from the server.
    let (_, detail, at) = &listener[1];
    assert_eq!(detail, "session timed out");
    assert!(*at >= sim::AMQP_HEARTBEAT * 2, "{listener:?}");
    Ok(())
}

#[test]
fn registry_client_registers_again_after_a_partition() -> Result {
    let timeline = Timeline::new();
    let mut sim = sim(6);
    sim.host("registry", || {
        sim::registry_server(SimHost::new("registry", Timeline::new()), sim::DEFAULT_REGISTRY_PORT)
    });
    let tl = timeline.clone();
    sim.client("svc", async move {
        let registry = SimRegistry::connect(REGISTRY, &SimHost::new("svc", tl))?;
        // A name ZooKeeper refuses is refused here too, before it reaches the registry.
        let refused = registry.register("odd/name", instance("aaaa", "tcp://svc:4000")).await;
        assert!(matches!(&refused, Err(Error::Config(m)) if m.contains("bad service name")), "{refused:?}");
        registry.register("echo", instance("aaaa", "tcp://svc:4000")).await?;
        let mut watch = registry.watch("echo").await?;
        turmoil::partition("svc", "registry");
        // Longer than the session timeout: the registry expires the session.
        sleep(sim::REGISTRY_SESSION_TIMEOUT + Duration::from_secs(3)).await;
        turmoil::repair("svc", "registry");
        sleep(Duration::from_secs(3)).await;
        // The watch handed out before the partition still works and shows the registration.
        assert_eq!(watch.borrow_and_update().len(), 1);
        registry.unregister("echo", "aaaa").await?;
        timeout(Duration::from_secs(2), watch.wait_for(|list| list.is_empty())).await??;
        Ok(())
    });
    let tl = timeline.clone();
    sim.client("observer", async move {
        let registry = SimRegistry::connect(REGISTRY, &SimHost::new("observer", tl))?;
        sleep(Duration::from_millis(500)).await;
        let mut watch = registry.watch("echo").await?;
        // The session times out during the partition: the instance vanishes, then comes back.
        let expiry = sim::REGISTRY_SESSION_TIMEOUT + Duration::from_secs(4);
        timeout(expiry, watch.wait_for(|list| list.is_empty())).await??;
        timeout(Duration::from_secs(6), watch.wait_for(|list| list.len() == 1)).await??;
        Ok(())
    });
    run(&mut sim, |_| {})?;
    let svc: Vec<(String, String)> =
        timeline.entries().into_iter().filter(|e| e.host == "svc").map(|e| (e.kind, e.detail)).collect();
    let kinds: Vec<&str> = svc.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, ["connect", "register", "disconnect", "connect", "session", "register", "unregister"]);
    assert!(svc[4].1.contains("expired, new session"), "{:?}", svc[4]);
    assert!(svc[5].1.ends_with("(again, new session)"), "{:?}", svc[5]);
    Ok(())
}

fn web_instance(id: &str, ip: &str) -> WebInstance {
    WebInstance {
        id: id.to_owned(),
        identity: format!("identity-{id}"),
        version: None,
        hostname: Some(ip.to_owned()),
        ip: Some(ip.to_owned()),
        http_port: 4080,
    }
}

/// Looks up the web registrations of `service` every 100 ms until `done` holds for them, for at
/// most `within`.
async fn wait_web(
    registry: &SimRegistry,
    service: &str,
    within: Duration,
    done: impl Fn(&[WebInstance]) -> bool,
) -> Result<Vec<WebInstance>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let list = registry.lookup_web(service).await?;
        if done(&list) {
            return Ok(list);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("web registrations of {service} still {list:?} after {within:?}").into());
        }
        sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn web_registration_vanishes_with_its_session_and_comes_back_after_a_reconnect() -> Result {
    let timeline = Timeline::new();
    let mut sim = sim(8);
    sim.host("registry", || {
        sim::registry_server(SimHost::new("registry", Timeline::new()), sim::DEFAULT_REGISTRY_PORT)
    });
    let tl = timeline.clone();
    sim.client("svc", async move {
        let registry = SimRegistry::connect(REGISTRY, &SimHost::new("svc", tl))?;
        registry.register("web", instance("aaaa", "tcp://svc:4000")).await?;
        registry.register_web("web", web_instance("aaaa", "svc")).await?;
        assert_eq!(registry.lookup_web("web").await?, [web_instance("aaaa", "svc")]);
        turmoil::partition("svc", "registry");
        // Longer than the session timeout: the registry expires the session.
        sleep(sim::REGISTRY_SESSION_TIMEOUT + Duration::from_secs(3)).await;
        turmoil::repair("svc", "registry");
        sleep(Duration::from_secs(3)).await;
        assert_eq!(registry.lookup_web("web").await?, [web_instance("aaaa", "svc")], "registered again");
        registry.unregister_web("web", "aaaa").await?;
        assert!(registry.lookup_web("web").await?.is_empty());
        assert_eq!(registry.watch("web").await?.borrow().len(), 1, "the service registration stays");
        Ok(())
    });
    let tl = timeline.clone();
    sim.client("observer", async move {
        let registry = SimRegistry::connect(REGISTRY, &SimHost::new("observer", tl))?;
        assert!(registry.lookup_web("nothing").await?.is_empty());
        wait_web(&registry, "web", Duration::from_secs(2), |list| list.len() == 1).await?;
        // The session times out during the partition: the registration vanishes, then comes back.
        let expiry = sim::REGISTRY_SESSION_TIMEOUT + Duration::from_secs(4);
        wait_web(&registry, "web", expiry, <[WebInstance]>::is_empty).await?;
        let again = wait_web(&registry, "web", Duration::from_secs(6), |list| !list.is_empty()).await?;
        assert_eq!(again, [web_instance("aaaa", "svc")]);
        assert_eq!(registry.discover().await?, ["web"], "only the service registration is a service");
        Ok(())
    });
    run(&mut sim, |_| {})?;
    let svc: Vec<(String, String)> =
        timeline.entries().into_iter().filter(|e| e.host == "svc").map(|e| (e.kind, e.detail)).collect();
    let kinds: Vec<&str> = svc.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "connect",
            "register",
            "register-web",
            "disconnect",
            "connect",
            "session",
            "register",
            "register-web",
            "unregister-web"
        ]
    );
    assert_eq!(svc[2].1, "id=aaaa http=svc:4080");
    assert!(svc[5].1.contains("expired, new session"), "{:?}", svc[5]);
    assert_eq!(svc[7].1, "id=aaaa http=svc:4080 (again, new session)");
    Ok(())
}

#[test]
fn web_registration_vanishes_when_its_host_crashes() -> Result {
    let mut sim = sim(9);
    sim.host("registry", || {
        sim::registry_server(SimHost::new("registry", Timeline::new()), sim::DEFAULT_REGISTRY_PORT)
    });
    sim.host("svc", || async {
        let registry = SimRegistry::connect(REGISTRY, &SimHost::new("svc", Timeline::new()))?;
        registry.register_web("web", web_instance("aaaa", "svc")).await?;
        std::future::pending::<()>().await;
        Ok(())
    });
    let (seen, vanished) = (flag(), flag());
    let (seen2, vanished2) = (seen.clone(), vanished.clone());
    sim.client("observer", async move {
        let registry = SimRegistry::connect(REGISTRY, &SimHost::new("observer", Timeline::new()))?;
        wait_web(&registry, "web", Duration::from_secs(2), |list| list.len() == 1).await?;
        seen2.store(true, Ordering::SeqCst);
        let expiry = sim::REGISTRY_SESSION_TIMEOUT + Duration::from_secs(4);
        wait_web(&registry, "web", expiry, <[WebInstance]>::is_empty).await?;
        vanished2.store(true, Ordering::SeqCst);
        Ok(())
    });
    let mut crashed = false;
    run(&mut sim, |sim| {
        if seen.load(Ordering::SeqCst) && !crashed {
            sim.crash("svc");
            crashed = true;
        }
    })?;
    assert!(crashed && vanished.load(Ordering::SeqCst));
    Ok(())
}

fn mixed_scenario(seed: u64) -> Result<String> {
    let timeline = Timeline::new();
    let mut sim = sim(seed);
    sim.host("broker", || sim::broker_server(SimHost::new("broker", Timeline::new()), sim::DEFAULT_BROKER_PORT));
    sim.host("registry", || {
        sim::registry_server(SimHost::new("registry", Timeline::new()), sim::DEFAULT_REGISTRY_PORT)
    });
    echo_host(&mut sim, &timeline);
    for name in ["c1", "c2"] {
        let tl = timeline.clone();
        sim.client(name, async move {
            let host = SimHost::new(name, tl);
            let rpc = SimRpc::new(&host, 4000);
            let (endpoint, mut inbox) = rpc.bind().await?;
            let events = SimEvents::connect(BROKER, &host)?;
            let registry = SimRegistry::connect(REGISTRY, &host)?;
            registry.register("client", instance(name, &endpoint)).await?;
            let mut deliveries = events.subscribe(sub("client-on_tick", &["tick.#"])).await?;
            sleep(Duration::from_millis(100)).await;
            for i in 0..3 {
                let id = format!("{name}-{i}");
                rpc.send("tcp://echo:4000", request(&id, "echo.upper", &format!("trace-{id}"), &id)).await?;
                timeout(Duration::from_secs(2), inbox.recv()).await?.expect("a reply");
                let event = Event::new(format!("tick.{name}"), Value::from(i), Some(format!("trace-{id}")));
                events.emit(event, Duration::ZERO).await?;
            }
            for _ in 0..2 {
                if let Ok(Some(delivery)) = timeout(Duration::from_secs(2), deliveries.recv()).await {
                    delivery.acker.ack().await?;
                }
            }
            Ok(())
        });
    }
    sim.run()?;
    let options = RenderOptions { heartbeats: true, group_by_trace: false };
    Ok(timeline.render(&options))
}

#[test]
fn same_seed_gives_the_same_timeline() -> Result {
    let first = mixed_scenario(42)?;
    let second = mixed_scenario(42)?;
    assert!(first.lines().count() > 20, "{first}");
    assert_eq!(first, second);
    let other = mixed_scenario(7)?;
    assert_ne!(first, other, "another seed, other latencies");
    let grouped = {
        let again = rpc_scenario(1)?;
        again.render(&RenderOptions { heartbeats: false, group_by_trace: true })
    };
    assert!(grouped.starts_with("trace trace-0123456789\n"), "{grouped}");
    Ok(())
}

/// Large RPC messages cross the simulated network as they cross ZeroMQ: 20 MiB arrives; one past
/// `DEFAULT_MAX_MESSAGE_SIZE` (64 MiB, the ZeroMQ transport's default limit) closes its connection
/// unread, and the next message gets through on a new one.
#[test]
fn rpc_carries_20_mib_and_refuses_a_message_past_the_limit() -> Result {
    let mut sim = sim(5);
    sim.host("sink", || async {
        let rpc = SimRpc::new(&SimHost::new("sink", Timeline::new()), 4000);
        let (_, mut inbox) = rpc.bind().await?;
        while let Some(incoming) = inbox.recv().await {
            let size: usize = incoming.frames.iter().map(Bytes::len).sum();
            rpc.send(&incoming.source, [Bytes::from(size.to_string())].into_iter().collect()).await?;
        }
        Ok(())
    });
    sim.client("caller", async {
        let rpc = SimRpc::new(&SimHost::new("caller", Timeline::new()), 4000);
        let (_, mut inbox) = rpc.bind().await?;
        let message = |body: Bytes| [Bytes::from_static(b"id"), body].into_iter().collect();
        rpc.send("tcp://sink:4000", message(Bytes::from(vec![7u8; 20 << 20]))).await?;
        let reply = timeout(Duration::from_secs(10), inbox.recv()).await?.expect("a reply");
        assert_eq!(reply.frames[0], Bytes::from(((20 << 20) + 2).to_string()));
        rpc.send("tcp://sink:4000", message(Bytes::from(vec![7u8; lymph_core::rpc::DEFAULT_MAX_MESSAGE_SIZE]))).await?;
        assert!(timeout(Duration::from_secs(2), inbox.recv()).await.is_err(), "the oversized message arrived");
        let mut answered = false;
        for _ in 0..5 {
            if rpc.send("tcp://sink:4000", message(Bytes::from_static(b"small"))).await.is_ok()
                && let Ok(Some(reply)) = timeout(Duration::from_secs(1), inbox.recv()).await
            {
                assert_eq!(reply.frames[0], Bytes::from_static(b"7"));
                answered = true;
                break;
            }
        }
        assert!(answered, "no message got through after the oversized one");
        Ok(())
    });
    sim.run()?;
    Ok(())
}
