//! The contract of [`EventSystem`]: what RabbitMQ does for lymph, and every backend must do too.
//!
//! The checks pin RabbitMQ's behaviour as lymph 0.15 uses it: events are published to a topic
//! exchange with their type as the routing key; each subscription is a queue bound with its
//! patterns, shared by the instances of a service (non-durable, not auto-deleted) or, for
//! broadcast and once subscriptions, a queue of its own deleted with its consumer. Sources: the
//! RabbitMQ tutorials ("Work Queues": round-robin dispatch, acknowledgements and redelivery;
//! "Topics": `*` and `#`), the AMQP 0-9-1 model ("Exchanges and Queues": unroutable messages
//! are dropped, auto-delete and durable queues), "Detecting Dead TCP Connections with
//! Heartbeats", and lymph 0.15's `lymph.events.kombu.KombuEventSystem`.
//!
//! Backends: [`embedded`] (the in-process [`MemoryEvents`](lymph_core::memory::MemoryEvents)),
//! [`simulated`] (the simulated RabbitMQ in a turmoil world) and, with `real-infra`, `real`
//! (RabbitMQ, each client behind a fault proxy, each check in a virtual host of its own).

use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use lymph_core::event::{Deliveries, Delivery, EventSystem, MAX_NAME_LEN, Subscription};
use lymph_core::{Error, Event, Value};

use super::{Check, Faults, check, ensure};

pub mod embedded;
#[cfg(feature = "real-infra")]
pub mod real;
pub mod simulated;

/// An event system client made by an [`EventsHarness`]: its index among the harness's clients
/// and its connection.
#[derive(Clone, Debug)]
pub struct Client {
    /// 0 for the first client a harness made, 1 for the next, and so on.
    pub index: usize,
    /// The client's connection to the broker.
    pub events: Arc<dyn EventSystem>,
}

impl std::ops::Deref for Client {
    type Target = dyn EventSystem;

    fn deref(&self) -> &Self::Target {
        &*self.events
    }
}

/// What the event checks need of a backend.
///
/// The fault methods are only called when [`Faults::lacks`] says the backend has that fault.
pub trait EventsHarness: Faults {
    /// A new client, with a connection of its own.
    fn client(&self) -> LocalBoxFuture<'_, Result<Client, Error>>;

    /// `client`'s process dies: its connection drops, nothing is settled or cancelled. The
    /// client is not used afterwards.
    fn crash<'a>(&'a self, client: &'a Client) -> LocalBoxFuture<'a, ()>;

    /// Cuts `client` off from the broker both ways for `duration`, then heals the link.
    fn cut<'a>(&'a self, client: &'a Client, duration: Duration) -> LocalBoxFuture<'a, ()>;

    /// Restarts the broker: its queues are not durable, so they are gone.
    fn restart_server(&self) -> LocalBoxFuture<'_, Result<(), String>>;
}

type H = dyn EventsHarness;

/// Every check of the events contract.
pub fn checks() -> &'static [Check<H>] {
    CHECKS
}

