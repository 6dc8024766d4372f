//! The simulated broker: a RabbitMQ-like host whose queues are a [`MemoryEvents`], and its
//! client [`SimEvents`].
//!
//! # Protocol
//!
//! One TCP connection per client; every message is a u32 big-endian length followed by msgpack
//! (serde, maps with field names). The client sends [`ClientMessage`]s `{id, request}`
//! (`Emit`, `Subscribe`, `Cancel`, `Ack`, `Reject`, `Retry`, `Release`, `Ping`), events as lymph's
//! msgpack event map; the server answers each with `Reply {id, result}` (`Ping` with `Pong`) and
//! pushes `Deliver {sub, tag, event}` for every delivery to one of the client's subscriptions.
//! A delivery is settled by its tag; `Release` hands an unsettled delivery back to its queue.
//!
//! # Timeline
//!
//! Besides what its clients record (`emit`, `deliver`, `ack`, ...), the broker host records
//! `start` (subject `broker`) each time it starts with fresh queues, and `publish` (subject the
//! event type) each time its exchange routes an event, with the queues bound to the event's type
//! at that moment in the detail (`queues=a,b`, or `no queue bound`), and `discard` (subject the
//! event type, detail `queue=<name> ...`) for each event lost with a broadcast or once queue
//! deleted with its last consumer.
//!
//! # Event faults
//!
//! A [`MessageFault`](super::MessageFault) of kind `EVENT` applies where the exchange routes a
//! published event into its queues, after the broker has accepted (and confirmed) the publish:
//!
//! - `drop`: the event is recorded as published (with the queues it should have reached) and
//!   then put into no queue: a lost event, as with a message RabbitMQ confirmed and then lost.
//!   Nothing is redelivered; the publisher saw a success.
//! - `duplicate`: the event is routed twice, so every bound queue holds two copies, as after a
//!   publisher re-sends an event whose confirm it did not get.
//! - `delay(d)`: the event is routed `d` later (on top of the delay it was emitted with);
//!   events published meanwhile overtake it, and a broker restart meanwhile loses it.
//!
//! Faults do not apply to deliveries on a consumer's connection: RabbitMQ runs over TCP, so a
//! delivery does not vanish while its connection lives; a delivery lost with its connection
//! stays unacknowledged and is redelivered, which partitions and crashes already simulate.

use std::collections::BTreeMap;
use std::fmt;
use std::task::Poll;
use std::time::Duration;

use futures::future::BoxFuture;
use lymph_core::event::{Acknowledge, Deliveries, Delivery, Event, EventSystem, Subscription};
use lymph_core::memory::MemoryEvents;
use lymph_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use turmoil::net::TcpListener;

use super::wire::{self, AbortOnDrop, Blob, Link, Liveness, Out, Session};
use super::{AMQP_HEARTBEAT, CONFIRM_TIMEOUT, REQUEST_TIMEOUT};
use super::{FaultAction, SimHost};
use crate::timeline::{Entry, Timeline};

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Request {
    Emit { event: Blob, delay_ms: u64 },
    Subscribe { sub: u64, queue: String, patterns: Vec<String>, broadcast: bool, once: bool },
    Cancel { sub: u64 },
    Ack { tag: u64 },
    Reject { tag: u64 },
    Retry { tag: u64, event: Blob },
    Release { tag: u64 },
    Ping,
}

#[derive(Debug, Serialize, Deserialize)]
struct ClientMessage {
    id: u64,
    request: Request,
}

#[derive(Debug, Serialize, Deserialize)]
enum ServerMessage {
    Reply { id: u64, result: std::result::Result<(), String> },
    Deliver { sub: u64, tag: u64, event: Blob },
    Pong,
}

// ---------------------------------------------------------------------------------------------
// Server

/// Runs a simulated broker on `port` with fresh, empty queues: the body of a turmoil host.
///
/// ```no_run
/// # let mut sim = turmoil::Builder::new().build();
/// use lymph_testing::Timeline;
/// use lymph_testing::sim::{self, SimHost};
/// sim.host("broker", || sim::broker_server(SimHost::new("broker", Timeline::new()), sim::DEFAULT_BROKER_PORT));
/// ```
///
/// `host` is the turmoil host it runs on; powering it off closes every session.
///
/// Must be called from within a simulation.
///
/// # Errors
///
/// When the port cannot be bound.
pub async fn broker_server(host: SimHost, port: u16) -> turmoil::Result {
    broker_server_on(host, port, MemoryEvents::new()).await
}

