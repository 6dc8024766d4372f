//! Serial events, lymph's `serial_event`: per-key ordering through partition queues.
//!
//! See [`SerialSpec`] for the layout. Ownership of the partitions follows the registry: every
//! live instance of the service takes the partitions whose number, modulo the instance count,
//! is its rank among the instance ids. An instance that does not see itself registered yet (or
//! runs unregistered) counts itself in, so every partition always has a consumer; while the
//! instances re-share the partitions, two of them may briefly consume the same one, so order
//! holds within a stable membership (lymph used ZooKeeper locks for the hand-over).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use md5::{Digest, Md5};
use tokio::task::JoinHandle;

use crate::container::{Installed, Shared, TRACING_TARGET, handle_delivery, next_delivery};
use crate::event::{Acknowledge, Deliveries, Delivery, Subscription};
use crate::interface::{EventHandlerSpec, SerialSpec};
use crate::{Event, Result, Value};

/// How often a container looks at the registry for a change of its service's instances.
const MEMBERSHIP_POLL: Duration = Duration::from_millis(500);

/// The partition of `key` among `partitions`: `int(md5(key).hexdigest(), 16) % partitions`.
pub(crate) fn partition_of(key: &str, partitions: u32) -> u32 {
    let digest: [u8; 16] = Md5::digest(key.as_bytes()).into();
    let partition = u128::from_be_bytes(digest) % u128::from(partitions.max(1));
    u32::try_from(partition).expect("a remainder of a u32 fits a u32")
}

/// The key of `event`: its body field `field` as text (a string as it is, anything else in its
/// display form, a missing field as empty).
fn key_of(event: &Event, field: &str) -> String {
    match event.get(field) {
        Some(Value::Str(text)) => text.clone(),
        Some(Value::Nil) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The event type of partition `partition` of `handler`.
fn partition_event_type(handler: &EventHandlerSpec, partition: u32) -> String {
    format!("{}.{partition}", handler.name)
}

/// Starts serving a serial handler: the push queue if this instance ranks first, and the
/// partitions it owns.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    installed: &Arc<Installed>,
    handler: &'static EventHandlerSpec,
    serial: SerialSpec,
    registered: bool,
) -> Result<()> {
    let mut partitions = Partitions::new(shared.clone(), installed.clone(), handler, serial, registered);
    // The first share is taken before the container registers, so the queues exist and no
    // event waits for a consumer.
    partitions.rebalance().await?;
    tokio::spawn(partitions.run());
    Ok(())
}

/// Re-emits each pushed event into its partition, and acknowledges it once that worked.
async fn push_loop(
    shared: Arc<Shared>,
    handler: &'static EventHandlerSpec,
    serial: SerialSpec,
    mut deliveries: Deliveries,
) {
    loop {
        let Some(delivery) = next_delivery(&shared, &mut deliveries).await else { break };
        let Delivery { event, acker } = delivery;
        let partition = partition_of(&key_of(&event, serial.key), serial.partitions);
        let trace_id = event.trace_id().map(str::to_owned).unwrap_or_else(|| shared.new_id());
        let body = Value::map([("event", event.to_value())]);
        match shared.emit(&partition_event_type(handler, partition), body, &trace_id, Duration::ZERO).await {
            Ok(()) => {
                if let Err(error) = acker.ack().await {
                    tracing::warn!(target: TRACING_TARGET, %error, handler = handler.name, "could not settle a pushed event");
                }
            }
            // Left unsettled: the broker hands it out again when this consumer's connection,
            // which the failed emit shares, is back.
            Err(error) => tracing::warn!(
                target: TRACING_TARGET, %error, handler = handler.name, partition,
                "could not forward an event to its partition"
            ),
        }
    }
}

/// The partitions of one serial handler this instance consumes.
struct Partitions {
    shared: Arc<Shared>,
    installed: Arc<Installed>,
    handler: &'static EventHandlerSpec,
    serial: SerialSpec,
    registered: bool,
    /// The instance ids the current share was computed from.
    members: Vec<String>,
    /// The push queue's consumer, run by the first instance only so that pushed events keep
    /// their order on the way to their partitions.
    push: Option<JoinHandle<()>>,
    owned: BTreeMap<u32, JoinHandle<()>>,
}

impl Partitions {
    fn new(
        shared: Arc<Shared>,
        installed: Arc<Installed>,
        handler: &'static EventHandlerSpec,
        serial: SerialSpec,
        registered: bool,
    ) -> Self {
        Self { shared, installed, handler, serial, registered, members: Vec::new(), push: None, owned: BTreeMap::new() }
    }

    /// The live instance ids of the service, this one included.
    async fn current_members(&self) -> Vec<String> {
        let own = self.installed.instance_id(&self.shared.identity);
        let mut members = Vec::new();
        if self.registered
            && let Ok(watch) = self.shared.instances(&self.installed.name).await
        {
            members = watch.borrow().iter().map(|instance| instance.id.clone()).collect();
        }
        if !members.contains(&own) {
            members.push(own);
        }
        members.sort();
        members
    }

    fn queue(&self, suffix: &str) -> String {
        format!("{}-{}.{suffix}", self.installed.name, self.handler.queue_name.unwrap_or(self.handler.name))
    }

    /// Takes the push queue and the partitions this instance's rank gives it, and lets go of
    /// the others.
    ///
    /// # Errors
    ///
    /// When a queue cannot be subscribed to; what was taken stays taken, the rest is tried
    /// again at the next look at the registry.
    async fn rebalance(&mut self) -> Result<()> {
        let members = self.current_members().await;
        if members == self.members {
            return Ok(());
        }
        let own = self.installed.instance_id(&self.shared.identity);
        let rank = members.iter().position(|m| *m == own).unwrap_or(0);
        let count = members.len();
        if rank == 0 && self.push.is_none() {
            let subscription = Subscription {
                queue: self.queue("push"),
                patterns: self.handler.patterns.iter().map(|p| (*p).to_owned()).collect(),
                broadcast: false,
                once: false,
            };
            let deliveries = self.shared.events.subscribe(subscription).await?;
            self.push = Some(tokio::spawn(push_loop(self.shared.clone(), self.handler, self.serial, deliveries)));
        } else if rank != 0
            && let Some(push) = self.push.take()
        {
            push.abort();
        }
        let wanted: Vec<u32> =
            (0..self.serial.partitions).filter(|p| usize::try_from(*p).is_ok_and(|p| p % count == rank)).collect();
        self.owned.retain(|partition, consumer| {
            let keep = wanted.contains(partition);
            if !keep {
                consumer.abort();
            }
            keep
        });
        for partition in wanted {
            if self.owned.contains_key(&partition) {
                continue;
            }
            let subscription = Subscription {
                queue: self.queue(&partition.to_string()),
                patterns: vec![partition_event_type(self.handler, partition)],
                broadcast: false,
                once: false,
            };
            let deliveries = self.shared.events.subscribe(subscription).await?;
            let consumer = tokio::spawn(consume_partition(
                self.shared.clone(),
                self.installed.clone(),
                self.handler,
                partition,
                deliveries,
            ));
            self.owned.insert(partition, consumer);
        }
        tracing::debug!(
            target: TRACING_TARGET, handler = self.handler.name, rank, instances = count, push = rank == 0,
            partitions = ?self.owned.keys().collect::<Vec<_>>(), "serial partitions"
        );
        self.members = members;
        Ok(())
    }

    /// Follows the registry until the container stops.
    async fn run(mut self) {
        let mut poll = tokio::time::interval(MEMBERSHIP_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.shared.shutdown.wait() => break,
                _ = poll.tick() => {
                    if let Err(error) = self.rebalance().await {
                        tracing::warn!(
                            target: TRACING_TARGET, %error, handler = self.handler.name,
                            "could not take a serial queue; trying again"
                        );
                    }
                }
            }
        }
        for consumer in self.owned.values().chain(&self.push) {
            consumer.abort();
        }
    }
}

