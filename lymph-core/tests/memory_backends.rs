//! The embedded backends: RPC endpoints, the event broker's RabbitMQ semantics, the registry.

use std::time::Duration;

use bytes::Bytes;
use lymph_core::event::{Deliveries, Delivery, Event, EventSystem, Subscription};
use lymph_core::memory::{MemoryEvents, MemoryNetwork};
use lymph_core::registry::{Registry, ServiceInstance, WebInstance};
use lymph_core::rpc::RpcTransport;
use lymph_core::{Error, Value};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn frames(text: &str) -> Vec<Bytes> {
    vec![Bytes::from(text.to_owned())]
}

fn sub(queue: &str, patterns: &[&str]) -> Subscription {
    Subscription {
        queue: queue.to_owned(),
        patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        broadcast: false,
        once: false,
    }
}

fn event(event_type: &str, n: i64) -> Event {
    Event::new(event_type, Value::from(n), Some(format!("trace-{n}")))
}

fn n(delivery: &Delivery) -> i64 {
    delivery.event.body.as_i64().expect("an int body")
}

/// Takes what has been delivered so far, without waiting.
fn drain(deliveries: &mut Deliveries) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Ok(delivery) = deliveries.try_recv() {
        out.push(delivery);
    }
    out
}

async fn ack_all(deliveries: Vec<Delivery>) -> Result<Vec<(String, i64)>> {
    let mut seen = Vec::new();
    for delivery in deliveries {
        seen.push((delivery.event.event_type.clone(), n(&delivery)));
        delivery.acker.ack().await?;
    }
    Ok(seen)
}

// ---------------------------------------------------------------------------------------------
// RPC

#[tokio::test]
async fn rpc_send_and_receive() -> Result {
    let network = MemoryNetwork::new();
    let (a, b) = (network.rpc(), network.rpc());
    let (ea, _inbox_a) = a.bind().await?;
    let (eb, mut inbox_b) = b.bind().await?;
    assert_eq!(ea, "mock://127.0.0.1:1");
    assert_eq!(eb, "mock://127.0.0.1:2");
    a.send(&eb, frames("hello")).await?;
    let incoming = inbox_b.recv().await.expect("a message");
    assert_eq!(incoming.source, ea);
    assert_eq!(incoming.frames, frames("hello"));
    assert!(a.bind().await.is_err(), "a second bind is an error");
    Ok(())
}

#[tokio::test]
async fn rpc_unknown_endpoint_and_unbound_sender() -> Result {
    let network = MemoryNetwork::new();
    let a = network.rpc();
    assert!(a.send("mock://127.0.0.1:1", frames("x")).await.is_err(), "not bound yet");
    a.bind().await?;
    let error = a.send("mock://127.0.0.1:99", frames("x")).await.expect_err("unknown endpoint");
    assert!(matches!(error, Error::Transport(_)));
    assert!(error.to_string().contains("no container is bound"), "{error}");
    Ok(())
}