/// Runs a simulated broker on `port` serving the queues of `events` (which the test can
/// inspect, e.g. with [`MemoryEvents::queue_len`]).
///
/// The message faults of `host` of kind `EVENT` apply to the events it routes (see the module
/// docs of [`sim`](super)), and it records `start`, `publish` and `discard` (an event lost with a
/// broadcast or once queue deleted with its last consumer) on the timeline.
///
/// When a client's connection closes or stays silent for
/// [`AMQP_HEARTBEAT`](super::AMQP_HEARTBEAT) (RabbitMQ's "missed heartbeats from client"), its
/// consumers are cancelled (its broadcast and once queues deleted) and its unsettled deliveries
/// go back to their queues.
///
/// Must be called from within a simulation.
///
/// # Errors
///
/// When the port cannot be bound.
pub async fn broker_server_on(host: SimHost, port: u16, events: MemoryEvents) -> turmoil::Result {
    host.timeline().record(Entry::now(host.name(), "start", "broker").detail(format!("port={port}")));
    let (name, timeline) = (host.name().to_owned(), host.timeline().clone());
    events.on_auto_delete(move |queue, lost| {
        // Unsettled deliveries are also released when the simulation is torn down, in an order
        // nothing fixes: what happens after the run is not part of it.
        if turmoil::sim_elapsed().is_none() {
            return;
        }
        for event in lost {
            let entry = Entry::now(&name, "discard", &event.event_type).trace(event.trace_id());
            timeline.record(entry.detail(format!("queue={queue} deleted with its last consumer")));
        }
    });
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    let mut sessions = JoinSet::new();
    loop {
        let down = host.down();
        let accepted = tokio::select! {
            biased;
            () = down.wait() => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = accepted?;
        while sessions.try_join_next().is_some() {}
        let link = Link::new(stream, peer.to_string(), wire::read_serde::<ClientMessage>, host.down());
        let session = ServerSession {
            host: host.clone(),
            events: events.clone(),
            subs: Vec::new(),
            unsettled: BTreeMap::new(),
            last_tag: 0,
        };
        sessions.spawn(session.run(link));
    }
}

struct ServerSession {
    host: SimHost,
    events: MemoryEvents,
    subs: Vec<(u64, Deliveries)>,
    unsettled: BTreeMap<u64, Delivery>,
    last_tag: u64,
}

impl ServerSession {
    async fn run(mut self, mut link: Link<ClientMessage>) {
        let out = Out::of(&link);
        // RabbitMQ closes a connection it heard nothing on for the heartbeat timeout.
        let mut liveness = Liveness::exact(AMQP_HEARTBEAT, AMQP_HEARTBEAT / 2);
        loop {
            let subs = &mut self.subs;
            let next_delivery = futures::future::poll_fn(|cx| {
                for (sub, rx) in subs.iter_mut() {
                    if let Poll::Ready(delivery) = rx.poll_recv(cx) {
                        return Poll::Ready((*sub, delivery));
                    }
                }
                Poll::Pending
            });
            tokio::select! {
                biased;
                message = link.rx.recv() => match message {
                    Some(message) => {
                        liveness.heard();
                        self.handle(message, &out).await;
                    }
                    None => break,
                },
                (sub, delivery) = next_delivery => match delivery {
                    Some(delivery) => {
                        self.last_tag += 1;
                        let tag = self.last_tag;
                        out.send(&ServerMessage::Deliver { sub, tag, event: Blob(delivery.event.to_msgpack()) });
                        self.unsettled.insert(tag, delivery);
                    }
                    None => self.subs.retain(|(s, _)| *s != sub),
                },
                silent = liveness.tick() => {
                    if silent {
                        tracing::debug!("broker session timed out");
                        break;
                    }
                }
            }
        }
        drop(link);
        // Stop the consumers first, so the unsettled deliveries go to other consumers.
        for (_, rx) in &mut self.subs {
            rx.close();
        }
        drop(std::mem::take(&mut self.unsettled));
        drop(std::mem::take(&mut self.subs));
    }

    async fn handle(&mut self, message: ClientMessage, out: &Out) {
        let ClientMessage { id, request } = message;
        let result = match request {
            Request::Ping => {
                out.send(&ServerMessage::Pong);
                return;
            }
            Request::Emit { event, delay_ms } => match Event::from_msgpack(&event.0) {
                Ok(event) => {
                    self.publish(event, Duration::from_millis(delay_ms));
                    Ok(())
                }
                Err(error) => {
                    tracing::warn!(%error, "malformed event dropped");
                    Err(format!("malformed event: {error}"))
                }
            },
            Request::Subscribe { sub, queue, patterns, broadcast, once } => {
                let (_, rx) = self.events.subscribe_now(Subscription { queue, patterns, broadcast, once });
                self.subs.push((sub, rx));
                Ok(())
            }
            Request::Cancel { sub } => {
                self.subs.retain(|(s, _)| *s != sub);
                Ok(())
            }
            Request::Ack { tag } | Request::Reject { tag } | Request::Release { tag } | Request::Retry { tag, .. }
                if !self.unsettled.contains_key(&tag) =>
            {
                Err(format!("unknown delivery tag {tag}"))
            }
            Request::Ack { tag } => self.settle(tag, |acker| acker.ack()).await,
            Request::Reject { tag } => self.settle(tag, |acker| acker.reject()).await,
            Request::Release { tag } => {
                self.unsettled.remove(&tag);
                Ok(())
            }
            Request::Retry { tag, event } => match Event::from_msgpack(&event.0) {
                Ok(event) => self.settle(tag, |acker| acker.retry(event)).await,
                Err(error) => {
                    tracing::warn!(%error, "malformed retry event; delivery rejected");
                    let _ = self.settle(tag, |acker| acker.reject()).await;
                    Err(format!("malformed event: {error}"))
                }
            },
        };
        out.send(&ServerMessage::Reply { id, result });
    }

    /// Routes a published event into its queues, `delay` from now, applying the event faults
    /// in force.
    fn publish(&self, event: Event, delay: Duration) {
        let note = |kind: &str, detail: String| {
            self.host
                .timeline()
                .record(Entry::now(self.host.name(), kind, &event.event_type).trace(event.trace_id()).detail(detail));
        };
        match self.host.faults().take("EVENT", &event.event_type) {
            None => route(&self.host, &self.events, event, delay),
            Some(FaultAction::Drop) => {
                record_publish(&self.host, &self.events, &event);
                note("drop", "EVENT: lost before reaching its queues, by a message fault".to_owned());
            }
            Some(FaultAction::Duplicate) => {
                note("duplicate", "EVENT: routed twice".to_owned());
                route(&self.host, &self.events, event.clone(), delay);
                route(&self.host, &self.events, event, delay);
            }
            Some(FaultAction::Delay(late)) => {
                note("delay", format!("EVENT: routed {late:?} late"));
                route(&self.host, &self.events, event, delay + late);
            }
        }
    }

    async fn settle(
        &mut self,
        tag: u64,
        how: impl FnOnce(Box<dyn Acknowledge>) -> BoxFuture<'static, Result<()>>,
    ) -> std::result::Result<(), String> {
        match self.unsettled.remove(&tag) {
            Some(delivery) => how(delivery.acker).await.map_err(|e| e.to_string()),
            None => Err(format!("unknown delivery tag {tag}")),
        }
    }
}

/// Records that the exchange routes `event` now, and to which queues.
fn record_publish(host: &SimHost, events: &MemoryEvents, event: &Event) {
    let queues = events.bound_queues(&event.event_type);
    let detail = if queues.is_empty() { "no queue bound".to_owned() } else { format!("queues={}", queues.join(",")) };
    host.timeline()
        .record(Entry::now(host.name(), "publish", &event.event_type).trace(event.trace_id()).detail(detail));
}

/// Puts `event` into the queues bound to its type, `delay` from now (unless the broker is down
/// by then), and records it.
fn route(host: &SimHost, events: &MemoryEvents, event: Event, delay: Duration) {
    if delay.is_zero() {
        record_publish(host, events, &event);
        events.publish(event);
        return;
    }
    let (host, events) = (host.clone(), events.clone());
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if !host.is_down() {
            record_publish(&host, &events, &event);
            events.publish(event);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Client

#[derive(Debug)]
enum Command {
    Emit {
        event: Event,
        delay: Duration,
        reply: oneshot::Sender<Result<()>>,
    },
    Subscribe {
        sub: u64,
        subscription: Subscription,
        tx: mpsc::UnboundedSender<Delivery>,
        reply: oneshot::Sender<Result<()>>,
    },
    Settle {
        generation: u64,
        request: Request,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    /// The subscriber dropped its deliveries: stop consuming.
    Cancel {
        sub: u64,
    },
}

struct InFlight {
    subscribe: Option<u64>,
    reply: Option<oneshot::Sender<Result<()>>>,
    /// Whether this is an emit waiting for the broker's confirm.
    emit: bool,
}

struct ClientSub {
    subscription: Subscription,
    tx: mpsc::UnboundedSender<Delivery>,
}

struct ClientSession {
    me: String,
    timeline: Timeline,
    commands: mpsc::UnboundedSender<Command>,
    /// Incremented on every connection; delivery tags are only valid within one.
    generation: u64,
    last_id: u64,
    in_flight: BTreeMap<u64, InFlight>,
    subs: BTreeMap<u64, ClientSub>,
}

impl ClientSession {
    fn send(&mut self, out: &Out, request: Request, in_flight: InFlight) {
        self.last_id += 1;
        out.send(&ClientMessage { id: self.last_id, request });
        self.in_flight.insert(self.last_id, in_flight);
    }

    fn subscribe_request(sub: u64, subscription: &Subscription) -> Request {
        Request::Subscribe {
            sub,
            queue: subscription.queue.clone(),
            patterns: subscription.patterns.clone(),
            broadcast: subscription.broadcast,
            once: subscription.once,
        }
    }

    fn deliver(&mut self, sub: u64, tag: u64, event: Blob, out: &Out) {
        let event = match Event::from_msgpack(&event.0) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, tag, "malformed delivery rejected");
                self.send(out, Request::Reject { tag }, InFlight { subscribe: None, reply: None, emit: false });
                return;
            }
        };
        let Some(client_sub) = self.subs.get(&sub) else {
            self.send(out, Request::Release { tag }, InFlight { subscribe: None, reply: None, emit: false });
            return;
        };
        let queue = client_sub.subscription.queue.clone();
        self.timeline.record(
            Entry::now(&self.me, "deliver", &event.event_type)
                .trace(event.trace_id())
                .detail(format!("queue={queue} tag={}:{tag}", self.generation)),
        );
        let acker = SimAcker {
            commands: self.commands.clone(),
            generation: self.generation,
            tag,
            host: self.me.clone(),
            timeline: self.timeline.clone(),
            event_type: event.event_type.clone(),
            trace_id: event.trace_id().map(str::to_owned),
            settled: false,
        };
        let once = client_sub.subscription.once;
        if client_sub.tx.send(Delivery { event, acker: Box::new(acker) }).is_err() {
            // The subscriber is gone; the returned delivery is dropped, which releases it.
            self.subs.remove(&sub);
            self.send(out, Request::Cancel { sub }, InFlight { subscribe: None, reply: None, emit: false });
        } else if once {
            self.subs.remove(&sub);
        }
    }
}

impl Session for ClientSession {
    type Command = Command;
    type In = ServerMessage;
    const NAME: &'static str = "broker";

    fn ping() -> Vec<u8> {
        wire::encode(&ClientMessage { id: 0, request: Request::Ping })
    }

    /// As lapin with the heartbeat RabbitMQ proposes: a heartbeat every half of it, and the
    /// connection closed after twice the heartbeat without a byte from the server.
    fn liveness() -> Liveness {
        Liveness::exact(2 * AMQP_HEARTBEAT, AMQP_HEARTBEAT / 2)
    }

    fn connected(&mut self, out: &Out) {
        self.generation += 1;
        self.subs.retain(|_, sub| !sub.tx.is_closed());
        let subs: Vec<(u64, Request)> =
            self.subs.iter().map(|(id, sub)| (*id, Self::subscribe_request(*id, &sub.subscription))).collect();
        for (sub, request) in subs {
            self.send(out, request, InFlight { subscribe: Some(sub), reply: None, emit: false });
        }
    }

    fn command(&mut self, command: Command, out: Option<&Out>) -> Option<Command> {
        match command {
            Command::Settle { generation, request, reply } => {
                match out {
                    Some(out) if generation == self.generation => {
                        self.send(out, request, InFlight { subscribe: None, reply, emit: false });
                    }
                    _ => {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(Error::transport(
                                "the connection to the broker was lost; the event will be delivered again",
                            )));
                        }
                    }
                }
                None
            }
            Command::Emit { reply, .. } | Command::Subscribe { reply, .. } if reply.is_closed() => None,
            Command::Cancel { sub } => {
                // Disconnected, the subscription is simply not made again.
                if self.subs.remove(&sub).is_some()
                    && let Some(out) = out
                {
                    self.send(out, Request::Cancel { sub }, InFlight { subscribe: None, reply: None, emit: false });
                }
                None
            }
            // Once connected, an emit while the connection is lost fails at once, as with
            // `AmqpEvents` reconnecting; before the first connection it waits for it.
            Command::Emit { reply, .. } if out.is_none() && self.generation > 0 => {
                let _ = reply
                    .send(Err(Error::transport("not connected to the broker (the connection was lost, reconnecting)")));
                None
            }
            command if out.is_none() => Some(command),
            Command::Emit { event, delay, reply } => {
                let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                let request = Request::Emit { event: Blob(event.to_msgpack()), delay_ms };
                let in_flight = InFlight { subscribe: None, reply: Some(reply), emit: true };
                self.send(out.expect("connected"), request, in_flight);
                None
            }
            Command::Subscribe { sub, subscription, tx, reply } => {
                let request = Self::subscribe_request(sub, &subscription);
                self.subs.insert(sub, ClientSub { subscription, tx });
                self.send(
                    out.expect("connected"),
                    request,
                    InFlight { subscribe: Some(sub), reply: Some(reply), emit: false },
                );
                None
            }
        }
    }

    fn message(&mut self, message: ServerMessage, out: &Out) {
        match message {
            ServerMessage::Pong => {}
            ServerMessage::Deliver { sub, tag, event } => self.deliver(sub, tag, event, out),
            ServerMessage::Reply { id, result } => {
                let Some(in_flight) = self.in_flight.remove(&id) else {
                    tracing::warn!(id, "broker reply to no request");
                    return;
                };
                if let Err(error) = &result {
                    tracing::debug!(id, %error, "broker request failed");
                    if let Some(sub) = in_flight.subscribe {
                        self.subs.remove(&sub);
                    }
                }
                if let Some(reply) = in_flight.reply {
                    let _ = reply.send(result.map_err(Error::transport));
                }
            }
        }
    }

    fn disconnected(&mut self) {
        for (_, in_flight) in std::mem::take(&mut self.in_flight) {
            if let Some(sub) = in_flight.subscribe
                && in_flight.reply.is_some()
            {
                self.subs.remove(&sub);
            }
            if let Some(reply) = in_flight.reply {
                // An unconfirmed emit fails and is not published again, as with `AmqpEvents`:
                // the broker may or may not have routed it.
                let error = if in_flight.emit {
                    "the connection to the broker was lost before it confirmed the emit"
                } else {
                    "the connection to the broker was lost"
                };
                let _ = reply.send(Err(Error::transport(error)));
            }
        }
    }
}

