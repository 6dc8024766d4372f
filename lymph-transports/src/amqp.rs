//! Events over RabbitMQ, as lymph 0.15's `KombuEventSystem`.
//!
//! The layout is lymph's, so Python lymph services and [`AmqpEvents`] share one broker:
//!
//! - three durable exchanges: `lymph` (topic; events are published to it with their type as the
//!   routing key), `lymph_waiting` (direct; delayed events) and `lymph_retry` (direct; retried
//!   events, keyed by queue name);
//! - one non-durable queue per subscription, with the argument `x-ha-policy: all`, bound to
//!   `lymph` with each pattern and to `lymph_retry` with its own name; broadcast and once queues
//!   get a `-<uuid4>` suffix and are auto-deleted;
//! - a delayed event goes through the queue `<event type>-wait_<delay ms>`, whose TTL
//!   dead-letters it into `lymph` once the delay has passed;
//! - messages are lymph's msgpack event map, content type `application/lymph+x-msgpack`,
//!   encoding `binary`, persistent (delivery mode 2), priority 0, empty headers.
//!
//! One connection carries everything: a publishing channel in confirm mode (an `emit` that
//! returns `Ok` reached the broker) and one channel per subscription. When the connection is
//! lost, a supervisor task reconnects with a backoff and every live subscription declares,
//! binds and consumes its queue again, feeding the same [`Deliveries`].

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use lymph_core::event::{Acknowledge, Deliveries, Delivery, Event, EventSystem, Subscription};
use lymph_core::{Error, Result};
use tokio::sync::{mpsc, watch};

/// The content type of lymph's msgpack events (kombu serializer `lymph-msgpack`).
const CONTENT_TYPE: &str = "application/lymph+x-msgpack";
/// The content encoding kombu sends with a binary serializer.
const CONTENT_ENCODING: &str = "binary";
/// Persistent, as kombu publishes by default.
const DELIVERY_MODE: u8 = 2;

/// The first wait before reconnecting; doubled after each failed attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often the supervisor looks at the connection besides listening to its events.
const HEALTH_CHECK: Duration = Duration::from_millis(250);
/// How long connecting (TCP and the AMQP handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a publish may wait for the broker's confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Where [`AmqpEvents`] connects and which exchange it uses, lymph's `container.events`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AmqpConfig {
    /// The broker's AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    ///
    /// kombu's spelling of the default vhost, a trailing `//` as in
    /// `amqp://guest:guest@127.0.0.1:5672//`, is accepted, and so is an empty vhost (`.../`),
    /// which kombu also reads as `/`.
    pub url: String,
    /// The name of the topic exchange events are published to (lymph: `lymph`); the waiting and
    /// retry exchanges are named after it, `<exchange>_waiting` and `<exchange>_retry`.
    pub exchange: String,
}

impl AmqpConfig {
    /// lymph's default broker: RabbitMQ on localhost, user `guest`, vhost `/`.
    pub const DEFAULT_URL: &'static str = "amqp://guest:guest@127.0.0.1:5672/%2f";
    /// lymph's default exchange.
    pub const DEFAULT_EXCHANGE: &'static str = "lymph";

    /// The configuration for the broker at `url`, with lymph's default exchange.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), exchange: Self::DEFAULT_EXCHANGE.to_owned() }
    }

    /// Uses the broker at `url`.
    #[must_use]
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Publishes to and binds on the exchange `name` (and `<name>_waiting`, `<name>_retry`).
    #[must_use]
    pub fn with_exchange(mut self, name: impl Into<String>) -> Self {
        self.exchange = name.into();
        self
    }

    /// The name of the exchange delayed events wait in, `<exchange>_waiting`.
    pub fn waiting_exchange(&self) -> String {
        format!("{}_waiting", self.exchange)
    }

    /// The name of the exchange retried events go through, `<exchange>_retry`.
    pub fn retry_exchange(&self) -> String {
        format!("{}_retry", self.exchange)
    }

    /// The URL as lapin reads it: kombu's `//` and an empty vhost become `/%2f`.
    fn amqp_uri(&self) -> String {
        let Some(scheme_end) = self.url.find("://") else { return self.url.clone() };
        let rest = &self.url[scheme_end + 3..];
        let Some(path_start) = rest.find('/') else { return self.url.clone() };
        let path_and_query = &rest[path_start..];
        let (path, query) = match path_and_query.find('?') {
            Some(at) => path_and_query.split_at(at),
            None => (path_and_query, ""),
        };
        if path == "/" || path == "//" {
            format!("{}{}/%2f{}", &self.url[..scheme_end + 3], &rest[..path_start], query)
        } else {
            self.url.clone()
        }
    }
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self::new(Self::DEFAULT_URL)
    }
}

