//! The in-process event broker: one topic exchange and named queues, as lymph uses RabbitMQ.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::Result;
use crate::event::{Acknowledge, Deliveries, Delivery, Event, EventSystem, Subscription, topic_matches};

/// One consumer of a queue: the sending side of a subscription's [`Deliveries`].
#[derive(Debug)]
struct Consumer {
    tx: mpsc::UnboundedSender<Delivery>,
    /// Wants one event only; removed once it got it.
    once: bool,
}

/// A queue: its bindings, its ready events and its consumers.
#[derive(Debug, Default)]
struct Queue {
    /// Binding patterns on the topic exchange, the union of every subscription's.
    patterns: Vec<String>,
    /// Events waiting for a consumer, by the sequence number they entered the queue with.
    ready: VecDeque<(u64, Event)>,
    /// Consumers, served round-robin.
    consumers: Vec<Consumer>,
    /// The round-robin cursor.
    next: usize,
    /// Deleted when its last consumer goes away (broadcast and once subscriptions).
    auto_delete: bool,
}

impl Queue {
    fn binds(&self, event_type: &str) -> bool {
        self.patterns.iter().any(|pattern| topic_matches(pattern, event_type))
    }

    fn prune(&mut self) {
        self.consumers.retain(|consumer| !consumer.tx.is_closed());
    }
}

/// Called with the name and the waiting events of each auto-delete queue the broker removes.
type DeletionObserver = Arc<dyn Fn(&str, Vec<Event>) + Send + Sync>;

#[derive(Default)]
struct Broker {
    queues: BTreeMap<String, Queue>,
    /// The counter that makes broadcast and once queue names unique.
    last_unique: u64,
    /// The sequence number of the last event put into a queue.
    last_seq: u64,
    on_delete: Option<DeletionObserver>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("queues", &self.queues)
            .field("last_unique", &self.last_unique)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

type Outgoing = Vec<(mpsc::UnboundedSender<Delivery>, Delivery)>;

impl Broker {
    /// Drops consumers that went away and auto-delete queues left without consumers.
    fn prune(&mut self) {
        let mut deleted = Vec::new();
        self.queues.retain(|name, queue| {
            queue.prune();
            let keep = !(queue.auto_delete && queue.consumers.is_empty());
            if !keep {
                deleted.push((name.clone(), std::mem::take(&mut queue.ready)));
            }
            keep
        });
        for (name, ready) in deleted {
            self.deleted(&name, ready);
        }
    }

    /// Events are lost with an auto-delete queue: those waiting in it when it was removed, or one
    /// released back to it (an unsettled delivery) after that.
    fn deleted(&self, name: &str, ready: VecDeque<(u64, Event)>) {
        tracing::debug!(queue = %name, dropped = ready.len(), "auto-delete queue removed");
        if let Some(observer) = self.on_delete.as_ref().filter(|_| !ready.is_empty()) {
            observer(name, ready.into_iter().map(|(_, event)| event).collect());
        }
    }