const CHECKS: &[Check<H>] = &[
    check!(
        every_queue_bound_to_a_type_gets_each_event_once,
        "a topic exchange routes a message to every queue bound with a matching key, one copy \
         each (AMQP 0-9-1 model, Exchanges)",
        []
    ),
    check!(
        consumers_of_one_queue_share_its_events,
        "messages of a queue with several consumers are dispatched round-robin, each to one \
         consumer (RabbitMQ tutorial 2, Work Queues); lymph's instances of a service share a queue",
        []
    ),
    check!(
        an_event_no_queue_is_bound_to_is_lost,
        "a message the exchange routes to no queue is dropped (no mandatory flag, as lymph \
         publishes); a queue declared later does not get it",
        []
    ),
    check!(
        a_named_queue_keeps_events_while_it_has_no_consumer,
        "a queue that is not auto-delete outlives its consumers and keeps what is routed to it \
         (AMQP 0-9-1 model, Queue Properties); lymph's service queues are not auto-delete",
        []
    ),
    check!(
        a_broadcast_queue_goes_with_its_consumer,
        "an auto-delete queue is deleted when its last consumer is cancelled (AMQP 0-9-1 model); \
         lymph's broadcast subscriptions get such a queue of their own",
        []
    ),
    check!(
        patterns_match_as_amqp_topics,
        "in a topic binding `*` matches one dot-separated word and `#` zero or more (RabbitMQ \
         tutorial 5, Topics)",
        []
    ),
    check!(
        a_rejected_event_is_not_delivered_again,
        "basic.reject without requeue drops the message (AMQP 0-9-1 reference); lymph rejects \
         an event whose handler failed for good",
        []
    ),
    check!(
        a_retried_event_comes_back_to_its_queue_only,
        "lymph 0.15 retries through its retry exchange, keyed by queue name: only the retrying \
         subscription's queue gets the event again",
        []
    ),
    check!(
        a_delayed_event_arrives_after_its_delay,
        "lymph 0.15 delays an event in a `<type>-wait_<ms>` queue whose TTL dead-letters it into \
         the exchange: it is routed when the delay has passed, not before",
        []
    ),
    check!(
        names_longer_than_255_bytes_are_refused,
        "AMQP carries routing keys and queue names as short strings of at most 255 bytes \
         (AMQP 0-9-1 specification, shortstr); lymph-rs refuses longer ones in every backend",
        []
    ),
    check!(
        an_unsettled_delivery_goes_to_another_consumer_when_its_consumer_crashes,
        "a message delivered and not acknowledged is requeued when its consumer's connection \
         closes, and delivered to another consumer (RabbitMQ tutorial 2, Message acknowledgment)",
        [Crash]
    ),
    check!(
        a_cut_shorter_than_the_heartbeat_loses_and_repeats_nothing,
        "TCP delays what a partition holds and the connection outlives a partition shorter than \
         the heartbeat timeout (60 s, RabbitMQ's default; Detecting Dead TCP Connections with \
         Heartbeats): every event arrives once, after the cut",
        [Cut]
    ),
    check!(
        a_server_restart_loses_queued_events_and_clients_recover,
        "lymph's queues are not durable, so a broker restart deletes them with their messages \
         (AMQP 0-9-1 model, Queue Durability); clients reconnect and declare them again",
        [RestartServer]
    ),
];

/// How long a check waits for what must arrive.
const WAIT: Duration = Duration::from_secs(10);
/// How long a check watches for what must not arrive.
const QUIET: Duration = Duration::from_secs(2);