impl fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConfig").field("url", &redact(&self.url)).field("exchange", &self.exchange).finish()
    }
}

/// `url` with its password, if any, replaced by `***`, for logs and error messages.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..].find('/').map_or(url.len(), |at| authority_start + at);
    let Some(at) = url[authority_start..authority_end].rfind('@') else { return url.to_owned() };
    let userinfo = &url[authority_start..authority_start + at];
    match userinfo.find(':') {
        Some(colon) => {
            format!("{}{}:***{}", &url[..authority_start], &userinfo[..colon], &url[authority_start + at..])
        }
        None => url.to_owned(),
    }
}

/// lymph's events over RabbitMQ: the [`EventSystem`] of a container in a cluster, wire-compatible
/// with Python lymph 0.15's `KombuEventSystem`.
///
/// - [`emit`](EventSystem::emit) publishes to the `lymph` topic exchange with the event type as
///   the routing key and waits for the broker's confirm. Emits may run concurrently; their
///   confirms are awaited in parallel on one channel. With a delay, the event goes through
///   lymph's wait queue `<event type>-wait_<delay ms>` and the `lymph_waiting` exchange.
/// - [`subscribe`](EventSystem::subscribe) declares the subscription's queue and its bindings
///   and consumes it without a prefetch limit, as lymph does. Several subscriptions of one queue
///   name compete for its events (RabbitMQ hands them out round-robin); a broadcast or once
///   subscription gets its own auto-delete queue `<queue>-<uuid4>`; a once subscription ends
///   after its first event.
/// - Settling a delivery: `ack` is `basic.ack`; `reject` is `basic.reject` without requeueing;
///   `retry(event)` publishes `event` to `lymph_retry` with the queue name as routing key, so
///   only this queue gets it again, then rejects the original. A message that is not a lymph
///   event is logged and rejected.
/// - Dropping a subscription's [`Deliveries`] cancels its consumer; deliveries left unsettled go
///   back to the queue.
/// - When the connection is lost, emits fail at once with [`Error::Transport`] while a
///   supervisor reconnects (100 ms backoff, doubling up to 2 s, forever), declares the exchanges
///   again, and every live subscription declares, binds and consumes its queue again, feeding
///   the same [`Deliveries`]. Events published while a queue did not exist are lost, as with
///   lymph.
///
/// Cloning gives another handle to the same connection; the connection is closed and every
/// subscription ends once the last handle is dropped.
#[derive(Clone)]
pub struct AmqpEvents {
    shared: Arc<Shared>,
}

/// What the handles, the supervisor, the subscriptions and the ackers share.
struct Shared {
    config: AmqpConfig,
    /// The URL for lapin, see [`AmqpConfig::amqp_uri`].
    uri: String,
    /// The URL without its password, for messages.
    display_url: String,
    waiting_exchange: String,
    retry_exchange: String,
    /// The live connection, `None` while reconnecting.
    link: watch::Sender<Option<Arc<Link>>>,
    /// The queues of the live subscriptions, declared again on a new connection before emits
    /// may use it. Each subscription's task holds the only strong reference to its entry.
    subscriptions: Mutex<Vec<Weak<Registration>>>,
}

/// A live subscription, as [`Shared::subscriptions`] knows it.
struct Registration {
    queue: Arc<QueueSpec>,
}

