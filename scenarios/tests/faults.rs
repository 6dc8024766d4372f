//! What each fault of the simulator does to the talk's services: one test per fault.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lymph::testing::sim::{MessageFault, REGISTRY_SESSION_TIMEOUT};
use lymph::testing::{Result, TestError, World, eventually};
use lymph::{Container, Error};
use scenarios::echo::{Echo, EchoClient, UPPERCASED};
use scenarios::listener::Listener;
use scenarios::talk;

fn check(condition: bool, what: impl Into<String>) -> Result {
    if condition { Ok(()) } else { Err(Box::new(TestError::new(what))) }
}

/// Calls `echo.echo` `n` times and returns how many calls failed.
async fn calls(echo: &EchoClient, n: usize) -> usize {
    let mut failed = 0;
    for i in 0..n {
        if echo.echo(format!("{i}")).await.is_err() {
            failed += 1;
        }
    }
    failed
}

/// A partition between the client and one instance: calls routed there time out until heartbeats
/// mark the instance unresponsive; then every call goes to the other one. After the repair the
/// instance is used again.
#[lymph::test(seeds = 4)]
async fn a_partition_is_routed_around_and_healed(world: World) -> Result {
    let talk = talk::start(&world).await?;
    let echo: EchoClient = talk.client.client();
    calls(&echo, 4).await;
    world.partition("test", "echo-1");
    calls(&echo, 10).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = talk.echoes[0].served();
    check(calls(&echo, 20).await == 0, "calls failed although echo-2 is reachable")?;
    check(talk.echoes[0].served() == before, "the partitioned instance served requests")?;
    world.repair("test", "echo-1");
    tokio::time::sleep(Duration::from_secs(5)).await;
    check(calls(&echo, 40).await == 0, "calls failed after the repair")?;
    check(talk.echoes[0].served() > before, "echo-1 was not used again after the repair")
}

/// A one-way partition that loses echo-1's replies: its requests are handled, but their callers
/// time out. A request may run although its caller saw it fail.
#[lymph::test(seeds = 4)]
async fn lost_replies_mean_handled_requests_whose_callers_gave_up(world: World) -> Result {
    let echo_1 = Echo::default();
    let factory_echo = echo_1.clone();
    world.start("echo-1", move || Container::builder().interface(factory_echo.clone())).await?;
    let client = world.client().await?;
    let echo: EchoClient = client.client();
    echo.echo("warm".to_owned()).await?;
    world.partition_oneway("echo-1", "test");
    let before = echo_1.served();
    let result = echo.echo("lost".to_owned()).await;
    check(matches!(result, Err(Error::Timeout { .. })), format!("expected a timeout, got {result:?}"))?;
    check(echo_1.served() == before + 1, "the request did not reach echo-1")
}

/// Held messages arrive late but arrive: a call with a long enough timeout succeeds after the release.
#[lymph::test(seeds = 4)]
async fn held_messages_arrive_after_the_release(world: World) -> Result {
    world.start("echo-1", || Container::builder().interface(Echo::default())).await?;
    let client = world.client().await?;
    let echo: EchoClient = client.client();
    echo.echo("warm".to_owned()).await?;
    world.hold("test", "echo-1");
    let proxy = client.proxy("echo").timeout(Duration::from_secs(10));
    let call = proxy.defer::<String, _>("echo", &lymph::Value::map([("text", "late")]));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = tokio::time::Instant::now();
    world.release("test", "echo-1");
    let reply = call.await?;
    check(reply == "late", format!("got {reply:?}"))?;
    check(started.elapsed() < Duration::from_secs(2), "the reply did not come soon after the release")
}

