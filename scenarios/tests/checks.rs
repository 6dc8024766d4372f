//! Each checker passes on a clean run and catches a deliberately broken one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lymph::testing::check::{
    LossCause, at_most_one_reply, deliveries_at_most, every_event_delivered, every_request_answered,
    no_reply_after_give_up, requests_handled_at_most_once,
};
use lymph::testing::sim::MessageFault;
use lymph::testing::{Entry, Result, TEST_HOST, TestError, World, eventually};
use lymph::{Container, Error, Event};
use scenarios::echo::{Echo, EchoClient, UPPERCASED};
use scenarios::talk;

fn check(condition: bool, what: impl Into<String>) -> Result {
    if condition { Ok(()) } else { Err(Box::new(TestError::new(what))) }
}

async fn echo_and_client(world: &World) -> std::result::Result<(Echo, EchoClient), Error> {
    let echo = Echo::default();
    let factory_echo = echo.clone();
    world.start("echo-1", move || Container::builder().interface(factory_echo.clone())).await?;
    let client = world.client().await?;
    let echo_client: EchoClient = client.client();
    echo_client.echo("warm".to_owned()).await?;
    Ok((echo, echo_client))
}

#[lymph::test(seeds = 4)]
async fn a_clean_run_passes_every_checker(world: World) -> Result {
    let (_, echo) = echo_and_client(&world).await?;
    for i in 0..5 {
        echo.upper(format!("{i}")).await?;
    }
    at_most_one_reply(world.timeline())?;
    every_request_answered(world.timeline())?;
    requests_handled_at_most_once(world.timeline())?;
    deliveries_at_most(world.timeline(), 1)?;
    no_reply_after_give_up(world.timeline())?;
    let timeouts = world.timeline().entries().iter().filter(|e| e.kind == "timeout").count();
    check(timeouts == 0, format!("{timeouts} timeouts in a clean run"))
}

/// A duplicated reply reaches its caller twice; the container ignores the second, the checker
/// reports it.
#[lymph::test(seeds = 4)]
async fn at_most_one_reply_catches_a_duplicated_reply(world: World) -> Result {
    let (_, echo) = echo_and_client(&world).await?;
    world.inject(MessageFault::duplicate().kind("REP").subject("echo.echo"));
    check(echo.echo("twice".to_owned()).await? == "twice", "the first reply is the answer")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let violation = at_most_one_reply(world.timeline()).err().ok_or("the duplicate reply was not caught")?;
    check(violation.message.contains("2 replies"), violation.to_string())?;
    check(!violation.trace_ids.is_empty() && violation.times.len() == 3, violation.to_string())
}

/// A lost reply leaves its caller with a timeout; the checker names the request.
#[lymph::test(seeds = 4)]
async fn every_request_answered_catches_a_lost_reply(world: World) -> Result {
    let (_, echo) = echo_and_client(&world).await?;
    world.inject(MessageFault::drop().kind("REP").subject("echo.echo"));
    let lost = echo.echo("lost".to_owned()).await;
    check(matches!(lost, Err(Error::Timeout { .. })), format!("expected a timeout, got {lost:?}"))?;
    let violation = every_request_answered(world.timeline()).err().ok_or("the lost reply was not caught")?;
    check(violation.message.contains("echo.echo request got no reply in time"), violation.to_string())?;
    check(violation.times.len() == 2 && violation.times[0] < violation.times[1], violation.to_string())?;
    // The caller gave up, and no reply came afterwards: not a late reply.
    no_reply_after_give_up(world.timeline())?;
    Ok(())
}

/// The last `REQ` entry the test host sent for `subject`, and the `timeout` entry of the test
/// host giving up on it, if there is one.
fn request_and_give_up(entries: &[Entry], subject: &str) -> Option<(Entry, Option<Entry>)> {
    let request = entries.iter().rev().find(|e| e.host == TEST_HOST && e.kind == "REQ" && e.subject == subject)?;
    let give_up = entries.iter().find(|e| e.host == TEST_HOST && e.kind == "timeout" && e.re == request.id);
    Some((request.clone(), give_up.cloned()))
}