/// One connection to the broker, with the exchanges declared and a publishing channel.
struct Link {
    /// Counts the connections made, so that a subscription can tell a new one from the old.
    generation: u64,
    connection: Connection,
    /// The channel events are published on, in confirm mode.
    publisher: Channel,
    /// The wait queues declared on this connection (they are not durable: a broker restart
    /// loses them).
    wait_queues: Mutex<HashSet<String>>,
}

impl Link {
    /// Connects to the broker and declares lymph's exchanges.
    async fn connect(shared: &Shared, generation: u64) -> Result<Self> {
        let url = &shared.display_url;
        let properties = ConnectionProperties::default().with_connection_name("lymph-rs".into());
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&shared.uri, properties))
            .await
            .map_err(|_| {
                Error::transport(format!("cannot connect to RabbitMQ at {url}: no answer within {CONNECT_TIMEOUT:?}"))
            })?
            .map_err(|error| Error::transport(format!("cannot connect to RabbitMQ at {url}: {error}")))?;
        let publisher = connection
            .create_channel()
            .await
            .map_err(|error| Error::transport(format!("cannot open a channel on {url}: {error}")))?;
        let exchanges = [
            (shared.config.exchange.as_str(), ExchangeKind::Topic),
            (shared.waiting_exchange.as_str(), ExchangeKind::Direct),
            (shared.retry_exchange.as_str(), ExchangeKind::Direct),
        ];
        for (name, kind) in exchanges {
            publisher
                .exchange_declare(
                    name.into(),
                    kind,
                    ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
                    FieldTable::default(),
                )
                .await
                .map_err(|error| Error::transport(format!("cannot declare the exchange {name:?} on {url}: {error}")))?;
        }
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|error| Error::transport(format!("cannot enable publisher confirms on {url}: {error}")))?;
        Ok(Self { generation, connection, publisher, wait_queues: Mutex::new(HashSet::new()) })
    }

    /// Whether the connection and the publishing channel are still open.
    fn is_healthy(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

/// The properties lymph's kombu producer sends with every event.
fn event_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_content_encoding(CONTENT_ENCODING.into())
        .with_headers(FieldTable::default())
        .with_delivery_mode(DELIVERY_MODE)
        .with_priority(0)
}

/// lymph's queue arguments, `{"x-ha-policy": "all"}`, plus `extra`.
fn queue_arguments(extra: impl IntoIterator<Item = (&'static str, AMQPValue)>) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-ha-policy".into(), AMQPValue::LongString("all".into()));
    for (key, value) in extra {
        arguments.insert(key.into(), value);
    }
    arguments
}

/// An integer argument as py-amqp encodes a Python int: 32 bits when it fits.
fn int_argument(n: u64) -> AMQPValue {
    match i32::try_from(n) {
        Ok(n) => AMQPValue::LongInt(n),
        Err(_) => AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX)),
    }
}