/// Consumes one partition, one event at a time, unwrapping each to the original event.
async fn consume_partition(
    shared: Arc<Shared>,
    installed: Arc<Installed>,
    handler: &'static EventHandlerSpec,
    partition: u32,
    mut deliveries: Deliveries,
) {
    loop {
        let Some(delivery) = next_delivery(&shared, &mut deliveries).await else { break };
        let Delivery { event: wrapper, acker } = delivery;
        let event = match wrapper.get("event").cloned().map(Event::from_value) {
            Some(Ok(event)) => event,
            _ => {
                tracing::warn!(
                    target: TRACING_TARGET, handler = handler.name, partition, event_type = %wrapper.event_type,
                    "a partition event does not wrap an event; rejected"
                );
                let _ = acker.reject().await;
                continue;
            }
        };
        let acker = Box::new(Rewrap { acker, event_type: wrapper.event_type.clone(), source: wrapper.source.clone() });
        let guard = shared.track();
        handle_delivery(shared.clone(), installed.clone(), handler, Delivery { event, acker }, guard).await;
    }
}

/// Settles a partition's delivery; a retry goes back to the partition wrapped again.
#[derive(Debug)]
struct Rewrap {
    acker: Box<dyn Acknowledge>,
    event_type: String,
    source: String,
}

impl Acknowledge for Rewrap {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        self.acker.ack()
    }

    fn reject(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        self.acker.reject()
    }

    fn retry(self: Box<Self>, retry: Event) -> BoxFuture<'static, Result<()>> {
        let mut wrapper = Event::new(self.event_type, Value::map([("event", retry.to_value())]), None);
        wrapper.headers = retry.headers.clone();
        wrapper.source = self.source;
        self.acker.retry(wrapper)
    }
}

#[cfg(test)]
mod tests {
    use super::partition_of;

    #[test]
    fn partitions_are_lymphs_md5_modulo() {
        // int(hashlib.md5(b"user-1").hexdigest(), 16) % 12 == 4, and of b"" % 12 == 6.
        assert_eq!(partition_of("user-1", 12), 4);
        assert_eq!(partition_of("", 12), 6);
        assert!((0..100).all(|i| partition_of(&format!("k{i}"), 5) < 5));
    }
}