/// Latency on a link makes calls over it slow: with a 1.5 s latency each way, a call takes at
/// least 3 s, so the default 3 s timeout fails and a longer one succeeds.
#[lymph::test(seeds = 4)]
async fn latency_slows_calls_down(world: World) -> Result {
    world.start("echo-1", || Container::builder().interface(Echo::default())).await?;
    let client = world.client().await?;
    let echo: EchoClient = client.client();
    echo.echo("warm".to_owned()).await?;
    world.set_latency("test", "echo-1", Duration::from_millis(1500));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let slow = echo.echo("slow".to_owned()).await;
    check(matches!(slow, Err(Error::Timeout { .. })), format!("expected a timeout, got {slow:?}"))?;
    let started = tokio::time::Instant::now();
    let patient = client.proxy("echo").timeout(Duration::from_secs(10));
    let reply: String = patient.call("echo", &lymph::Value::map([("text", "patient")])).await?;
    check(reply == "patient", format!("got {reply:?}"))?;
    check(started.elapsed() >= Duration::from_secs(3), format!("the call took only {:?}", started.elapsed()))
}

/// Jitter on a link makes the latency of each message over it vary between the two bounds: with
/// 50 to 500 ms each way, the round trips of calls over it spread between 100 ms and 1 s, each
/// call its own (and, for a given seed, the same on every run).
#[lymph::test(seeds = 4)]
async fn jitter_spreads_call_latencies_between_its_bounds(world: World) -> Result {
    world.start("echo-1", || Container::builder().interface(Echo::default())).await?;
    let client = world.client().await?;
    let echo: EchoClient = client.client();
    echo.echo("warm".to_owned()).await?;
    world.set_jitter("test", "echo-1", Duration::from_millis(50), Duration::from_millis(500));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut took = Vec::new();
    for i in 0..30 {
        let started = tokio::time::Instant::now();
        echo.echo(format!("{i}")).await?;
        took.push(started.elapsed());
    }
    let fastest = took.iter().min().copied().unwrap_or_default();
    let slowest = took.iter().max().copied().unwrap_or_default();
    check(fastest >= Duration::from_millis(100), format!("a call took only {fastest:?}: {took:?}"))?;
    check(slowest <= Duration::from_millis(1050), format!("a call took {slowest:?}: {took:?}"))?;
    check(slowest - fastest >= Duration::from_millis(100), format!("the call latencies hardly vary: {took:?}"))?;
    world.reset_latency("test", "echo-1");
    // Messages sent before the reset arrive first, up to 500 ms later.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let started = tokio::time::Instant::now();
    echo.echo("reset".to_owned()).await?;
    let reset = started.elapsed();
    check(reset < Duration::from_millis(210), format!("a call took {reset:?} after the reset"))
}