/// Settles a delivery of [`SimEvents`] by sending its tag back to the broker.
struct SimAcker {
    commands: mpsc::UnboundedSender<Command>,
    generation: u64,
    tag: u64,
    host: String,
    timeline: Timeline,
    event_type: String,
    trace_id: Option<String>,
    settled: bool,
}

impl fmt::Debug for SimAcker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimAcker")
            .field("generation", &self.generation)
            .field("tag", &self.tag)
            .field("settled", &self.settled)
            .finish_non_exhaustive()
    }
}

impl SimAcker {
    fn settle(mut self, kind: &str, request: Request, detail: String) -> BoxFuture<'static, Result<()>> {
        self.settled = true;
        self.timeline
            .record(Entry::now(&self.host, kind, &self.event_type).trace(self.trace_id.clone()).detail(detail));
        let (reply, rx) = oneshot::channel();
        let sent = self.commands.send(Command::Settle { generation: self.generation, request, reply: Some(reply) });
        Box::pin(async move {
            sent.map_err(|_| Error::transport("the broker session task is gone"))?;
            wire::answer(rx, REQUEST_TIMEOUT, "broker settle").await
        })
    }
}

impl Acknowledge for SimAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        let tag = self.tag;
        (*self).settle("ack", Request::Ack { tag }, String::new())
    }

    fn reject(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        let tag = self.tag;
        (*self).settle("reject", Request::Reject { tag }, String::new())
    }

    fn retry(self: Box<Self>, retry: Event) -> BoxFuture<'static, Result<()>> {
        let tag = self.tag;
        let detail = match retry.retry_count() {
            Some(n) => format!("retry_count={n}"),
            None => String::new(),
        };
        (*self).settle("retry", Request::Retry { tag, event: Blob(retry.to_msgpack()) }, detail)
    }
}

