//! `AmqpEvents` against the RabbitMQ of `scripts/infra.sh up` (127.0.0.1:5672, guest/guest).
//!
//! Every test uses event types and queue names of its own, so the tests run in parallel and
//! again and again on one broker; the queues they leave behind are deleted.
#![cfg(feature = "real-infra")]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use lymph_core::event::{Deliveries, Delivery, Event, EventSystem, Subscription};
use lymph_core::{Error, Value};
use lymph_transports::{AmqpConfig, AmqpEvents};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// How long a test waits for an event that must arrive.
const ARRIVES: Duration = Duration::from_secs(5);
/// How long a test waits to be sure that an event does not arrive.
const QUIET: Duration = Duration::from_millis(300);

/// A name no other test (or run) uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand::random::<u32>())
}

async fn connect() -> anyhow::Result<AmqpEvents> {
    AmqpEvents::connect(AmqpConfig::new(URL)).await.context("is RabbitMQ up? run `scripts/infra.sh up`")
}

/// A plain lapin channel, to look at the broker behind `AmqpEvents`'s back.
async fn raw_channel() -> anyhow::Result<(Connection, Channel)> {
    let connection = Connection::connect(URL, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

async fn delete_queues(names: &[&str]) -> anyhow::Result<()> {
    let (_connection, channel) = raw_channel().await?;
    for name in names {
        channel.queue_delete((*name).into(), QueueDeleteOptions::default()).await?;
    }
    Ok(())
}

/// The number of ready messages and of consumers of `queue`.
async fn queue_counts(queue: &str) -> anyhow::Result<(u32, u32)> {
    let (_connection, channel) = raw_channel().await?;
    let declared = channel
        .queue_declare(queue.into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())
        .await?;
    Ok((declared.message_count(), declared.consumer_count()))
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
    let mut event = Event::new(event_type, Value::Map(vec![(Value::from("n"), Value::from(n))]), Some(unique("trace")));
    event.source = "amqp-test".to_owned();
    event
}

fn n_of(delivery: &Delivery) -> i64 {
    delivery.event.get("n").and_then(Value::as_i64).unwrap_or(-1)
}

async fn recv(deliveries: &mut Deliveries) -> anyhow::Result<Delivery> {
    match tokio::time::timeout(ARRIVES, deliveries.recv()).await {
        Ok(Some(delivery)) => Ok(delivery),
        Ok(None) => bail!("the deliveries ended"),
        Err(_) => bail!("no event within {ARRIVES:?}"),
    }
}

async fn assert_quiet(deliveries: &mut Deliveries) -> anyhow::Result<()> {
    if let Ok(Some(delivery)) = tokio::time::timeout(QUIET, deliveries.recv()).await {
        bail!("unexpected delivery {:?}", delivery.event);
    }
    Ok(())
}

async fn emit(events: &AmqpEvents, event: Event) -> anyhow::Result<()> {
    events.emit(event, Duration::ZERO).await?;
    Ok(())
}

/// Names longer than an AMQP short string (255 bytes) are a clear error, never a panic inside
/// lapin: an event type, the wait queue of a delayed event, a queue name, a broadcast queue with
/// its unique suffix.
#[tokio::test]
async fn names_longer_than_an_amqp_short_string_are_errors() -> anyhow::Result<()> {
    let events = connect().await?;
    for (event_type, delay) in [("t".repeat(300), Duration::ZERO), ("t".repeat(250), Duration::from_secs(1))] {
        let emitted = events.emit(event(&event_type, 1), delay).await;
        assert!(matches!(&emitted, Err(Error::Config(m)) if m.contains("at most 255")), "{emitted:?}");
    }
    for subscription in [
        subscription(&"q".repeat(256), &["a"]),
        Subscription { broadcast: true, ..subscription(&"q".repeat(230), &["a"]) },
    ] {
        let subscribed = events.subscribe(subscription).await;
        assert!(matches!(&subscribed, Err(Error::Config(m)) if m.contains("at most 255")), "{subscribed:?}");
    }
    // The longest names that fit still work.
    let queue = unique("q");
    let queue = format!("{queue}{}", "q".repeat(255 - queue.len()));
    let event_type = "t".repeat(255);
    let mut deliveries = events.subscribe(subscription(&queue, &[&event_type])).await?;
    emit(&events, event(&event_type, 7)).await?;
    let delivery = recv(&mut deliveries).await?;
    assert_eq!(n_of(&delivery), 7);
    delivery.acker.ack().await?;
    delete_queues(&[&queue]).await?;
    Ok(())
}

#[tokio::test]
async fn competing_consumers_share_a_queue_round_robin() -> anyhow::Result<()> {
    let events = connect().await?;
    let (event_type, queue) = (unique("rr.event."), unique("rr-queue-"));
    let mut a = events.subscribe(subscription(&queue, &[&event_type])).await?;
    let mut b = events.subscribe(subscription(&queue, &[&event_type])).await?;
    for n in 0..10 {
        emit(&events, event(&event_type, n)).await?;
    }
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    while got_a.len() + got_b.len() < 10 {
        tokio::select! {
            delivery = recv(&mut a) => { let d = delivery?; got_a.push(n_of(&d)); d.acker.ack().await?; }
            delivery = recv(&mut b) => { let d = delivery?; got_b.push(n_of(&d)); d.acker.ack().await?; }
        }
    }
    assert_quiet(&mut a).await?;
    assert_quiet(&mut b).await?;
    assert_eq!((got_a.len(), got_b.len()), (5, 5), "a got {got_a:?}, b got {got_b:?}");
    let all: BTreeSet<i64> = got_a.iter().chain(&got_b).copied().collect();
    assert_eq!(all, (0..10).collect());
    delete_queues(&[&queue]).await
}

#[tokio::test]
async fn broadcast_subscriptions_each_get_every_event() -> anyhow::Result<()> {
    let events = connect().await?;
    let (event_type, queue) = (unique("bc.event."), unique("bc-queue-"));
    let broadcast = Subscription { broadcast: true, ..subscription(&queue, &[&event_type]) };
    let mut a = events.subscribe(broadcast.clone()).await?;
    let mut b = events.subscribe(broadcast).await?;
    for n in 0..3 {
        emit(&events, event(&event_type, n)).await?;
    }
    for deliveries in [&mut a, &mut b] {
        for n in 0..3 {
            let delivery = recv(deliveries).await?;
            assert_eq!(n_of(&delivery), n);
            delivery.acker.ack().await?;
        }
        assert_quiet(deliveries).await?;
    }
    // The plain queue name was never declared: broadcast queues have a uuid suffix.
    ensure!(queue_counts(&queue).await.is_err(), "{queue} should not exist");
    Ok(())
}

#[tokio::test]
async fn once_subscription_ends_after_its_first_event() -> anyhow::Result<()> {
    let events = connect().await?;
    let (event_type, queue) = (unique("once.event."), unique("once-queue-"));
    let mut once = events.subscribe(Subscription { once: true, ..subscription(&queue, &[&event_type]) }).await?;
    emit(&events, event(&event_type, 1)).await?;
    emit(&events, event(&event_type, 2)).await?;
    let delivery = recv(&mut once).await?;
    assert_eq!(n_of(&delivery), 1);
    delivery.acker.ack().await?;
    let end = tokio::time::timeout(ARRIVES, once.recv()).await.context("once deliveries did not end")?;
    ensure!(end.is_none(), "a once subscription got a second event");
    Ok(())
}

#[tokio::test]
async fn topic_patterns_match_one_word_with_star_and_any_with_hash() -> anyhow::Result<()> {
    let events = connect().await?;
    let root = unique("topic");
    let (star_queue, hash_queue) = (unique("star-"), unique("hash-"));
    let mut star = events.subscribe(subscription(&star_queue, &[&format!("{root}.*")])).await?;
    let mut hash = events.subscribe(subscription(&hash_queue, &[&format!("{root}.#")])).await?;
    let types = [root.clone(), format!("{root}.a"), format!("{root}.a.b"), format!("other{root}.a")];
    for (n, event_type) in types.iter().enumerate() {
        emit(&events, event(event_type, i64::try_from(n)?)).await?;
    }
    let delivery = recv(&mut star).await?;
    assert_eq!(delivery.event.event_type, format!("{root}.a"));
    delivery.acker.ack().await?;
    assert_quiet(&mut star).await?;
    for expected in &types[..3] {
        let delivery = recv(&mut hash).await?;
        assert_eq!(&delivery.event.event_type, expected);
        delivery.acker.ack().await?;
    }
    assert_quiet(&mut hash).await?;
    delete_queues(&[&star_queue, &hash_queue]).await
}

#[tokio::test]
async fn emitted_events_have_lymphs_wire_form() -> anyhow::Result<()> {
    let events = connect().await?;
    let event_type = unique("wire.event.");
    let (_connection, channel) = raw_channel().await?;
    let queue = channel.queue_declare("".into(), QueueDeclareOptions::exclusive(), FieldTable::default()).await?;
    let queue_name = queue.name().clone();
    channel
        .queue_bind(
            queue_name.clone(),
            "lymph".into(),
            event_type.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer =
        channel.basic_consume(queue_name, "".into(), BasicConsumeOptions::default(), FieldTable::default()).await?;

    let sent = event(&event_type, 7);
    emit(&events, sent.clone()).await?;
    let message = tokio::time::timeout(ARRIVES, consumer.next()).await?.context("consumer ended")??;
    assert_eq!(message.exchange.as_str(), "lymph");
    assert_eq!(message.routing_key.as_str(), event_type);
    let properties = &message.properties;
    assert_eq!(properties.content_type().as_ref().map(|s| s.as_str()), Some("application/lymph+x-msgpack"));
    assert_eq!(properties.content_encoding().as_ref().map(|s| s.as_str()), Some("binary"));
    assert_eq!(*properties.delivery_mode(), Some(2));
    assert_eq!(*properties.priority(), Some(0));
    assert_eq!(properties.headers().as_ref().map(|h| h.inner().len()), Some(0));
    assert_eq!(*properties.message_id(), None);

    // lymph's 4-key map, in lymph's order.
    let Value::Map(entries) = Value::from_msgpack(&message.data)? else { bail!("the body is not a map") };
    let keys: Vec<&str> = entries.iter().filter_map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["type", "headers", "body", "source"]);
    assert_eq!(message.data[0], 0x84, "a fixmap of 4");
    assert_eq!(Event::from_msgpack(&message.data)?, sent);
    message.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}

#[tokio::test]
async fn retry_goes_through_lymph_retry_to_this_queue_only() -> anyhow::Result<()> {
    let events = connect().await?;
    let event_type = unique("retry.event.");
    let (queue, other_queue) = (unique("retry-queue-"), unique("retry-other-"));
    let mut deliveries = events.subscribe(subscription(&queue, &[&event_type])).await?;
    let mut other = events.subscribe(subscription(&other_queue, &[&event_type])).await?;
    emit(&events, event(&event_type, 3)).await?;

    let first = recv(&mut deliveries).await?;
    assert_eq!(first.event.retry_count(), None);
    let mut again = first.event.clone();
    again.headers.insert("retry_count", Value::from(1));
    first.acker.retry(again.clone()).await?;

    let second = recv(&mut deliveries).await?;
    assert_eq!(second.event, again);
    assert_eq!(second.event.retry_count(), Some(1));
    second.acker.ack().await?;

    let original = recv(&mut other).await?;
    assert_eq!(original.event.retry_count(), None);
    original.acker.ack().await?;
    assert_quiet(&mut other).await?;
    assert_quiet(&mut deliveries).await?;
    delete_queues(&[&queue, &other_queue]).await
}

#[tokio::test]
async fn rejected_events_leave_the_queue_and_unsettled_ones_come_back() -> anyhow::Result<()> {
    let events = connect().await?;
    let (event_type, queue) = (unique("reject.event."), unique("reject-queue-"));
    let mut deliveries = events.subscribe(subscription(&queue, &[&event_type])).await?;
    emit(&events, event(&event_type, 1)).await?;
    emit(&events, event(&event_type, 2)).await?;
    let rejected = recv(&mut deliveries).await?;
    assert_eq!(n_of(&rejected), 1);
    rejected.acker.reject().await?;
    let unsettled = recv(&mut deliveries).await?;
    assert_eq!(n_of(&unsettled), 2);

    // Ending the subscription cancels the consumer; the unsettled event goes back to the queue,
    // the rejected one does not.
    drop(deliveries);
    drop(unsettled);
    let deadline = Instant::now() + ARRIVES;
    loop {
        let counts = queue_counts(&queue).await?;
        if counts == (1, 0) {
            break;
        }
        ensure!(Instant::now() < deadline, "queue {queue} has (messages, consumers) = {counts:?}, want (1, 0)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut deliveries = events.subscribe(subscription(&queue, &[&event_type])).await?;
    let redelivered = recv(&mut deliveries).await?;
    assert_eq!(n_of(&redelivered), 2);
    redelivered.acker.ack().await?;
    assert_quiet(&mut deliveries).await?;
    delete_queues(&[&queue]).await
}

#[tokio::test]
async fn delayed_events_wait_in_lymphs_wait_queue() -> anyhow::Result<()> {
    let events = connect().await?;
    let (event_type, queue) = (unique("delay.event."), unique("delay-queue-"));
    let mut deliveries = events.subscribe(subscription(&queue, &[&event_type])).await?;
    let delay = Duration::from_millis(700);
    let start = Instant::now();
    events.emit(event(&event_type, 9), delay).await?;
    assert_quiet(&mut deliveries).await?;
    let delivery = recv(&mut deliveries).await?;
    let waited = start.elapsed();
    assert_eq!(n_of(&delivery), 9);
    ensure!(waited >= delay, "the event arrived after {waited:?}, before its delay {delay:?}");
    ensure!(waited < delay + Duration::from_secs(2), "the event arrived late, after {waited:?}");
    delivery.acker.ack().await?;

    // The wait queue exists with exactly lymph's arguments: declaring it again with them is
    // fine, with another TTL the broker refuses (PRECONDITION_FAILED).
    let wait_queue = format!("{event_type}-wait_700");
    let lymph_arguments = |ttl: i32| {
        let mut arguments = FieldTable::default();
        arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("lymph".into()));
        arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(event_type.as_str().into()));
        arguments.insert("x-message-ttl".into(), AMQPValue::LongInt(ttl));
        arguments.insert("x-ha-policy".into(), AMQPValue::LongString("all".into()));
        arguments
    };
    let (_connection, channel) = raw_channel().await?;
    let declared =
        channel.queue_declare(wait_queue.as_str().into(), QueueDeclareOptions::default(), lymph_arguments(700)).await?;
    assert_eq!(declared.message_count(), 0);
    let refused =
        channel.queue_declare(wait_queue.as_str().into(), QueueDeclareOptions::default(), lymph_arguments(701)).await;
    let error = refused.err().context("a wait queue with another TTL was accepted")?;
    ensure!(error.to_string().contains("PRECONDITION_FAILED"), "unexpected error {error}");
    delete_queues(&[&queue, &wait_queue]).await
}

#[tokio::test]
async fn malformed_messages_are_rejected_and_consuming_goes_on() -> anyhow::Result<()> {
    let events = connect().await?;
    let (event_type, queue) = (unique("bad.event."), unique("bad-queue-"));
    let mut deliveries = events.subscribe(subscription(&queue, &[&event_type])).await?;
    let (_connection, channel) = raw_channel().await?;
    for garbage in [&b"\xc1 not msgpack"[..], b"\x93\x01\x02\x03", b""] {
        channel
            .basic_publish(
                "lymph".into(),
                event_type.as_str().into(),
                BasicPublishOptions::default(),
                garbage,
                BasicProperties::default(),
            )
            .await?
            .await?;
    }
    emit(&events, event(&event_type, 5)).await?;
    let delivery = recv(&mut deliveries).await?;
    assert_eq!(n_of(&delivery), 5);
    delivery.acker.ack().await?;
    assert_quiet(&mut deliveries).await?;
    // Nothing is left unacknowledged: once the consumer is gone, the queue is empty.
    drop(deliveries);
    let deadline = Instant::now() + ARRIVES;
    loop {
        let counts = queue_counts(&queue).await?;
        if counts == (0, 0) {
            break;
        }
        ensure!(Instant::now() < deadline, "queue {queue} has (messages, consumers) = {counts:?}, want (0, 0)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    delete_queues(&[&queue]).await
}

#[tokio::test]
async fn queues_have_lymphs_arguments_and_bindings() -> anyhow::Result<()> {
    let events = connect().await?;
    let (event_type, queue) = (unique("decl.event."), unique("decl-queue-"));
    let mut deliveries = events.subscribe(subscription(&queue, &[&event_type])).await?;
    let (_connection, channel) = raw_channel().await?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-ha-policy".into(), AMQPValue::LongString("all".into()));
    // Non-durable, not auto-delete: an equivalent declaration is accepted, a durable one is not.
    let declared = channel.queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), arguments).await?;
    assert_eq!(declared.consumer_count(), 1);
    let durable = channel.queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), FieldTable::default());
    ensure!(durable.await.is_err(), "the queue should not be durable");

    // The retry binding: a message published to lymph_retry with the queue name arrives.
    let (_connection, channel) = raw_channel().await?;
    let sent = event(&event_type, 11);
    channel
        .basic_publish(
            "lymph_retry".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            &sent.to_msgpack(),
            BasicProperties::default(),
        )
        .await?
        .await?;
    let delivery = recv(&mut deliveries).await?;
    assert_eq!(delivery.event, sent);
    delivery.acker.ack().await?;
    delete_queues(&[&queue]).await
}