    /// Hands the ready events of `name` to its consumers, round-robin; the deliveries are sent
    /// by the caller once the lock is released.
    fn take_ready(&mut self, shared: &Arc<Mutex<Broker>>, name: &str, outgoing: &mut Outgoing) {
        let Some(queue) = self.queues.get_mut(name) else { return };
        queue.prune();
        while !queue.consumers.is_empty() {
            let Some((seq, event)) = queue.ready.pop_front() else { break };
            let index = queue.next % queue.consumers.len();
            queue.next = index + 1;
            let acker =
                MemoryAcker { broker: Arc::clone(shared), queue: name.to_owned(), seq, event: Some(event.clone()) };
            let delivery = Delivery { event, acker: Box::new(acker) };
            outgoing.push((queue.consumers[index].tx.clone(), delivery));
            if queue.consumers[index].once {
                queue.consumers.remove(index);
            }
        }
        if queue.auto_delete
            && queue.consumers.is_empty()
            && let Some(queue) = self.queues.remove(name)
        {
            self.deleted(name, queue.ready);
        }
    }
}

fn send_all(outgoing: Outgoing) {
    for (tx, delivery) in outgoing {
        // A consumer that went away in the meantime gets nothing: the delivery is dropped
        // unsettled, which puts its event back into the queue.
        let _ = tx.send(delivery);
    }
}

/// The in-process [`EventSystem`], with the RabbitMQ semantics lymph relies on.
///
/// - One topic exchange: [`emit`](EventSystem::emit) puts the event once into every queue with a
///   binding pattern that matches its type (`*` one word, `#` zero or more).
/// - One queue per [`Subscription::queue`] name, bound to the union of the patterns it was
///   subscribed with. Subscribing the same name again adds a competing consumer: each event goes
///   to one of them, round-robin.
/// - A `broadcast` or `once` subscription gets a queue of its own, `<queue>-<n>`, deleted with
///   its consumer; a `once` consumer gets one event, then its [`Deliveries`] end.
/// - Other queues outlive their consumers: events wait in them until a consumer subscribes.
/// - Settling: `ack` and `reject` remove the event; `retry(event)` removes it and puts `event`
///   at the end of the same queue only. A [`Delivery`] dropped unsettled (its consumer crashed)
///   goes back to its queue ahead of everything published after it, as RabbitMQ requeues to the
///   original position, and is delivered again, to another consumer if its own is gone.
/// - An event emitted with a delay is published when the delay has passed (`tokio::time`).
///
/// Cloning gives another handle to the same broker.
#[derive(Clone, Default)]
pub struct MemoryEvents {
    broker: Arc<Mutex<Broker>>,
}

impl fmt::Debug for MemoryEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queues: Option<Vec<String>> =
            self.broker.try_lock().ok().map(|broker| broker.queues.keys().cloned().collect());
        f.debug_struct("MemoryEvents").field("queues", &queues).finish()
    }
}

impl MemoryEvents {
    /// A new broker without queues (not shared with any network).
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Broker> {
        lock(&self.broker)
    }

    /// Calls `observer` with the events lost with a broadcast or once queue (auto-delete), which
    /// is removed when its last consumer goes away, as RabbitMQ removes it: the events still
    /// waiting in it, and deliveries left unsettled by its consumer, which cannot go back to it.
    /// It may be called more than once per queue, never with no events. It runs while the broker
    /// is locked: it must not call this `MemoryEvents`. A later observer replaces an earlier one.
    pub fn on_auto_delete(&self, observer: impl Fn(&str, Vec<Event>) + Send + Sync + 'static) {
        self.lock().on_delete = Some(Arc::new(observer));
    }

    /// Publishes `event` now (the synchronous core of [`EventSystem::emit`]).
    pub fn publish(&self, event: Event) {
        let mut outgoing = Vec::new();
        {
            let mut broker = self.lock();
            broker.prune();
            broker.last_seq += 1;
            let seq = broker.last_seq;
            let names: Vec<String> = broker
                .queues
                .iter_mut()
                .filter(|(_, queue)| queue.binds(&event.event_type))
                .map(|(name, queue)| {
                    queue.ready.push_back((seq, event.clone()));
                    name.clone()
                })
                .collect();
            if names.is_empty() {
                tracing::debug!(event_type = %event.event_type, "event matched no queue");
            }
            for name in names {
                broker.take_ready(&self.broker, &name, &mut outgoing);
            }
        }
        send_all(outgoing);
    }