/// Message loss stalls the link, as TCP retransmission does; calls time out while it lasts, and
/// the client recovers once the link is clean again.
#[lymph::test(seeds = 4)]
async fn calls_recover_after_message_loss(world: World) -> Result {
    world.start("echo-1", || Container::builder().interface(Echo::default())).await?;
    let client = world.client().await?;
    let echo: EchoClient = client.client();
    echo.echo("warm".to_owned()).await?;
    world.set_loss("test", "echo-1", 1.0);
    tokio::time::sleep(Duration::from_millis(10)).await;
    check(calls(&echo, 3).await > 0, "no call failed while every message was lost")?;
    world.set_loss("test", "echo-1", 0.0);
    let mut answered = false;
    for _ in 0..20 {
        if echo.echo("back".to_owned()).await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    check(answered, "echo did not answer after the loss stopped")
}

/// The `session` entries of the timeline: `(host, subject, detail)`.
fn session_entries(world: &World) -> Vec<(String, String, String)> {
    world
        .timeline()
        .entries()
        .into_iter()
        .filter(|e| e.kind == "session")
        .map(|e| (e.host, e.subject, e.detail))
        .collect()
}

/// An expired registry session removes the host's instances; other clients route to the other
/// instance until it reconnects and registers again. The timeline shows the registry expiring the
/// session and the host finding it expired and getting a new one.
#[lymph::test(seeds = 4)]
async fn an_expired_session_deregisters_until_the_host_registers_again(world: World) -> Result {
    let talk = talk::start(&world).await?;
    let echo: EchoClient = talk.client.client();
    calls(&echo, 4).await;
    world.partition("echo-1", "registry");
    // Past the session timeout (10 s, as ZooKeeper's with lymph's client defaults).
    tokio::time::sleep(REGISTRY_SESSION_TIMEOUT + Duration::from_secs(2)).await;
    let before = talk.echoes[0].served();
    check(calls(&echo, 20).await == 0, "calls failed while echo-2 was registered")?;
    check(talk.echoes[0].served() == before, "the expired instance was still chosen")?;
    world.repair("echo-1", "registry");
    tokio::time::sleep(Duration::from_secs(3)).await;
    calls(&echo, 40).await;
    check(talk.echoes[0].served() > before, "echo-1 was not chosen again after it registered again")?;
    let sessions = session_entries(&world);
    let expired = |(host, subject, detail): &(String, String, String)| {
        host == "registry" && subject == "echo-1" && detail.starts_with("expired session")
    };
    let renewed = |(host, subject, detail): &(String, String, String)| {
        host == "echo-1" && subject == "registry" && detail.contains("expired, new session")
    };
    check(sessions.iter().any(expired), format!("the registry did not expire echo-1's session: {sessions:?}"))?;
    check(sessions.iter().any(renewed), format!("echo-1 did not get a new session: {sessions:?}"))
}

/// A partition from the registry shorter than the session timeout (3 s against 10 s) keeps the
/// session, as with ZooKeeper: the host's registrations never vanish, another client sees both
/// echo instances throughout, and the registry expires nothing. The host pings every 1.5 s, so
/// the partition swallows a ping; a real TCP connection would deliver it late, while the
/// simulated network does not retransmit and the connection stalls until the host's read timeout
/// (two thirds of the session timeout) drops it. Either way, when the host has dropped its
/// connection, it connects again and resumes its session.
#[lymph::test(seeds = 4)]
async fn a_short_registry_partition_keeps_the_session(world: World) -> Result {
    let talk = talk::start(&world).await?;
    let echo: EchoClient = talk.client.client();
    calls(&echo, 4).await;
    check(talk.client.lookup("echo").await?.len() == 2, "the client does not see both echo instances")?;
    world.partition("echo-1", "registry");
    tokio::time::sleep(Duration::from_secs(3)).await;
    world.repair("echo-1", "registry");
    // Well past the session timeout: an expiry would have shown by then.
    let until = tokio::time::Instant::now() + REGISTRY_SESSION_TIMEOUT + Duration::from_secs(2);
    while tokio::time::Instant::now() < until {
        let seen = talk.client.lookup("echo").await?.len();
        check(seen == 2, format!("the client saw {seen} echo instances after the partition"))?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = talk.echoes[0].served();
    check(calls(&echo, 20).await == 0, "calls failed after the partition")?;
    check(talk.echoes[0].served() > before, "echo-1 was not chosen after the partition")?;
    let echo_1: Vec<(String, String)> = world
        .timeline()
        .entries()
        .into_iter()
        .filter(|e| e.host == "echo-1" && e.subject == "registry")
        .map(|e| (e.kind, e.detail))
        .collect();
    let kinds: Vec<&str> = echo_1.iter().map(|(kind, _)| kind.as_str()).collect();
    let kept = kinds == ["connect"]
        || (kinds == ["connect", "disconnect", "connect", "session"] && echo_1[3].1.starts_with("resumed session"));
    check(kept, format!("echo-1 did not keep its registry session: {echo_1:?}"))?;
    let sessions = session_entries(&world);
    let only_resumed = sessions.iter().all(|(host, _, detail)| host == "echo-1" && detail.starts_with("resumed"));
    check(only_resumed, format!("a session expired or another one changed: {sessions:?}"))
}

/// A graceful stop of a service host ([`World::stop`]) deregisters it first, then keeps serving a
/// moment for callers that have not heard of that yet and lets the requests it is handling finish
/// before it closes its endpoint: callers move to the other instance, and no request fails, not
/// even those made while it stops.
#[lymph::test(seeds = 4)]
async fn a_graceful_stop_fails_no_request(world: World) -> Result {
    let talk = talk::start(&world).await?;
    let echo: EchoClient = talk.client.client();
    check(calls(&echo, 10).await == 0, "calls failed before the stop")?;
    let stop = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        world.stop("echo-1").await
    };
    let (failed, stopped) = tokio::join!(calls(&echo, 40), stop);
    stopped?;
    check(failed == 0, format!("{failed} of 40 calls failed while echo-1 stopped"))?;
    let before = talk.echoes[0].served();
    check(calls(&echo, 20).await == 0, "calls failed after the stop")?;
    check(talk.echoes[0].served() == before, "the stopped instance served requests")?;
    let entries = world.timeline().entries();
    let stop_at = entries.iter().position(|e| e.kind == "fault" && e.detail == "stop echo-1");
    let first_unregister = entries.iter().position(|e| e.host == "echo-1" && e.kind == "unregister");
    check(
        matches!((stop_at, first_unregister), (Some(stop), Some(unregister)) if stop < unregister),
        "echo-1 did not unregister after the stop began",
    )
}

/// A client cut off from the registry keeps calling the instances it already knows: RPC does not
/// go through the registry. Here echo-1 is cut off too, for longer than the session timeout, so
/// the registry expires its session and deletes its registration; the client, which cannot hear
/// of that, keeps calling echo-1 and is answered. After the repair echo-1 registers again and
/// the client sees the registry's view again.
#[lymph::test(seeds = 4)]
async fn a_client_cut_off_from_the_registry_keeps_calling_known_instances(world: World) -> Result {
    let talk = talk::start(&world).await?;
    let echo: EchoClient = talk.client.client();
    check(calls(&echo, 10).await == 0, "calls failed before the partition")?;
    world.partition("test", "registry");
    world.partition("echo-1", "registry");
    tokio::time::sleep(REGISTRY_SESSION_TIMEOUT + Duration::from_secs(2)).await;
    let expired = session_entries(&world)
        .iter()
        .any(|(host, subject, detail)| host == "registry" && subject == "echo-1" && detail.starts_with("expired"));
    check(expired, "the registry did not expire echo-1's session")?;
    let before = talk.echoes[0].served();
    check(calls(&echo, 20).await == 0, "calls failed while the client was cut off from the registry")?;
    check(talk.echoes[0].served() > before, "the client stopped calling echo-1, which it still knows")?;
    world.repair("test", "registry");
    world.repair("echo-1", "registry");
    tokio::time::sleep(Duration::from_secs(3)).await;
    check(talk.client.lookup("echo").await?.len() == 2, "the client does not see both echo instances again")?;
    check(calls(&echo, 20).await == 0, "calls failed after the repair")
}

/// A listener cut off from the broker misses nothing: the events published meanwhile wait in its
/// queue on the broker, and once the partition is repaired the listener connects again,
/// subscribes again and gets them all.
#[lymph::test(seeds = 4)]
async fn a_listener_cut_off_from_the_broker_gets_the_events_after_the_repair(world: World) -> Result {
    let talk = talk::start(&world).await?;
    let echo: EchoClient = talk.client.client();
    echo.upper("before".to_owned()).await?;
    let listener = talk.listener.clone();
    eventually("the first event", Duration::from_secs(5), || uppercased(&listener).len() == 1).await?;
    // Its ack reaches the broker (an unacknowledged delivery would be delivered again).
    tokio::time::sleep(Duration::from_secs(1)).await;
    world.partition("listener", "broker");
    echo.upper("during-1".to_owned()).await?;
    echo.upper("during-2".to_owned()).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let texts = uppercased(&talk.listener);
    check(texts == ["before"], format!("the listener got {texts:?} while cut off from the broker"))?;
    world.repair("listener", "broker");
    let listener = talk.listener.clone();
    eventually("the queued events", Duration::from_secs(10), || uppercased(&listener).len() >= 3).await?;
    let mut texts = uppercased(&talk.listener);
    texts.sort();
    check(texts == ["before", "during-1", "during-2"], format!("the listener got {texts:?}"))
}

/// A service cut off from the broker cannot publish: its emit waits for the broker (the
/// connection breaks, the service connects again after the repair and publishes the unconfirmed
/// event again), so the request that emits is answered only after the repair, and its event
/// reaches the listener.
#[lymph::test(seeds = 4)]
async fn an_emit_cut_off_from_the_broker_is_published_after_the_repair(world: World) -> Result {
    let echo_1 = Echo::default();
    let factory_echo = echo_1.clone();
    world.start("echo-1", move || Container::builder().interface(factory_echo.clone())).await?;
    let listener = Listener::default();
    let factory_listener = listener.clone();
    world.start("listener", move || Container::builder().interface(factory_listener.clone())).await?;
    let client = world.client().await?;
    let echo: EchoClient = client.client();
    echo.upper("warm".to_owned()).await?;
    world.partition("echo-1", "broker");
    let started = tokio::time::Instant::now();
    let repair = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        world.repair("echo-1", "broker");
    };
    let patient = client.proxy("echo").timeout(Duration::from_secs(10));
    let body = lymph::Value::map([("text", "late")]);
    let call = patient.call::<String, _>("upper", &body);
    let (reply, ()) = tokio::join!(call, repair);
    check(reply? == "LATE", "upper answered something else")?;
    let waited = started.elapsed();
    check(waited >= Duration::from_secs(3), format!("the call was answered after {waited:?}, before the repair"))?;
    let listener_seen = listener.clone();
    eventually("the late event", Duration::from_secs(5), || uppercased(&listener_seen).contains(&"late".to_owned()))
        .await?;
    let texts = uppercased(&listener);
    check(texts.first().map(String::as_str) == Some("warm"), format!("the listener got {texts:?}"))
}