impl Drop for SimAcker {
    fn drop(&mut self) {
        if !self.settled {
            let request = Request::Release { tag: self.tag };
            let _ = self.commands.send(Command::Settle { generation: self.generation, request, reply: None });
        }
    }
}

/// An [`EventSystem`] client of a simulated broker host (see [`broker_server`]).
///
/// It keeps one connection to the broker, reconnecting when it fails, and re-subscribes its
/// subscriptions after a reconnect, so the [`Deliveries`] it handed out keep working (broadcast
/// and once subscriptions get a new queue, so events published while disconnected are lost for
/// them, as with RabbitMQ's auto-delete queues). Deliveries unsettled when the connection dies go
/// back to their queue on the broker; settling them afterwards fails. A delivery dropped
/// unsettled is released back to its queue. Emits, deliveries, acks, rejects and retries are
/// recorded on the timeline.
pub struct SimEvents {
    host: String,
    addr: String,
    timeline: Timeline,
    commands: mpsc::UnboundedSender<Command>,
    last_sub: std::sync::atomic::AtomicU64,
    _task: AbortOnDrop,
}

impl fmt::Debug for SimEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimEvents").field("host", &self.host).field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl SimEvents {
    /// Starts a client of the broker at `addr` (`"broker:5672"`) for `host`; it connects in
    /// the background, and calls wait for the connection.
    ///
    /// Must be called from within a simulation.
    ///
    /// # Errors
    ///
    /// When `addr` is not `host:port`.
    pub fn connect(addr: &str, host: &SimHost) -> Result<Self> {
        let timeline = host.timeline().clone();
        let target =
            wire::split_addr(addr).ok_or_else(|| Error::Config(format!("broker address {addr:?} is not host:port")))?;
        let (commands, rx) = mpsc::unbounded_channel();
        let session = ClientSession {
            me: host.name().to_owned(),
            timeline: timeline.clone(),
            commands: commands.clone(),
            generation: 0,
            last_id: 0,
            in_flight: BTreeMap::new(),
            subs: BTreeMap::new(),
        };
        let task = tokio::spawn(wire::drive(session, target, host.clone(), rx));
        Ok(Self {
            host: host.name().to_owned(),
            addr: addr.to_owned(),
            timeline,
            commands,
            last_sub: std::sync::atomic::AtomicU64::new(0),
            _task: AbortOnDrop(task),
        })
    }
}