/// A request that times out leaves a `timeout` entry on its caller's host, naming the request,
/// its trace and the endpoint it waited for.
#[lymph::test(seeds = 4)]
async fn a_timeout_is_on_the_timeline(world: World) -> Result {
    world.start("echo-1", || Container::builder().interface(Echo::default())).await?;
    let client = world.client().await?;
    client.client::<EchoClient>().echo("warm".to_owned()).await?;
    world.inject(MessageFault::drop().kind("REQ").subject("echo.echo"));
    let proxy = client.context().proxy("echo").timeout(Duration::from_millis(700));
    let lost = proxy.call::<String, _>("echo", &lymph::Value::map([("text", "lost")])).await;
    check(matches!(lost, Err(Error::Timeout { .. })), format!("expected a timeout, got {lost:?}"))?;
    let entries = world.timeline().entries();
    let (request, give_up) = request_and_give_up(&entries, "echo.echo").ok_or("no echo.echo request")?;
    let give_up = give_up.ok_or("no timeout entry for the request")?;
    check(give_up.trace_id.as_deref() == Some(proxy.trace_id()), format!("{give_up:?}"))?;
    check(give_up.time == request.time + Duration::from_millis(700), format!("{request:?} then {give_up:?}"))?;
    check(give_up.subject.starts_with("echo.echo (re "), format!("{give_up:?}"))?;
    check(give_up.detail == "no reply from tcp://echo-1:4000 within 700ms", format!("{give_up:?}"))
}

/// Sleeps (simulated time) before it answers.
#[derive(Debug, Clone, Default)]
struct Slow {
    runs: Arc<AtomicUsize>,
}

#[lymph::interface(name = "slow")]
impl Slow {
    /// Waits `millis` milliseconds, then returns them.
    #[rpc]
    async fn work(&self, millis: u64) -> lymph::Result<u64> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(millis)
    }
}

/// A handler slower than its caller's timeout does its work and replies after the caller gave up:
/// the checker names the trace and the times it was sent, given up on and answered.
#[lymph::test(seeds = 4)]
async fn no_reply_after_give_up_catches_a_handler_slower_than_its_caller(world: World) -> Result {
    let slow = Slow::default();
    let factory = slow.clone();
    world.start("slow", move || Container::builder().interface(factory.clone())).await?;
    let client = world.client().await?;
    let fast = client.proxy("slow").call::<u64, _>("work", &lymph::Value::map([("millis", 10)])).await?;
    check(fast == 10, format!("got {fast}"))?;
    no_reply_after_give_up(world.timeline())?;
    let proxy = client.context().proxy("slow").timeout(Duration::from_millis(500));
    let late = proxy.call::<u64, _>("work", &lymph::Value::map([("millis", 1000)])).await;
    check(matches!(late, Err(Error::Timeout { .. })), format!("expected a timeout, got {late:?}"))?;
    let runs = slow.runs.clone();
    eventually("the slow handler finished", Duration::from_secs(2), || runs.load(Ordering::SeqCst) == 2).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let violation = no_reply_after_give_up(world.timeline()).err().ok_or("the late reply was not caught")?;
    check(violation.trace_ids == [proxy.trace_id().to_owned()], violation.to_string())?;
    let gave_up = format!("{TEST_HOST} gave up on its slow.work request after 0.500s");
    check(violation.message.contains(&gave_up), violation.to_string())?;
    check(violation.message.contains("REP reply arrived"), violation.to_string())?;
    let times = &violation.times;
    check(times.len() == 3 && times[0] < times[1] && times[1] <= times[2], violation.to_string())?;
    let answered = every_request_answered(world.timeline()).err().ok_or("a late reply counted as an answer")?;
    check(answered.trace_ids == violation.trace_ids, answered.to_string())
}

/// A duplicated request runs its handler twice: the non-idempotent echo counts two calls where its
/// caller made one, and the checker reports the request.
#[lymph::test(seeds = 4)]
async fn requests_handled_at_most_once_catches_a_duplicated_request(world: World) -> Result {
    let (echo_service, echo) = echo_and_client(&world).await?;
    let before = echo_service.served();
    world.inject(MessageFault::duplicate().kind("REQ").subject("echo.echo"));
    echo.echo("once".to_owned()).await?;
    let service = echo_service.clone();
    eventually("the duplicate ran", Duration::from_secs(2), || service.served() == before + 2).await?;
    let violation = requests_handled_at_most_once(world.timeline()).err().ok_or("the duplicate was not caught")?;
    check(violation.message.contains("echo-1 received one echo.echo request 2 times"), violation.to_string())
}

/// A handler that always fails, with `retry = 2`.
#[derive(Debug, Clone, Default)]
struct Flaky {
    runs: Arc<AtomicUsize>,
}

#[lymph::interface(name = "flaky")]
impl Flaky {
    /// Always fails.
    #[event("job.run", retry = 2)]
    async fn run(&self, _event: Event) -> lymph::Result<()> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Err(Error::raise("Boom", "always"))
    }
}