/// A broker restart loses what its non-durable queues held, as RabbitMQ does for lymph's queues;
/// the clients reconnect and re-subscribe, and events emitted afterwards arrive. The event is
/// queued while the listener is down (its queue outlives its consumer, as lymph's named queues
/// do), so nothing but the queue holds it when the broker restarts.
#[lymph::test(seeds = 4)]
async fn a_broker_restart_loses_queued_events_and_recovers(world: World) -> Result {
    let talk = talk::start(&world).await?;
    let echo: EchoClient = talk.client.client();
    echo.upper("before".to_owned()).await?;
    let listener = talk.listener.clone();
    eventually("the first event", Duration::from_secs(5), || listener.received().len() == 1).await?;
    world.crash("listener");
    echo.upper("queued".to_owned()).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    world.restart("broker").await?;
    world.restart("listener").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    echo.upper("after".to_owned()).await?;
    let listener = talk.listener.clone();
    eventually("the event emitted after the restart", Duration::from_secs(10), || listener.received().len() == 2)
        .await?;
    let texts: Vec<String> =
        talk.listener.received().iter().map(|e| e["text"].as_str().unwrap_or_default().to_owned()).collect();
    check(texts == ["before", "after"], format!("the listener saw {texts:?}; `queued` must be lost"))
}