    /// Declares the subscription's queue and adds a consumer (the synchronous core of
    /// [`EventSystem::subscribe`]); returns the queue's name and the deliveries.
    pub fn subscribe_now(&self, subscription: Subscription) -> (String, Deliveries) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut outgoing = Vec::new();
        let name = {
            let mut broker = self.lock();
            broker.prune();
            let unique = subscription.broadcast || subscription.once;
            let name = if unique {
                broker.last_unique += 1;
                format!("{}-{}", subscription.queue, broker.last_unique)
            } else {
                subscription.queue.clone()
            };
            let queue =
                broker.queues.entry(name.clone()).or_insert_with(|| Queue { auto_delete: unique, ..Queue::default() });
            for pattern in subscription.patterns {
                if !queue.patterns.contains(&pattern) {
                    queue.patterns.push(pattern);
                }
            }
            queue.consumers.push(Consumer { tx, once: subscription.once });
            broker.take_ready(&self.broker, &name, &mut outgoing);
            name
        };
        send_all(outgoing);
        (name, rx)
    }

    /// The queues an event of `event_type` published now would be put into, in order: those
    /// with a binding pattern that matches it.
    pub fn bound_queues(&self, event_type: &str) -> Vec<String> {
        let mut broker = self.lock();
        broker.prune();
        broker.queues.iter().filter(|(_, queue)| queue.binds(event_type)).map(|(name, _)| name.clone()).collect()
    }

    /// The number of events waiting in `queue` (not counting delivered, unsettled ones), or
    /// `None` when there is no such queue.
    pub fn queue_len(&self, queue: &str) -> Option<usize> {
        let mut broker = self.lock();
        broker.prune();
        broker.queues.get(queue).map(|queue| queue.ready.len())
    }

    /// The names of the existing queues, in order.
    pub fn queues(&self) -> Vec<String> {
        let mut broker = self.lock();
        broker.prune();
        broker.queues.keys().cloned().collect()
    }
}

fn lock(broker: &Mutex<Broker>) -> MutexGuard<'_, Broker> {
    broker.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Puts `event` back into `queue` at the place of its sequence number `seq` (a requeued
/// delivery), or at the end when `seq` is `None` (a retry), and delivers what can be delivered.
fn enqueue(shared: &Arc<Mutex<Broker>>, queue: &str, event: Event, seq: Option<u64>) {
    let mut outgoing = Vec::new();
    {
        let mut broker = lock(shared);
        broker.prune();
        let seq = seq.unwrap_or_else(|| {
            broker.last_seq += 1;
            broker.last_seq
        });
        match broker.queues.get_mut(queue) {
            Some(q) => {
                let at = q.ready.partition_point(|(s, _)| *s < seq);
                q.ready.insert(at, (seq, event));
            }
            None => {
                tracing::debug!(%queue, event_type = %event.event_type, "queue is gone, event dropped");
                broker.deleted(queue, VecDeque::from([(seq, event)]));
                return;
            }
        }
        broker.take_ready(shared, queue, &mut outgoing);
    }
    send_all(outgoing);
}

impl EventSystem for MemoryEvents {
    fn emit(&self, event: Event, delay: Duration) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            crate::event::check_emit(&event.event_type, delay)?;
            if delay.is_zero() {
                self.publish(event);
            } else {
                let this = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    this.publish(event);
                });
            }
            Ok(())
        })
    }

    fn subscribe(&self, subscription: Subscription) -> BoxFuture<'_, Result<Deliveries>> {
        Box::pin(async move {
            crate::event::check_subscription(&subscription)?;
            Ok(self.subscribe_now(subscription).1)
        })
    }
}

/// Settles one delivery of a [`MemoryEvents`] queue; requeues it when dropped unsettled.
struct MemoryAcker {
    broker: Arc<Mutex<Broker>>,
    queue: String,
    /// The sequence number the event had in its queue.
    seq: u64,
    /// The event, until the delivery is settled.
    event: Option<Event>,
}

impl fmt::Debug for MemoryAcker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryAcker")
            .field("queue", &self.queue)
            .field("settled", &self.event.is_none())
            .finish_non_exhaustive()
    }
}

impl Acknowledge for MemoryAcker {
    fn ack(mut self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        self.event = None;
        Box::pin(async { Ok(()) })
    }

    fn reject(mut self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        self.event = None;
        Box::pin(async { Ok(()) })
    }

    fn retry(mut self: Box<Self>, retry: Event) -> BoxFuture<'static, Result<()>> {
        self.event = None;
        enqueue(&self.broker, &self.queue, retry, None);
        Box::pin(async { Ok(()) })
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        if let Some(event) = self.event.take() {
            enqueue(&self.broker, &self.queue, event, Some(self.seq));
        }
    }
}