/// `retry = 2` runs a failing handler 3 times per event, no more: the checker accepts 3 and
/// reports a bound of 2.
#[lymph::test(seeds = 4)]
async fn deliveries_at_most_bounds_retries(world: World) -> Result {
    let flaky = Flaky::default();
    let factory = flaky.clone();
    world.start("flaky", move || Container::builder().interface(factory.clone())).await?;
    let client = world.client().await?;
    client.emit("job.run", serde_json::json!({ "n": 1 })).await?;
    let runs = flaky.runs.clone();
    eventually("three runs", Duration::from_secs(5), || runs.load(Ordering::SeqCst) == 3).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    check(flaky.runs.load(Ordering::SeqCst) == 3, "the handler ran more than retry + 1 times")?;
    deliveries_at_most(world.timeline(), 3)?;
    let violation = deliveries_at_most(world.timeline(), 2).err().ok_or("three deliveries passed a bound of 2")?;
    check(violation.message.contains("flaky-run 3 times"), violation.to_string())
}

/// The talk's clean run loses no event: each one the broker routed reached the listener's queue's
/// consumer.
#[lymph::test(seeds = 4)]
async fn every_event_delivered_passes_on_a_clean_talk(world: World) -> Result {
    let summary = talk::run(&world, 5).await?;
    check(summary.passed(), summary.to_string())?;
    let published =
        world.timeline().entries().iter().filter(|e| e.kind == "publish" && e.subject == UPPERCASED).count();
    check(published == 5, format!("{published} events routed, expected 5"))?;
    let lost = every_event_delivered(world.timeline())?;
    check(lost.is_empty(), format!("lost in a restart without one: {lost:?}"))
}

/// A dropped event is caught, by its trace id.
#[lymph::test(seeds = 4)]
async fn every_event_delivered_catches_a_dropped_event(world: World) -> Result {
    let talk = talk::start(&world).await?;
    world.inject(MessageFault::drop().kind("EVENT").subject(UPPERCASED));
    let ctx = talk.client.context();
    ctx.client::<EchoClient>().upper("lost".to_owned()).await?;
    let echo: EchoClient = talk.client.client();
    echo.upper("kept".to_owned()).await?;
    let listener = talk.listener.clone();
    eventually("the second event", Duration::from_secs(5), || !listener.received().is_empty()).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let violation = every_event_delivered(world.timeline()).err().ok_or("the dropped event was not caught")?;
    check(violation.trace_ids == [ctx.trace_id().to_owned()], violation.to_string())?;
    check(violation.message.contains("queue listener-on_uppercase was never delivered"), violation.to_string())
}

/// An event queued while the listener is down is lost when the broker restarts: reported as
/// such, not as a violation.
#[lymph::test(seeds = 4)]
async fn every_event_delivered_reports_a_loss_in_a_broker_restart(world: World) -> Result {
    let talk = talk::start(&world).await?;
    let echo: EchoClient = talk.client.client();
    echo.upper("before".to_owned()).await?;
    let listener = talk.listener.clone();
    eventually("the first event", Duration::from_secs(5), || listener.received().len() == 1).await?;
    world.crash("listener");
    let ctx = talk.client.context();
    ctx.client::<EchoClient>().upper("queued".to_owned()).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    world.restart("broker").await?;
    world.restart("listener").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    echo.upper("after".to_owned()).await?;
    let listener = talk.listener.clone();
    eventually("the event emitted after the restart", Duration::from_secs(10), || listener.received().len() == 2)
        .await?;
    let lost = every_event_delivered(world.timeline())?;
    check(lost.len() == 1, format!("lost in the restart: {lost:?}"))?;
    check(lost[0].trace_id.as_deref() == Some(ctx.trace_id()), lost[0].to_string())?;
    check(lost[0].queue == "listener-on_uppercase" && lost[0].lost > lost[0].published, lost[0].to_string())?;
    check(lost[0].cause == LossCause::BrokerRestart, lost[0].to_string())
}

/// Counts the events it handles by id; not idempotent, so a redelivered or duplicated event
/// counts twice.
#[derive(Debug, Clone, Default)]
struct Tally {
    counts: Arc<std::sync::Mutex<std::collections::BTreeMap<i64, u32>>>,
}

#[lymph::interface(name = "tally")]
impl Tally {
    /// Counts the event's `n`.
    #[event("tallied")]
    async fn count(&self, event: Event) -> lymph::Result<()> {
        let n = event["n"].as_i64().unwrap_or(-1);
        *self.counts.lock().expect("counts").entry(n).or_insert(0) += 1;
        Ok(())
    }
}