/// A partition holds what the broker sends, as TCP does: an event delivered into a partition
/// shorter than the AMQP heartbeat arrives when it heals, on the same connection, and is lost
/// in no broker restart meanwhile.
#[lymph::test(seeds = 4)]
async fn an_event_delivered_into_a_short_partition_arrives_when_it_heals(world: World) -> Result {
    let talk = talk::start(&world).await?;
    let echo: EchoClient = talk.client.client();
    echo.upper("before".to_owned()).await?;
    let listener = talk.listener.clone();
    eventually("the first event", Duration::from_secs(5), || listener.received().len() == 1).await?;
    world.partition("listener", "broker");
    echo.upper("held".to_owned()).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    check(listener.received().len() == 1, "nothing crosses a partition")?;
    world.repair("listener", "broker");
    eventually("the held event", Duration::from_secs(5), || listener.received().len() == 2).await?;
    let connects = world.timeline().entries().iter().filter(|e| e.host == "listener" && e.kind == "connect").count();
    check(connects == 2, format!("{connects} connections of the listener (one to the registry, one to the broker)"))
}

/// The texts of the `uppercase_transform_finished` events the listener handled, in order.
fn uppercased(listener: &Listener) -> Vec<String> {
    listener
        .received()
        .iter()
        .filter(|e| e.event_type == UPPERCASED)
        .map(|e| e["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A dropped event is lost on its way from the publisher to the queues: the listener never gets
/// it, and gets the next one.
#[lymph::test(seeds = 4)]
async fn a_dropped_event_never_reaches_the_listener(world: World) -> Result {
    let talk = talk::start(&world).await?;
    let echo: EchoClient = talk.client.client();
    world.inject(MessageFault::drop().kind("EVENT").subject(UPPERCASED));
    echo.upper("lost".to_owned()).await?;
    echo.upper("kept".to_owned()).await?;
    let listener = talk.listener.clone();
    eventually("the second event", Duration::from_secs(5), || uppercased(&listener).contains(&"kept".to_owned()))
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let texts = uppercased(&talk.listener);
    check(texts == ["kept"], format!("the listener saw {texts:?}"))?;
    let dropped = world.timeline().entries().iter().filter(|e| e.kind == "drop" && e.subject == UPPERCASED).count();
    check(dropped == 1, format!("{dropped} drops of the event on the timeline"))
}

/// A duplicated event is put into the listener's queue twice: the listener handles it twice.
#[lymph::test(seeds = 4)]
async fn a_duplicated_event_reaches_the_listener_twice(world: World) -> Result {
    let talk = talk::start(&world).await?;
    let echo: EchoClient = talk.client.client();
    world.inject(MessageFault::duplicate().kind("EVENT").subject(UPPERCASED));
    echo.upper("twice".to_owned()).await?;
    echo.upper("once".to_owned()).await?;
    let listener = talk.listener.clone();
    eventually("three events", Duration::from_secs(5), || uppercased(&listener).len() >= 3).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let texts = uppercased(&talk.listener);
    check(texts == ["twice", "twice", "once"], format!("the listener saw {texts:?}"))
}

/// A delayed event reaches the listener after the delay, in simulated time, overtaken by the
/// event published after it.
#[lymph::test(seeds = 4)]
async fn a_delayed_event_reaches_the_listener_after_the_delay(world: World) -> Result {
    let talk = talk::start(&world).await?;
    let echo: EchoClient = talk.client.client();
    world.inject(MessageFault::delay(Duration::from_secs(3)).kind("EVENT").subject(UPPERCASED));
    let started = tokio::time::Instant::now();
    echo.upper("late".to_owned()).await?;
    echo.upper("prompt".to_owned()).await?;
    let listener = talk.listener.clone();
    eventually("the prompt event", Duration::from_secs(2), || uppercased(&listener) == ["prompt"]).await?;
    while !uppercased(&talk.listener).contains(&"late".to_owned()) {
        check(started.elapsed() < Duration::from_secs(5), "the delayed event did not arrive within 5 s")?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    check(elapsed >= Duration::from_secs(3), format!("the delayed event arrived after only {elapsed:?}"))?;
    check(elapsed < Duration::from_millis(3500), format!("the delayed event took {elapsed:?}"))?;
    let texts = uppercased(&talk.listener);
    check(texts == ["prompt", "late"], format!("the listener saw {texts:?}"))
}

/// Heartbeat pings the client sent to `endpoint` so far.
fn pings_to(world: &World, endpoint: &str) -> usize {
    let to = format!("-> {endpoint} ");
    world
        .timeline()
        .entries()
        .iter()
        .filter(|e| e.host == "test" && e.kind == "REQ" && e.is_heartbeat() && e.detail.starts_with(&to))
        .count()
}

/// A peer that cannot be connected to (its messages held: every connection attempt waits out the
/// transport's 2 s connect timeout) delays no heartbeat to the others: echo-2 gets its ping a
/// second while echo-1, first in endpoint order, is held.
#[lymph::test(seeds = 4)]
async fn a_peer_that_cannot_be_connected_delays_no_heartbeat_to_the_others(world: World) -> Result {
    let talk = talk::start(&world).await?;
    for endpoint in ["tcp://echo-1:4000", "tcp://echo-2:4000"] {
        let ping = talk.client.proxy(endpoint).namespace("lymph");
        ping.call::<String, _>("ping", &lymph::Value::map([("payload", "hi")])).await?;
    }
    world.hold("test", "echo-1");
    // The held connection goes silent and is dropped; from then on each ping to echo-1 connects.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (held, live) = (pings_to(&world, "tcp://echo-1:4000"), pings_to(&world, "tcp://echo-2:4000"));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (held, live) = (pings_to(&world, "tcp://echo-1:4000") - held, pings_to(&world, "tcp://echo-2:4000") - live);
    world.release("test", "echo-1");
    eprintln!("seed {}: {live} pings to echo-2 in 10 s, {held} to the held echo-1", world.seed());
    check(live >= 9, format!("{live} pings to echo-2 in 10 s ({held} attempts to the held echo-1)"))
}

/// Registrations that cannot be used (an endpoint that is none, a port nobody listens on, a
/// version that is none) never fail a call while a good instance exists.
#[lymph::test(seeds = 4)]
async fn bad_registrations_fail_no_call_while_a_good_instance_exists(world: World) -> Result {
    let echo_1 = Echo::default();
    let factory_echo = echo_1.clone();
    world.start("echo-1", move || Container::builder().interface(factory_echo.clone())).await?;
    let host = lymph::testing::sim::SimHost::new(lymph::testing::TEST_HOST, world.timeline().clone());
    let registry = lymph::testing::sim::SimRegistry::connect(
        &format!("{}:{}", lymph::testing::REGISTRY_HOST, lymph::testing::sim::DEFAULT_REGISTRY_PORT),
        &host,
    )?;
    let bad = [
        ("not-an-endpoint", "not an endpoint", None),
        ("closed-port", "tcp://echo-1:4999", None),
        ("bad-version", "tcp://echo-1:4000", Some("not.a.version")),
    ];
    for (id, endpoint, version) in bad {
        let instance = lymph::ServiceInstance::new(id, id, version.map(str::to_owned), endpoint.to_owned());
        lymph::Registry::register(&registry, "echo", instance).await?;
    }
    let client = world.client().await?;
    let instances = client.lookup("echo").await?.len();
    check(instances == 4, format!("{instances} instances of echo"))?;
    let echo: EchoClient = client.client();
    let failed = calls(&echo, 20).await;
    check(failed == 0, format!("{failed} of 20 calls failed"))?;
    check(echo_1.served() == 20, format!("echo-1 served {} calls", echo_1.served()))
}

/// A slow link delays messages; it loses none, as on a real TCP connection. With 3 s of latency
/// between the client and echo-1, a call with a 1 s timeout fails, yet its request reaches echo-1
/// about 3 s after it was sent and echo-1 handles it: the caller saw a failure where the work was
/// done, which `no_reply_after_give_up` reports. Connections that only turn slow are kept (only
/// silence after a partition or loss drops one), so the calls after the link is fast again
/// succeed on the same connections.
#[lymph::test(seeds = 4)]
async fn a_slow_link_delivers_late_and_loses_nothing(world: World) -> Result {
    let served = Arc::new(AtomicUsize::new(0));
    let echo_1 = Echo::counting(served.clone());
    world.start("echo-1", move || Container::builder().interface(echo_1.clone())).await?;
    let client = world.client().await?;
    let echo: EchoClient = client.client();
    check(calls(&echo, 3).await == 0, "calls failed before the link turned slow")?;
    world.set_latency("test", "echo-1", Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let proxy = client.context().proxy("echo").timeout(Duration::from_secs(1));
    let late = proxy.call::<String, _>("echo", &lymph::Value::map([("text", "late")])).await;
    check(matches!(late, Err(Error::Timeout { .. })), format!("expected a timeout, got {late:?}"))?;
    check(served.load(Ordering::SeqCst) == 3, "the request arrived before the link's latency")?;
    let seen = served.clone();
    eventually("the late request was handled", Duration::from_secs(10), move || seen.load(Ordering::SeqCst) == 4)
        .await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let violation = lymph::testing::check::no_reply_after_give_up(world.timeline())
        .err()
        .ok_or("the reply after the caller gave up was not reported")?;
    check(violation.trace_ids == [proxy.trace_id().to_owned()], violation.to_string())?;
    let dropped = world.timeline().entries().into_iter().any(|e| e.kind == "drop" || e.kind == "disconnect");
    check(!dropped, "a connection was dropped on a link that was only slow")?;
    world.reset_latency("test", "echo-1");
    tokio::time::sleep(Duration::from_millis(10)).await;
    check(calls(&echo, 3).await == 0, "calls failed after the link was fast again")
}