#[tokio::test]
async fn rpc_close_unbinds() -> Result {
    let network = MemoryNetwork::new();
    let (a, b) = (network.rpc(), network.rpc());
    a.bind().await?;
    let (eb, mut inbox_b) = b.bind().await?;
    b.close().await;
    assert!(inbox_b.recv().await.is_none(), "the inbox ends");
    assert!(a.send(&eb, frames("x")).await.is_err());
    // Endpoints are not reused.
    let c = network.rpc();
    assert_eq!(c.bind().await?.0, "mock://127.0.0.1:3");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Events

#[tokio::test]
async fn an_empty_event_type_is_refused() -> Result {
    let events = MemoryEvents::new();
    let mut all = events.subscribe(sub("q-all", &["#"])).await?;
    for delay in [Duration::ZERO, Duration::from_millis(1)] {
        let emitted = events.emit(event("", 1), delay).await;
        assert!(matches!(emitted, Err(Error::Config(_))), "{emitted:?}");
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(drain(&mut all).is_empty());
    Ok(())
}

/// AMQP's short strings: event types, wait queues and queue names of more than 255 bytes are
/// refused in every backend, as RabbitMQ (and lapin, which would panic) refuses them.
#[tokio::test]
async fn names_longer_than_an_amqp_short_string_are_refused() -> Result {
    let events = MemoryEvents::new();
    let mut all = events.subscribe(sub("q-all", &["#"])).await?;
    let longest = "t".repeat(255);
    events.emit(event(&longest, 1), Duration::ZERO).await?;
    for (event_type, delay) in [
        ("t".repeat(256), Duration::ZERO),
        ("t".repeat(300), Duration::from_millis(5)),
        // The type fits; its wait queue `<type>-wait_1000` does not.
        ("t".repeat(250), Duration::from_secs(1)),
    ] {
        let emitted = events.emit(event(&event_type, 2), delay).await;
        assert!(matches!(&emitted, Err(Error::Config(m)) if m.contains("at most 255")), "{emitted:?}");
    }
    let got: Vec<_> = ack_all(drain(&mut all)).await?.into_iter().map(|(t, _)| t).collect();
    assert_eq!(got, std::slice::from_ref(&longest));
    for subscription in [
        sub(&"q".repeat(256), &["a"]),
        sub("q", &[&"p".repeat(256)]),
        Subscription { broadcast: true, ..sub(&"q".repeat(230), &["a"]) },
    ] {
        let subscribed = events.subscribe(subscription).await;
        assert!(matches!(&subscribed, Err(Error::Config(m)) if m.contains("at most 255")), "{subscribed:?}");
    }
    events.subscribe(sub(&"q".repeat(255), &[&longest])).await?;
    Ok(())
}

#[tokio::test]
async fn topic_routing_with_wildcards() -> Result {
    let events = MemoryEvents::new();
    let mut star = events.subscribe(sub("q-star", &["order.*"])).await?;
    let mut hash = events.subscribe(sub("q-hash", &["order.#"])).await?;
    let mut exact = events.subscribe(sub("q-exact", &["order.created", "user.deleted"])).await?;
    for (i, t) in ["order.created", "order.created.eu", "order", "user.deleted", "other"].iter().enumerate() {
        events.emit(event(t, i as i64), Duration::ZERO).await?;
    }
    let star: Vec<_> = ack_all(drain(&mut star)).await?.into_iter().map(|(t, _)| t).collect();
    let hash: Vec<_> = ack_all(drain(&mut hash)).await?.into_iter().map(|(t, _)| t).collect();
    let exact: Vec<_> = ack_all(drain(&mut exact)).await?.into_iter().map(|(t, _)| t).collect();
    assert_eq!(star, ["order.created"]);
    assert_eq!(hash, ["order.created", "order.created.eu", "order"]);
    assert_eq!(exact, ["order.created", "user.deleted"]);
    Ok(())
}

#[tokio::test]
async fn competing_consumers_round_robin() -> Result {
    let events = MemoryEvents::new();
    let mut first = events.subscribe(sub("svc-handler", &["a"])).await?;
    let mut second = events.subscribe(sub("svc-handler", &["a"])).await?;
    for i in 0..6 {
        events.emit(event("a", i), Duration::ZERO).await?;
    }
    let first: Vec<i64> = ack_all(drain(&mut first)).await?.into_iter().map(|(_, n)| n).collect();
    let second: Vec<i64> = ack_all(drain(&mut second)).await?.into_iter().map(|(_, n)| n).collect();
    assert_eq!(first, [0, 2, 4]);
    assert_eq!(second, [1, 3, 5]);
    assert_eq!(events.queues(), ["svc-handler"]);
    Ok(())
}

#[tokio::test]
async fn broadcast_reaches_every_subscriber() -> Result {
    let events = MemoryEvents::new();
    let broadcast = Subscription { broadcast: true, ..sub("ws-notify", &["news"]) };
    let mut first = events.subscribe(broadcast.clone()).await?;
    let mut second = events.subscribe(broadcast).await?;
    assert_eq!(events.queues(), ["ws-notify-1", "ws-notify-2"]);
    for i in 0..3 {
        events.emit(event("news", i), Duration::ZERO).await?;
    }
    assert_eq!(ack_all(drain(&mut first)).await?.len(), 3);
    assert_eq!(ack_all(drain(&mut second)).await?.len(), 3);
    drop(first);
    assert_eq!(events.queues(), ["ws-notify-2"], "an auto-delete queue goes with its consumer");
    Ok(())
}

#[tokio::test]
async fn once_gets_one_event() -> Result {
    let events = MemoryEvents::new();
    let mut once = events.subscribe(Subscription { once: true, ..sub("waiter", &["done"]) }).await?;
    events.emit(event("done", 1), Duration::ZERO).await?;
    events.emit(event("done", 2), Duration::ZERO).await?;
    let got = once.recv().await.expect("one delivery");
    assert_eq!(n(&got), 1);
    got.acker.ack().await?;
    assert!(once.recv().await.is_none(), "then the subscription ends");
    assert!(events.queues().is_empty());
    Ok(())
}

/// A broadcast queue goes with its consumer, and so do the deliveries it had not settled: the
/// observer hears of each event lost with it. A once queue whose one delivery was acked loses
/// nothing.
#[tokio::test]
async fn events_lost_with_an_auto_delete_queue_are_reported() -> Result {
    let events = MemoryEvents::new();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let observed = seen.clone();
    events.on_auto_delete(move |queue, lost| {
        let lost: Vec<i64> = lost.iter().map(|e| e.body.as_i64().unwrap_or(-1)).collect();
        observed.lock().unwrap().push((queue.to_owned(), lost));
    });
    let broadcast = events.subscribe(Subscription { broadcast: true, ..sub("ws", &["done"]) }).await?;
    let mut once = events.subscribe(Subscription { once: true, ..sub("waiter", &["done"]) }).await?;
    for i in 1..=3 {
        events.emit(event("done", i), Duration::ZERO).await?;
    }
    let got = once.recv().await.expect("one delivery");
    assert_eq!(n(&got), 1);
    got.acker.ack().await?;
    drop(broadcast);
    assert_eq!(events.queues(), Vec::<String>::new());
    let seen = seen.lock().unwrap().clone();
    let ws = |n: i64| ("ws-1".to_owned(), vec![n]);
    assert_eq!(seen, [ws(1), ws(2), ws(3)]);
    Ok(())
}

#[tokio::test]
async fn events_wait_in_a_queue_without_consumer() -> Result {
    let events = MemoryEvents::new();
    let consumer = events.subscribe(sub("svc-h", &["e"])).await?;
    drop(consumer);
    events.emit(event("e", 1), Duration::ZERO).await?;
    events.emit(event("e", 2), Duration::ZERO).await?;
    assert_eq!(events.queue_len("svc-h"), Some(2));
    let mut consumer = events.subscribe(sub("svc-h", &["e"])).await?;
    let got: Vec<i64> = ack_all(drain(&mut consumer)).await?.into_iter().map(|(_, n)| n).collect();
    assert_eq!(got, [1, 2]);
    assert_eq!(events.queue_len("svc-h"), Some(0));
    assert_eq!(events.queue_len("nope"), None);
    Ok(())
}

#[tokio::test]
async fn reject_drops_the_event() -> Result {
    let events = MemoryEvents::new();
    let mut consumer = events.subscribe(sub("svc-h", &["e"])).await?;
    events.emit(event("e", 1), Duration::ZERO).await?;
    let delivery = consumer.recv().await.expect("delivered");
    delivery.acker.reject().await?;
    assert!(drain(&mut consumer).is_empty());
    assert_eq!(events.queue_len("svc-h"), Some(0));
    Ok(())
}

#[tokio::test]
async fn retry_goes_to_the_same_queue_only() -> Result {
    let events = MemoryEvents::new();
    let mut mine = events.subscribe(sub("svc-mine", &["e"])).await?;
    let mut other = events.subscribe(sub("svc-other", &["e"])).await?;
    events.emit(event("e", 1), Duration::ZERO).await?;
    assert_eq!(ack_all(drain(&mut other)).await?.len(), 1);
    let delivery = mine.recv().await.expect("delivered");
    let mut retry = delivery.event.clone();
    retry.headers.insert("retry_count", Value::from(0i64));
    delivery.acker.retry(retry).await?;
    let again = mine.recv().await.expect("redelivered");
    assert_eq!(again.event.retry_count(), Some(0));
    again.acker.ack().await?;
    assert!(drain(&mut other).is_empty(), "the other queue does not see the retry");
    Ok(())
}

#[tokio::test]
async fn dropped_unsettled_delivery_is_redelivered() -> Result {
    let events = MemoryEvents::new();
    let mut first = events.subscribe(sub("svc-h", &["e"])).await?;
    let mut second = events.subscribe(sub("svc-h", &["e"])).await?;
    events.emit(event("e", 7), Duration::ZERO).await?;
    let delivery = first.recv().await.expect("round-robin starts with the first consumer");
    assert_eq!(n(&delivery), 7);
    // The first consumer dies with the delivery in hand.
    drop(first);
    drop(delivery);
    let again = second.recv().await.expect("redelivered to the other consumer");
    assert_eq!(n(&again), 7);
    again.acker.ack().await?;
    // Deliveries still buffered in a dropped consumer's channel go back too, in order.
    events.emit(event("e", 8), Duration::ZERO).await?;
    events.emit(event("e", 9), Duration::ZERO).await?;
    drop(second);
    assert_eq!(events.queue_len("svc-h"), Some(2));
    let mut third = events.subscribe(sub("svc-h", &["e"])).await?;
    let got: Vec<i64> = ack_all(drain(&mut third)).await?.into_iter().map(|(_, n)| n).collect();
    assert_eq!(got, [8, 9]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn delayed_emit_is_published_later() -> Result {
    let events = MemoryEvents::new();
    let mut consumer = events.subscribe(sub("svc-h", &["later"])).await?;
    events.emit(event("later", 1), Duration::from_secs(5)).await?;
    tokio::time::sleep(Duration::from_millis(4_900)).await;
    assert!(drain(&mut consumer).is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = drain(&mut consumer);
    assert_eq!(got.iter().map(n).collect::<Vec<_>>(), [1]);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Registry

fn instance(id: &str, endpoint: &str) -> ServiceInstance {
    ServiceInstance::new(id, format!("identity-{id}"), None, endpoint)
}

/// ZooKeeper's node names: every registry refuses what ZooKeeper would (`odd/name`, `..`, control
/// characters, more than 255 bytes) and takes the rest.
#[tokio::test]
async fn service_names_zookeeper_refuses_are_refused() -> Result {
    let registry = MemoryNetwork::new().registry();
    for bad in ["", ".", "..", "odd/name", "tab\there", "del\u{7f}", "private\u{e000}", &"s".repeat(256)] {
        let registered = registry.register(bad, instance("a", "mock://a")).await;
        assert!(
            matches!(&registered, Err(Error::Config(m)) if m.contains("bad service name")),
            "{bad:?}: {registered:?}"
        );
    }
    for good in ["echo", "odd.name", "with-dash_and:colon", "ünïcode", "...", &"s".repeat(255)] {
        registry.register(good, instance("a", "mock://a")).await?;
    }
    Ok(())
}

#[tokio::test]
async fn registry_register_watch_unregister() -> Result {
    let network = MemoryNetwork::new();
    let (registry, other) = (network.registry(), network.registry());
    let error = other.watch("echo").await.expect_err("never registered");
    assert!(matches!(error, Error::LookupFailure { ref service } if service == "echo"));

    registry.register("echo", instance("b", "mock://127.0.0.1:2")).await?;
    let mut watch = other.watch("echo").await?;
    assert_eq!(watch.borrow_and_update().iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["b"]);

    registry.register("echo", instance("a", "mock://127.0.0.1:1")).await?;
    watch.changed().await?;
    assert_eq!(watch.borrow_and_update().iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);

    registry.unregister("echo", "a").await?;
    registry.unregister("echo", "b").await?;
    registry.unregister("echo", "unknown").await?;
    watch.changed().await?;
    assert!(watch.borrow_and_update().is_empty());
    assert_eq!(other.discover().await?, ["echo"], "the service stays known");
    assert!(other.watch("echo").await?.borrow().is_empty());
    Ok(())
}

fn web(id: &str, http_port: u16) -> WebInstance {
    WebInstance {
        id: id.to_owned(),
        identity: format!("identity-{id}"),
        version: None,
        hostname: Some("host".to_owned()),
        ip: Some("127.0.0.1".to_owned()),
        http_port,
    }
}

fn ports(list: &[WebInstance]) -> Vec<(&str, u16)> {
    list.iter().map(|i| (i.id.as_str(), i.http_port)).collect()
}

#[tokio::test]
async fn web_register_lookup_unregister() -> Result {
    let network = MemoryNetwork::new();
    let (registry, other) = (network.registry(), network.registry());
    assert!(other.lookup_web("web").await?.is_empty(), "nothing registered yet");

    registry.register_web("web", web("b", 4081)).await?;
    registry.register_web("web", web("a", 4080)).await?;
    registry.register_web("other", web("c", 4082)).await?;
    assert_eq!(ports(&other.lookup_web("web").await?), [("a", 4080), ("b", 4081)], "ordered by id");
    assert_eq!(other.lookup_web("web").await?[0], web("a", 4080));

    registry.register_web("web", web("a", 5080)).await?;
    assert_eq!(ports(&other.lookup_web("web").await?), [("a", 5080), ("b", 4081)], "the same id replaces");

    registry.unregister_web("web", "a").await?;
    assert_eq!(ports(&other.lookup_web("web").await?), [("b", 4081)]);
    registry.unregister_web("web", "unknown").await?;
    registry.unregister_web("unknown", "b").await?;
    registry.unregister_web("web", "b").await?;
    assert!(other.lookup_web("web").await?.is_empty());
    assert_eq!(ports(&other.lookup_web("other").await?), [("c", 4082)], "another service is untouched");
    Ok(())
}

#[tokio::test]
async fn web_registrations_are_apart_from_services() -> Result {
    let network = MemoryNetwork::new();
    let (registry, other) = (network.registry(), network.registry());
    registry.register_web("web", web("a", 4080)).await?;
    assert!(other.discover().await?.is_empty(), "a web registration is no service");
    let error = other.watch("web").await.expect_err("no service registered");
    assert!(matches!(error, Error::LookupFailure { ref service } if service == "web"));

    registry.register("web", instance("a", "mock://127.0.0.1:1")).await?;
    let mut watch = other.watch("web").await?;
    assert_eq!(watch.borrow_and_update().iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["a"]);
    assert_eq!(other.discover().await?, ["web"]);

    // Each namespace keeps its own registration of the same id.
    registry.unregister_web("web", "a").await?;
    assert!(!watch.has_changed()?, "the service's watch does not see web registrations");
    assert_eq!(watch.borrow().len(), 1);
    registry.register_web("web", web("a", 4080)).await?;
    registry.unregister("web", "a").await?;
    watch.changed().await?;
    assert!(watch.borrow_and_update().is_empty());
    assert_eq!(ports(&other.lookup_web("web").await?), [("a", 4080)]);
    Ok(())
}