fn failed(what: &str) -> impl Fn(Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn subscription(queue: &str, patterns: &[&str]) -> Subscription {
    Subscription {
        queue: queue.to_owned(),
        patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        broadcast: false,
        once: false,
    }
}

fn event(event_type: &str, n: i64) -> Event {
    Event::new(event_type, Value::from(n), None)
}

async fn emit(client: &Client, event_type: &str, n: i64) -> Result<(), String> {
    client.emit(event(event_type, n), Duration::ZERO).await.map_err(failed("emit"))
}

/// The next delivery, within [`WAIT`].
async fn next(deliveries: &mut Deliveries, what: &str) -> Result<Delivery, String> {
    match tokio::time::timeout(WAIT, deliveries.recv()).await {
        Ok(Some(delivery)) => Ok(delivery),
        Ok(None) => Err(format!("{what}: the subscription ended")),
        Err(_) => Err(format!("{what}: nothing arrived within {WAIT:?}")),
    }
}

/// The body of the next delivery, acknowledged.
async fn next_acked(deliveries: &mut Deliveries, what: &str) -> Result<i64, String> {
    let delivery = next(deliveries, what).await?;
    let n = delivery.event.body.as_i64().ok_or_else(|| format!("{what}: a body that is not a number"))?;
    delivery.acker.ack().await.map_err(failed("ack"))?;
    Ok(n)
}

/// Fails if anything arrives within [`QUIET`].
async fn nothing_more(deliveries: &mut Deliveries, what: &str) -> Result<(), String> {
    match tokio::time::timeout(QUIET, deliveries.recv()).await {
        Ok(Some(delivery)) => Err(format!("{what}: {:?} arrived", delivery.event.body)),
        Ok(None) | Err(_) => Ok(()),
    }
}

async fn two_clients(h: &H) -> Result<(Client, Client), String> {
    Ok((h.client().await.map_err(failed("client"))?, h.client().await.map_err(failed("client"))?))
}

async fn every_queue_bound_to_a_type_gets_each_event_once(h: &H) -> Result<(), String> {
    let (a, b) = two_clients(h).await?;
    let mut one = a.subscribe(subscription("one-news", &["news"])).await.map_err(failed("subscribe one"))?;
    let mut two = a.subscribe(subscription("two-news", &["news"])).await.map_err(failed("subscribe two"))?;
    emit(&b, "news", 1).await?;
    ensure!(next_acked(&mut one, "queue one").await? == 1, "queue one got another event");
    ensure!(next_acked(&mut two, "queue two").await? == 1, "queue two got another event");
    nothing_more(&mut one, "a second copy in queue one").await?;
    nothing_more(&mut two, "a second copy in queue two").await
}

async fn consumers_of_one_queue_share_its_events(h: &H) -> Result<(), String> {
    let (a, b) = two_clients(h).await?;
    let publisher = h.client().await.map_err(failed("client"))?;
    let mut on_a = a.subscribe(subscription("shared-work", &["work"])).await.map_err(failed("subscribe a"))?;
    let mut on_b = b.subscribe(subscription("shared-work", &["work"])).await.map_err(failed("subscribe b"))?;
    for n in 0..6 {
        emit(&publisher, "work", n).await?;
    }
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() < 6 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            biased;
            Some(delivery) = on_a.recv() => seen.push(delivery),
            Some(delivery) = on_b.recv() => seen.push(delivery),
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
    let mut bodies: Vec<i64> = seen.iter().filter_map(|d| d.event.body.as_i64()).collect();
    for delivery in seen {
        delivery.acker.ack().await.map_err(failed("ack"))?;
    }
    bodies.sort_unstable();
    ensure!(bodies == [0, 1, 2, 3, 4, 5], "the two consumers got {bodies:?} between them, not each event once");
    nothing_more(&mut on_a, "a copy for a").await?;
    nothing_more(&mut on_b, "a copy for b").await
}

async fn an_event_no_queue_is_bound_to_is_lost(h: &H) -> Result<(), String> {
    let (a, b) = two_clients(h).await?;
    emit(&b, "unheard", 1).await?;
    let mut late = a.subscribe(subscription("late-unheard", &["unheard"])).await.map_err(failed("subscribe"))?;
    emit(&b, "unheard", 2).await?;
    let n = next_acked(&mut late, "the event after the queue was declared").await?;
    ensure!(n == 2, "the queue declared afterwards got event {n}, published before it existed");
    nothing_more(&mut late, "the event published before the queue").await
}

async fn a_named_queue_keeps_events_while_it_has_no_consumer(h: &H) -> Result<(), String> {
    let (a, b) = two_clients(h).await?;
    let first = a.subscribe(subscription("kept-jobs", &["jobs"])).await.map_err(failed("subscribe"))?;
    drop(first);
    // The consumer is cancelled; the queue stays.
    tokio::time::sleep(Duration::from_millis(500)).await;
    emit(&b, "jobs", 7).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut again = a.subscribe(subscription("kept-jobs", &["jobs"])).await.map_err(failed("subscribe again"))?;
    let n = next_acked(&mut again, "the event queued while nobody consumed").await?;
    ensure!(n == 7, "got event {n}");
    Ok(())
}

async fn a_broadcast_queue_goes_with_its_consumer(h: &H) -> Result<(), String> {
    let (a, b) = two_clients(h).await?;
    let broadcast = Subscription { broadcast: true, ..subscription("board-news", &["flash"]) };
    let mut first = a.subscribe(broadcast.clone()).await.map_err(failed("subscribe"))?;
    emit(&b, "flash", 1).await?;
    ensure!(next_acked(&mut first, "the first broadcast").await? == 1, "another event");
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    emit(&b, "flash", 2).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut second = a.subscribe(broadcast).await.map_err(failed("subscribe again"))?;
    emit(&b, "flash", 3).await?;
    let n = next_acked(&mut second, "the broadcast after subscribing again").await?;
    ensure!(n == 3, "the new broadcast queue got event {n}, published while no broadcast queue was there");
    nothing_more(&mut second, "another event").await
}

async fn patterns_match_as_amqp_topics(h: &H) -> Result<(), String> {
    let (a, b) = two_clients(h).await?;
    let mut star = a.subscribe(subscription("star-orders", &["order.*"])).await.map_err(failed("subscribe *"))?;
    let mut hash = a.subscribe(subscription("hash-orders", &["order.#"])).await.map_err(failed("subscribe #"))?;
    emit(&b, "order.created", 1).await?;
    emit(&b, "order.created.late", 2).await?;
    emit(&b, "other.created", 3).await?;
    emit(&b, "order", 4).await?;
    ensure!(next_acked(&mut star, "order.* gets order.created").await? == 1, "order.* got another event first");
    nothing_more(&mut star, "order.* gets nothing else").await?;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_acked(&mut hash, "order.# gets order.created, order.created.late and order").await?);
    }
    ensure!(got == [1, 2, 4], "order.# got {got:?}");
    nothing_more(&mut hash, "order.# gets nothing else").await
}