/// A random (version 4) UUID in its hyphenated form, as Python's `str(uuid4())`.
fn uuid4() -> String {
    let mut bytes = rand::random::<u128>().to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

impl Shared {
    /// The live connection, or an error saying that it is being re-established.
    fn current(&self) -> Result<Arc<Link>> {
        match &*self.link.borrow() {
            Some(link) if link.is_healthy() => Ok(Arc::clone(link)),
            _ => Err(Error::transport(format!(
                "not connected to RabbitMQ at {} (the connection was lost, reconnecting)",
                self.display_url
            ))),
        }
    }

    /// Publishes `payload` as a lymph event and waits for the broker's confirm.
    async fn publish(&self, link: &Link, exchange: &str, routing_key: &str, payload: &[u8]) -> Result<()> {
        let url = &self.display_url;
        let confirm = link
            .publisher
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                payload,
                event_properties(),
            )
            .await
            .map_err(|error| Error::transport(format!("cannot publish to {exchange:?} on {url}: {error}")))?;
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| {
                Error::transport(format!("RabbitMQ at {url} did not confirm a publish within {CONFIRM_TIMEOUT:?}"))
            })?
            .map_err(|error| Error::transport(format!("publish to {exchange:?} on {url} not confirmed: {error}")))?;
        if confirmation.is_nack() {
            return Err(Error::transport(format!("RabbitMQ at {url} refused a publish to {exchange:?} (nack)")));
        }
        Ok(())
    }

    /// Declares lymph's wait queue for `event_type` and `delay_ms` on `link`, once per connection.
    async fn declare_wait_queue(&self, link: &Link, event_type: &str, delay_ms: u64) -> Result<()> {
        let name = format!("{event_type}-wait_{delay_ms}");
        if lock(&link.wait_queues).contains(&name) {
            return Ok(());
        }
        let url = &self.display_url;
        let failed = |what: &str, error: lapin::Error| {
            Error::transport(format!("cannot {what} the wait queue {name:?} on {url}: {error}"))
        };
        // A channel of its own: a refused declaration closes the channel it was made on.
        let channel = link.connection.create_channel().await.map_err(|error| failed("open a channel for", error))?;
        let arguments = queue_arguments([
            ("x-dead-letter-exchange", AMQPValue::LongString(self.config.exchange.as_str().into())),
            ("x-dead-letter-routing-key", AMQPValue::LongString(event_type.into())),
            ("x-message-ttl", int_argument(delay_ms)),
        ]);
        channel
            .queue_declare(name.as_str().into(), QueueDeclareOptions::default(), arguments)
            .await
            .map_err(|error| failed("declare", error))?;
        channel
            .queue_bind(
                name.as_str().into(),
                self.waiting_exchange.as_str().into(),
                event_type.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|error| failed("bind", error))?;
        let _ = channel.close(200, "OK".into()).await;
        lock(&link.wait_queues).insert(name);
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AmqpEvents {
    /// Connects to the broker and declares lymph's three exchanges.
    ///
    /// Must be called from within a tokio runtime; lapin runs the connection's IO on a thread
    /// of its own, and a supervisor task that reconnects on failure is spawned on the runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Transport`], naming the URL (without its password), when the broker cannot be
    /// reached or refuses the login or the exchanges (e.g. `lymph` exists with another type).
    pub async fn connect(config: AmqpConfig) -> Result<Self> {
        let (link, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            uri: config.amqp_uri(),
            display_url: redact(&config.url),
            waiting_exchange: config.waiting_exchange(),
            retry_exchange: config.retry_exchange(),
            config,
            link,
            subscriptions: Mutex::new(Vec::new()),
        });
        let first = Arc::new(Link::connect(&shared, 1).await?);
        shared.link.send_replace(Some(Arc::clone(&first)));
        tracing::debug!(url = %shared.display_url, "connected to RabbitMQ");
        tokio::spawn(supervise(Arc::downgrade(&shared), first));
        Ok(Self { shared })
    }

    /// The configuration this event system was connected with.
    pub fn config(&self) -> &AmqpConfig {
        &self.shared.config
    }

    /// Whether the connection to the broker is up now (it is being re-established otherwise).
    pub fn is_connected(&self) -> bool {
        self.shared.current().is_ok()
    }
}

impl fmt::Debug for AmqpEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpEvents")
            .field("url", &self.shared.display_url)
            .field("exchange", &self.shared.config.exchange)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl EventSystem for AmqpEvents {
    fn emit(&self, event: Event, delay: Duration) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            lymph_core::event::check_emit(&event.event_type, delay)?;
            let shared = &self.shared;
            let link = shared.current()?;
            let payload = event.to_msgpack();
            let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            if delay_ms == 0 {
                shared.publish(&link, &shared.config.exchange, &event.event_type, &payload).await
            } else {
                shared.declare_wait_queue(&link, &event.event_type, delay_ms).await?;
                shared.publish(&link, &shared.waiting_exchange, &event.event_type, &payload).await
            }
        })
    }

    fn subscribe(&self, subscription: Subscription) -> BoxFuture<'_, Result<Deliveries>> {
        Box::pin(async move {
            // lapin panics on a short string over 255 bytes: refuse such names first.
            lymph_core::event::check_subscription(&subscription)?;
            let shared = &self.shared;
            let unique = subscription.broadcast || subscription.once;
            let name = if unique { format!("{}-{}", subscription.queue, uuid4()) } else { subscription.queue.clone() };
            let queue = Arc::new(QueueSpec {
                name,
                patterns: subscription.patterns,
                auto_delete: unique,
                once: subscription.once,
                exchange: shared.config.exchange.clone(),
                retry_exchange: shared.retry_exchange.clone(),
            });
            let link = shared.current()?;
            let (channel, consumer) = queue.consume(&link).await.map_err(|error| {
                Error::transport(format!("cannot subscribe {:?} on {}: {error}", queue.name, shared.display_url))
            })?;
            tracing::debug!(queue = %queue.name, patterns = ?queue.patterns, "subscribed");
            let (tx, rx) = mpsc::unbounded_channel();
            let consuming = Consuming { generation: link.generation, channel, consumer };
            drop(link);
            let links = shared.link.subscribe();
            let registration = Arc::new(Registration { queue: Arc::clone(&queue) });
            {
                let mut subscriptions = lock(&shared.subscriptions);
                subscriptions.retain(|entry| entry.strong_count() > 0);
                subscriptions.push(Arc::downgrade(&registration));
            }
            tokio::spawn(run_subscription(Arc::downgrade(shared), links, registration, consuming, tx));
            Ok(rx)
        })
    }
}