/// Emits `tallied` events 0 to 2 for a [`Tally`] with the invariant that each is counted once.
async fn tally_three(world: &World) -> Result<Tally> {
    let tally = Tally::default();
    let factory = tally.clone();
    world.start("tally", move || Container::builder().interface(factory.clone())).await?;
    let counts = tally.counts.clone();
    world.invariant("each event counted once", move || {
        match counts.lock().expect("counts").iter().find(|(_, times)| **times > 1) {
            Some((n, times)) => Err(format!("event {n} was counted {times} times")),
            None => Ok(()),
        }
    });
    let client = world.client().await?;
    for n in 0..3 {
        client.emit("tallied", serde_json::json!({ "n": n })).await?;
    }
    let counts = tally.counts.clone();
    eventually("three events counted", Duration::from_secs(10), || counts.lock().expect("counts").len() == 3).await?;
    Ok(tally)
}

/// A user invariant holds at every step of a clean run.
#[lymph::test(seeds = 4)]
async fn a_user_invariant_holds_on_a_clean_run(world: World) -> Result {
    tally_three(&world).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    check(!world.timeline().entries().iter().any(|e| e.kind == "invariant"), "an invariant entry on a clean run")
}

/// A user invariant catches the non-idempotent handler the moment a duplicated event is counted
/// twice: the run ends there, naming the invariant, its message and the simulated time.
#[test]
fn a_user_invariant_catches_a_handler_that_is_not_idempotent() {
    let runner = lymph::testing::Runner::new(
        "checks::a_user_invariant_catches_a_handler_that_is_not_idempotent",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_CRATE_NAME"),
    );
    for seed in 0..4 {
        let report = runner.run_seed(seed, &|world: World| async move {
            world.inject(MessageFault::duplicate().kind("EVENT").subject("tallied").times(1));
            tally_three(&world).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok::<(), Box<dyn std::error::Error>>(())
        });
        let failure = report.outcome.expect_err("the duplicated event was not caught");
        assert!(
            failure.starts_with("invariant \"each event counted once\" broken at ")
                && failure.ends_with(": event 0 was counted 2 times"),
            "seed {seed}: {failure}"
        );
        let entries = report.timeline.entries();
        let noted = entries.iter().find(|e| e.kind == "invariant").expect("no invariant entry");
        assert_eq!(noted.detail, "broken: event 0 was counted 2 times");
        let second =
            entries.iter().filter(|e| e.kind == "deliver" && e.subject == "tallied").nth(1).expect("deliveries");
        assert!(
            noted.time >= second.time,
            "noted at {:?}, before the second delivery at {:?}",
            noted.time,
            second.time
        );
    }
}

/// Shows each news event for a second before it settles it; every instance gets every event.
#[derive(Debug, Clone, Default)]
struct Board {
    shown: Arc<AtomicUsize>,
}

#[lymph::interface(name = "board")]
impl Board {
    /// Shows the event.
    #[event("news", broadcast)]
    async fn show(&self, _event: Event) -> lymph::Result<()> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.shown.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A host with a broadcast subscription is cut off from the broker while events are published,
/// and crashes: when the broker learns that the connection is gone, it cancels the consumer and
/// deletes its queue, as RabbitMQ deletes auto-delete queues, and the events that never reached
/// the host go with the queue. The checker returns them as lost with their queue, not as a
/// violation; the other instance showed every event, and the crashed one, restarted, subscribes
/// again.
#[lymph::test(seeds = 4)]
async fn every_event_delivered_reports_events_lost_with_a_broadcast_queue(world: World) -> Result {
    let (one, two) = (Board::default(), Board::default());
    let (factory_one, factory_two) = (one.clone(), two.clone());
    world.start("board-1", move || Container::builder().interface(factory_one.clone())).await?;
    world.start("board-2", move || Container::builder().interface(factory_two.clone())).await?;
    let client = world.client().await?;
    // The broker sends board-1 its events into the partition; board-1 crashes before it heals,
    // and the broker learns that its consumer is gone when it does.
    world.partition("board-1", "broker");
    for n in 0..3 {
        client.emit("news", serde_json::json!({ "n": n })).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    world.crash("board-1");
    world.repair("board-1", "broker");
    let shown = two.shown.clone();
    eventually("board-2 showed every event", Duration::from_secs(10), || shown.load(Ordering::SeqCst) == 3).await?;
    world.restart("board-1").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    client.emit("news", serde_json::json!({ "n": 3 })).await?;
    let shown = one.shown.clone();
    eventually("board-1 shows what comes after", Duration::from_secs(10), || shown.load(Ordering::SeqCst) == 1).await?;
    let lost = every_event_delivered(world.timeline())?;
    check(lost.len() == 3, format!("expected the 3 events of board-1's queue: {lost:?}"))?;
    for event in &lost {
        check(event.cause == LossCause::QueueDeleted && event.event_type == "news", event.to_string())?;
        check(event.queue.starts_with("board-") && event.lost > event.published, event.to_string())?;
    }
    let discards = world.timeline().entries().iter().filter(|e| e.kind == "discard").count();
    check(discards == 3, format!("{discards} discard entries"))
}