#[tokio::test]
async fn connecting_to_a_broker_that_is_down_names_the_url() -> anyhow::Result<()> {
    let result = AmqpEvents::connect(AmqpConfig::new("amqp://guest:secret@127.0.0.1:1/%2f")).await;
    let error = result.err().context("connected to a closed port")?;
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    let message = error.to_string();
    ensure!(message.contains("127.0.0.1:1"), "the error does not name the URL: {message}");
    ensure!(!message.contains("secret"), "the error shows the password: {message}");
    Ok(())
}

#[tokio::test]
async fn kombu_urls_and_other_exchanges_work() -> anyhow::Result<()> {
    let exchange = unique("lymphtest");
    let config = AmqpConfig::new("amqp://guest:guest@127.0.0.1:5672//").with_exchange(exchange.clone());
    let events = AmqpEvents::connect(config).await?;
    assert!(events.is_connected());
    let (event_type, queue) = (unique("kombu.event."), unique("kombu-queue-"));
    let mut deliveries = events.subscribe(subscription(&queue, &[&event_type])).await?;
    emit(&events, event(&event_type, 1)).await?;
    let delivery = recv(&mut deliveries).await?;
    assert_eq!(n_of(&delivery), 1);
    delivery.acker.ack().await?;
    delete_queues(&[&queue]).await?;
    let (_connection, channel) = raw_channel().await?;
    for name in [exchange.clone(), format!("{exchange}_waiting"), format!("{exchange}_retry")] {
        channel.exchange_delete(name.as_str().into(), Default::default()).await?;
    }
    Ok(())
}

#[tokio::test]
async fn concurrent_emits_all_arrive() -> anyhow::Result<()> {
    let events = connect().await?;
    let (event_type, queue) = (unique("many.event."), unique("many-queue-"));
    let mut deliveries = events.subscribe(subscription(&queue, &[&event_type])).await?;
    let count = 2000;
    let emits = futures::stream::iter(0..count)
        .map(|n| events.emit(event(&event_type, n), Duration::ZERO))
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    for result in emits {
        result?;
    }
    let mut seen = BTreeSet::new();
    for _ in 0..count {
        let delivery = recv(&mut deliveries).await?;
        seen.insert(n_of(&delivery));
        delivery.acker.ack().await?;
    }
    assert_eq!(seen, (0..count).collect());
    assert_quiet(&mut deliveries).await?;
    delete_queues(&[&queue]).await
}