async fn a_rejected_event_is_not_delivered_again(h: &H) -> Result<(), String> {
    let (a, b) = two_clients(h).await?;
    let mut queue = a.subscribe(subscription("rejecting-bad", &["bad"])).await.map_err(failed("subscribe"))?;
    emit(&b, "bad", 1).await?;
    let delivery = next(&mut queue, "the event to reject").await?;
    delivery.acker.reject().await.map_err(failed("reject"))?;
    emit(&b, "bad", 2).await?;
    let n = next_acked(&mut queue, "the next event").await?;
    ensure!(n == 2, "got event {n} again after rejecting it");
    nothing_more(&mut queue, "the rejected event").await
}

async fn a_retried_event_comes_back_to_its_queue_only(h: &H) -> Result<(), String> {
    let (a, b) = two_clients(h).await?;
    let mut retrying = a.subscribe(subscription("retrying-task", &["task"])).await.map_err(failed("subscribe"))?;
    let mut other = a.subscribe(subscription("other-task", &["task"])).await.map_err(failed("subscribe"))?;
    emit(&b, "task", 1).await?;
    ensure!(next_acked(&mut other, "the other queue's copy").await? == 1, "another event");
    let delivery = next(&mut retrying, "the event to retry").await?;
    let mut retry = delivery.event.clone();
    retry.headers.insert("retry_count", Value::from(1i64));
    delivery.acker.retry(retry).await.map_err(failed("retry"))?;
    let again = next(&mut retrying, "the retried event").await?;
    let count = again.event.headers.get("retry_count").and_then(Value::as_i64);
    ensure!(count == Some(1), "the retried event has retry_count {count:?}");
    again.acker.ack().await.map_err(failed("ack"))?;
    nothing_more(&mut other, "a retried copy in the other queue").await?;
    nothing_more(&mut retrying, "a third delivery").await
}

async fn a_delayed_event_arrives_after_its_delay(h: &H) -> Result<(), String> {
    let (a, b) = two_clients(h).await?;
    let mut queue = a.subscribe(subscription("waiting-reminder", &["reminder"])).await.map_err(failed("subscribe"))?;
    let delay = Duration::from_secs(2);
    let sent = tokio::time::Instant::now();
    b.emit(event("reminder", 1), delay).await.map_err(failed("emit with a delay"))?;
    let n = next_acked(&mut queue, "the delayed event").await?;
    let waited = sent.elapsed();
    ensure!(n == 1, "got event {n}");
    ensure!(waited >= delay, "the event delayed by {delay:?} arrived after {waited:?}");
    Ok(())
}