/// Watches the connection and replaces it when it is lost, until the last handle is dropped.
async fn supervise(shared: Weak<Shared>, mut link: Arc<Link>) {
    loop {
        if !wait_until_lost(&shared, &link).await {
            return;
        }
        let generation = link.generation + 1;
        drop(link);
        {
            let Some(shared) = shared.upgrade() else { return };
            shared.link.send_replace(None);
            tracing::warn!(url = %shared.display_url, "connection to RabbitMQ lost, reconnecting");
        }
        let mut backoff = MIN_BACKOFF;
        link = loop {
            let attempt = {
                let Some(shared) = shared.upgrade() else { return };
                Link::connect(&shared, generation).await
            };
            match attempt {
                Ok(link) => break Arc::new(link),
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "reconnecting to RabbitMQ failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        let Some(strong) = shared.upgrade() else { return };
        redeclare_queues(&strong, &link).await;
        strong.link.send_replace(Some(Arc::clone(&link)));
        tracing::info!(url = %strong.display_url, "reconnected to RabbitMQ");
    }
}

/// Declares and binds the queues of the live subscriptions on a new connection, so that no event
/// emitted once the connection is in use misses a queue (their consumers follow).
async fn redeclare_queues(shared: &Shared, link: &Link) {
    let queues: Vec<Arc<QueueSpec>> = lock(&shared.subscriptions)
        .iter()
        .filter_map(Weak::upgrade)
        .map(|registration| Arc::clone(&registration.queue))
        .collect();
    for queue in queues {
        // A channel per queue: a refused declaration closes its channel.
        let declared = match link.connection.create_channel().await {
            Ok(channel) => {
                let declared = queue.declare(&channel).await;
                let _ = channel.close(200, "OK".into()).await;
                declared
            }
            Err(error) => Err(error),
        };
        if let Err(error) = declared {
            tracing::warn!(queue = %queue.name, %error, "cannot declare a subscription's queue again");
        }
    }
}

/// Waits until `link` is lost (`true`) or the last handle is dropped (`false`).
async fn wait_until_lost(shared: &Weak<Shared>, link: &Link) -> bool {
    let mut events = Box::pin(link.connection.events_listener());
    let mut tick = tokio::time::interval(HEALTH_CHECK);
    loop {
        if shared.strong_count() == 0 {
            return false;
        }
        if !link.is_healthy() {
            return true;
        }
        tokio::select! {
            Some(event) = events.next() => tracing::debug!(?event, "RabbitMQ connection event"),
            _ = tick.tick() => {}
        }
    }
}

/// A subscription's queue: how to declare, bind and consume it.
#[derive(Debug)]
struct QueueSpec {
    /// The queue name, with the unique suffix of a broadcast or once subscription.
    name: String,
    patterns: Vec<String>,
    auto_delete: bool,
    once: bool,
    exchange: String,
    retry_exchange: String,
}

impl QueueSpec {
    /// Declares the queue and its bindings on a channel of its own and starts consuming.
    async fn consume(&self, link: &Link) -> lapin::Result<(Arc<Channel>, Consumer)> {
        let channel = link.connection.create_channel().await?;
        self.declare(&channel).await?;
        let consumer = channel
            .basic_consume(self.name.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await?;
        Ok((Arc::new(channel), consumer))
    }

    /// Declares the queue with lymph's arguments and binds it to the exchange with each pattern
    /// and to the retry exchange with its name.
    async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let options = QueueDeclareOptions { auto_delete: self.auto_delete, ..QueueDeclareOptions::default() };
        channel.queue_declare(self.name.as_str().into(), options, queue_arguments([])).await?;
        let name = ShortString::from(self.name.as_str());
        for pattern in &self.patterns {
            channel
                .queue_bind(
                    name.clone(),
                    self.exchange.as_str().into(),
                    pattern.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        channel
            .queue_bind(
                name.clone(),
                self.retry_exchange.as_str().into(),
                name,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    }
}

/// A consumer of a subscription's queue on one connection.
struct Consuming {
    generation: u64,
    /// Kept by every delivery's acker too, so that the channel outlives the consumer until the
    /// deliveries are settled.
    channel: Arc<Channel>,
    consumer: Consumer,
}

/// Why forwarding stopped.
enum Flow {
    /// The subscription is over: its receiver was dropped, the once event was delivered or the
    /// event system was dropped.
    Done,
    /// The consumer or its connection went away: consume again.
    Lost,
}

/// Forwards a subscription's deliveries across reconnections until the subscription ends.
async fn run_subscription(
    shared: Weak<Shared>,
    mut links: watch::Receiver<Option<Arc<Link>>>,
    registration: Arc<Registration>,
    mut consuming: Consuming,
    tx: mpsc::UnboundedSender<Delivery>,
) {
    let queue = &registration.queue;
    loop {
        match forward(&shared, &mut links, queue, &mut consuming, &tx).await {
            Flow::Done => {
                let tag = consuming.consumer.tag();
                if consuming.channel.status().connected() {
                    let _ = consuming.channel.basic_cancel(tag, BasicCancelOptions::default()).await;
                }
                tracing::debug!(queue = %queue.name, "subscription ended");
                return;
            }
            Flow::Lost => {
                tracing::debug!(queue = %queue.name, "consumer lost, consuming again once connected");
            }
        }
        let same_link_healthy =
            links.borrow().as_ref().is_some_and(|link| link.generation == consuming.generation && link.is_healthy());
        let mut backoff = MIN_BACKOFF;
        if same_link_healthy {
            // Only the consumer went away (the queue was deleted, the channel closed): do not spin.
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(backoff) => {}
            }
        }
        consuming = loop {
            let link = tokio::select! {
                () = tx.closed() => return,
                link = links.wait_for(|link| link.as_ref().is_some_and(|link| link.is_healthy())) => match link {
                    Ok(link) => link.clone(),
                    Err(_) => return,
                },
            };
            let Some(link) = link else { continue };
            match queue.consume(&link).await {
                Ok((channel, consumer)) => {
                    tracing::info!(queue = %queue.name, "consuming again after reconnecting");
                    break Consuming { generation: link.generation, channel, consumer };
                }
                Err(error) => {
                    tracing::warn!(queue = %queue.name, %error, retry_in = ?backoff, "cannot consume again");
                    drop(link);
                    tokio::select! {
                        () = tx.closed() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
    }
}

/// Forwards deliveries from one consumer until it or the subscription ends.
async fn forward(
    shared: &Weak<Shared>,
    links: &mut watch::Receiver<Option<Arc<Link>>>,
    queue: &Arc<QueueSpec>,
    consuming: &mut Consuming,
    tx: &mpsc::UnboundedSender<Delivery>,
) -> Flow {
    let generation = consuming.generation;
    loop {
        let next = tokio::select! {
            biased;
            () = tx.closed() => return Flow::Done,
            changed = links.wait_for(|link| link.as_ref().is_none_or(|link| link.generation != generation)) => {
                return if changed.is_ok() { Flow::Lost } else { Flow::Done };
            }
            next = consuming.consumer.next() => next,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => {
                tracing::debug!(queue = %queue.name, %error, "consumer failed");
                return Flow::Lost;
            }
            None => return Flow::Lost,
        };
        let event = match Event::from_msgpack(&delivery.data) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(
                    queue = %queue.name,
                    routing_key = %delivery.routing_key,
                    %error,
                    "a message that is not a lymph event was rejected"
                );
                if let Err(error) = delivery.acker.reject(BasicRejectOptions { requeue: false }).await {
                    tracing::warn!(queue = %queue.name, %error, "cannot reject a malformed message");
                }
                continue;
            }
        };
        let acker = AmqpAcker {
            acker: delivery.acker,
            _channel: Arc::clone(&consuming.channel),
            queue: Arc::clone(queue),
            shared: Weak::clone(shared),
        };
        if tx.send(Delivery { event, acker: Box::new(acker) }).is_err() {
            return Flow::Done;
        }
        if queue.once {
            return Flow::Done;
        }
    }
}

/// Settles one delivery of an [`AmqpEvents`] subscription.
struct AmqpAcker {
    acker: lapin::Acker,
    /// Keeps the channel open until the delivery is settled (a closed channel requeues it).
    _channel: Arc<Channel>,
    queue: Arc<QueueSpec>,
    shared: Weak<Shared>,
}

impl fmt::Debug for AmqpAcker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpAcker").field("queue", &self.queue.name).finish_non_exhaustive()
    }
}

impl AmqpAcker {
    /// Maps lapin's outcome of a `basic.ack` or `basic.reject`.
    fn settled(&self, what: &str, outcome: lapin::Result<bool>) -> Result<()> {
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::transport(format!(
                "cannot {what} an event of {:?}: its channel is closed, RabbitMQ delivers it again",
                self.queue.name
            ))),
            Err(error) => Err(Error::transport(format!("cannot {what} an event of {:?}: {error}", self.queue.name))),
        }
    }

    async fn reject_now(&self) -> Result<()> {
        let outcome = self.acker.reject(BasicRejectOptions { requeue: false }).await;
        self.settled("reject", outcome)
    }
}

impl Acknowledge for AmqpAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            let outcome = self.acker.ack(BasicAckOptions::default()).await;
            self.settled("ack", outcome)
        })
    }

    fn reject(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move { self.reject_now().await })
    }

    fn retry(self: Box<Self>, retry: Event) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            let shared =
                self.shared.upgrade().ok_or_else(|| Error::transport("the RabbitMQ event system was dropped"))?;
            let link = shared.current()?;
            let queue = &self.queue;
            shared.publish(&link, &queue.retry_exchange, &queue.name, &retry.to_msgpack()).await?;
            drop(link);
            drop(shared);
            self.reject_now().await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{AmqpConfig, redact, uuid4};

    #[test]
    fn kombu_urls_name_the_default_vhost() {
        let uri = |url: &str| AmqpConfig::new(url).amqp_uri();
        assert_eq!(uri("amqp://guest:guest@127.0.0.1:5672//"), "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(uri("amqp://guest:guest@127.0.0.1:5672/"), "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(uri("amqp://h:5672//?heartbeat=5"), "amqp://h:5672/%2f?heartbeat=5");
        assert_eq!(uri("amqp://h:5672/%2f"), "amqp://h:5672/%2f");
        assert_eq!(uri("amqp://h:5672/prod"), "amqp://h:5672/prod");
        assert_eq!(uri("amqp://h:5672"), "amqp://h:5672");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("amqp://guest:secret@127.0.0.1:5672//"), "amqp://guest:***@127.0.0.1:5672//");
        assert_eq!(redact("amqp://guest@h/%2f"), "amqp://guest@h/%2f");
        assert_eq!(redact("amqp://h:5672/x"), "amqp://h:5672/x");
        let debug = format!("{:?}", AmqpConfig::new("amqp://u:p4ss@h//"));
        assert!(!debug.contains("p4ss"), "{debug}");
    }

    #[test]
    fn uuids_look_like_python_uuid4() {
        let id = uuid4();
        assert_eq!(id.len(), 36);
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert_ne!(id, uuid4());
    }
}