impl EventSystem for SimEvents {
    fn emit(&self, event: Event, delay: Duration) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            lymph_core::event::check_emit(&event.event_type, delay)?;
            let detail = if delay.is_zero() { String::new() } else { format!("delay={delay:?}") };
            self.timeline
                .record(Entry::now(&self.host, "emit", &event.event_type).trace(event.trace_id()).detail(detail));
            let (reply, rx) = oneshot::channel();
            self.commands
                .send(Command::Emit { event, delay, reply })
                .map_err(|_| Error::transport("the broker session task is gone"))?;
            wire::answer(rx, CONFIRM_TIMEOUT, "broker emit").await
        })
    }

    fn subscribe(&self, subscription: Subscription) -> BoxFuture<'_, Result<Deliveries>> {
        Box::pin(async move {
            lymph_core::event::check_subscription(&subscription)?;
            let sub = self.last_sub.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let (tx, deliveries) = mpsc::unbounded_channel();
            let (reply, rx) = oneshot::channel();
            let dropped = tx.clone();
            self.commands
                .send(Command::Subscribe { sub, subscription, tx, reply })
                .map_err(|_| Error::transport("the broker session task is gone"))?;
            wire::answer(rx, REQUEST_TIMEOUT, "broker subscribe").await?;
            // Cancel the consumer as soon as the subscriber lets go, as a RabbitMQ client does,
            // so the broker stops handing it events that would come back out of order.
            let commands = self.commands.clone();
            tokio::spawn(async move {
                dropped.closed().await;
                let _ = commands.send(Command::Cancel { sub });
            });
            Ok(deliveries)
        })
    }
}