async fn names_longer_than_255_bytes_are_refused(h: &H) -> Result<(), String> {
    let a = h.client().await.map_err(failed("client"))?;
    let long = "x".repeat(MAX_NAME_LEN + 1);
    let longest = "y".repeat(MAX_NAME_LEN);
    ensure!(
        matches!(a.emit(event(&long, 1), Duration::ZERO).await, Err(Error::Config(_))),
        "an event type of {} bytes was not refused with a configuration error",
        long.len()
    );
    ensure!(
        matches!(a.subscribe(subscription(&long, &["x"])).await, Err(Error::Config(_))),
        "a queue name of {} bytes was not refused with a configuration error",
        long.len()
    );
    let mut queue = a.subscribe(subscription("longest", &[longest.as_str()])).await.map_err(failed("subscribe"))?;
    emit(&a, &longest, 1).await?;
    ensure!(next_acked(&mut queue, "an event type of 255 bytes").await? == 1, "another event");
    Ok(())
}

async fn an_unsettled_delivery_goes_to_another_consumer_when_its_consumer_crashes(h: &H) -> Result<(), String> {
    let (a, b) = two_clients(h).await?;
    let publisher = h.client().await.map_err(failed("client"))?;
    let mut on_a = a.subscribe(subscription("crashing-work", &["chore"])).await.map_err(failed("subscribe a"))?;
    emit(&publisher, "chore", 1).await?;
    let held = next(&mut on_a, "the delivery a holds").await?;
    let mut on_b = b.subscribe(subscription("crashing-work", &["chore"])).await.map_err(failed("subscribe b"))?;
    h.crash(&a).await;
    let n = next_acked(&mut on_b, "the redelivery to b").await?;
    ensure!(n == 1, "b got event {n}");
    drop(held);
    nothing_more(&mut on_b, "a second redelivery").await
}

async fn a_cut_shorter_than_the_heartbeat_loses_and_repeats_nothing(h: &H) -> Result<(), String> {
    let (a, b) = two_clients(h).await?;
    let mut on_a = a.subscribe(subscription("cut-feed", &["feed"])).await.map_err(failed("subscribe"))?;
    emit(&b, "feed", 0).await?;
    ensure!(next_acked(&mut on_a, "the event before the cut").await? == 0, "another event");
    let cut = h.cut(&a, Duration::from_secs(3));
    let publish = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        emit(&b, "feed", 1).await?;
        emit(&b, "feed", 2).await
    };
    let ((), published) = tokio::join!(cut, publish);
    published?;
    let got = [next_acked(&mut on_a, "the first event of the cut").await?, next_acked(&mut on_a, "the second").await?];
    ensure!(got == [1, 2], "after the cut the consumer got {got:?}");
    nothing_more(&mut on_a, "a repeated event").await
}

async fn a_server_restart_loses_queued_events_and_clients_recover(h: &H) -> Result<(), String> {
    let (a, b) = two_clients(h).await?;
    let first = a.subscribe(subscription("restart-mail", &["mail"])).await.map_err(failed("subscribe"))?;
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    emit(&b, "mail", 1).await?;
    h.restart_server().await?;
    // Clients reconnect on their own; a call may fail until they have.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut queue = loop {
        match a.subscribe(subscription("restart-mail", &["mail"])).await {
            Ok(queue) => break queue,
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%error, "subscribing after the restart");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => return Err(format!("subscribing after the restart: {error}")),
        }
    };
    loop {
        match b.emit(event("mail", 2), Duration::ZERO).await {
            Ok(()) => break,
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%error, "emitting after the restart");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => return Err(format!("emitting after the restart: {error}")),
        }
    }
    let n = next_acked(&mut queue, "the event emitted after the restart").await?;
    ensure!(n == 2, "got event {n}, queued before the restart");
    nothing_more(&mut queue, "the event queued before the restart").await
}
