//! The event seam: publishing events and consuming them from queues, with lymph's semantics.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::message::Headers;
use crate::{Result, Value};

/// An event: a typed, fire-and-forget message published to every queue bound to its type.
///
/// On the wire (RabbitMQ) its msgpack form is the map
/// `{"type", "headers", "body", "source"}`, in that order, exactly as lymph 0.15 writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event type, a dotted name such as `order.created`; it is the routing key.
    pub event_type: String,
    /// Headers: `trace_id` always, `retry_count` on a retried delivery.
    pub headers: Headers,
    /// The payload.
    pub body: Value,
    /// The identity of the emitting container.
    pub source: String,
}

impl Event {
    /// Creates an event with the given type and body, no source and a `trace_id` header.
    pub fn new(event_type: impl Into<String>, body: Value, trace_id: Option<String>) -> Self {
        let mut headers = Headers::new();
        headers.insert("trace_id", trace_id.map(Value::from).unwrap_or(Value::Nil));
        Self { event_type: event_type.into(), headers, body, source: String::new() }
    }

    /// The trace id this event carries, if any.
    pub fn trace_id(&self) -> Option<&str> {
        self.headers.trace_id()
    }

    /// The `retry_count` header of a retried delivery.
    pub fn retry_count(&self) -> Option<i64> {
        self.headers.get("retry_count").and_then(Value::as_i64)
    }

    /// The body field `key`, if the body is a map that has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.body.get(key)
    }

    /// Decodes the body into `T`.
    ///
    /// # Errors
    ///
    /// When the body does not have the shape of `T`.
    pub fn body_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        crate::value::from_value(self.body.clone()).map_err(crate::Error::from)
    }

    /// The event as lymph's event map, `{"type", "headers", "body", "source"}`.
    pub fn to_value(&self) -> Value {
        Value::Map(vec![
            (Value::from("type"), Value::from(self.event_type.as_str())),
            (Value::from("headers"), self.headers.to_value()),
            (Value::from("body"), self.body.clone()),
            (Value::from("source"), Value::from(self.source.as_str())),
        ])
    }

    /// Encodes the event as lymph's msgpack event map.
    pub fn to_msgpack(&self) -> Vec<u8> {
        self.to_value().to_msgpack()
    }

    /// Decodes lymph's msgpack event map.
    ///
    /// # Errors
    ///
    /// When the bytes are not msgpack or not an event map.
    pub fn from_msgpack(bytes: &[u8]) -> std::result::Result<Self, crate::message::FrameError> {
        let value = Value::from_msgpack(bytes).map_err(crate::message::FrameError::Msgpack)?;
        Self::from_value(value)
    }

    /// Reads lymph's event map.
    ///
    /// # Errors
    ///
    /// When `value` is not an event map.
    pub fn from_value(value: Value) -> std::result::Result<Self, crate::message::FrameError> {
        use crate::message::FrameError;
        let Value::Map(entries) = value else {
            return Err(FrameError::Shape("an event must be a map"));
        };
        let (mut event_type, mut headers, mut body, mut source) = (None, None, Value::Nil, None);
        for (key, value) in entries {
            match key.as_str() {
                Some("type") => event_type = value.as_str().map(str::to_owned),
                Some("headers") => headers = Some(Headers::from_value(value)?),
                Some("body") => body = value,
                Some("source") => source = Some(value.as_str().unwrap_or_default().to_owned()),
                _ => {}
            }
        }
        Ok(Self {
            event_type: event_type.ok_or(FrameError::Shape("an event needs a string `type`"))?,
            headers: headers.unwrap_or_default(),
            body,
            source: source.unwrap_or_default(),
        })
    }
}

impl std::ops::Index<&str> for Event {
    type Output = Value;

    /// The body field `key`, or `Value::Nil` when the body has no such field (lymph's `event['key']`).
    fn index(&self, key: &str) -> &Value {
        &self.body[key]
    }
}

/// What an event handler subscribes to: one queue, bound to one or more event type patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The queue name, `<interface>-<handler>` unless the handler names its own.
    pub queue: String,
    /// Event type patterns: dotted words, `*` matches one word, `#` zero or more.
    pub patterns: Vec<String>,
    /// Every instance gets every event: the queue is made unique per subscriber and auto-deleted.
    pub broadcast: bool,
    /// Only the first event is wanted: the queue is unique and auto-deleted.
    pub once: bool,
}

/// How a delivery ends; see [`Delivery`].
pub trait Acknowledge: Send + fmt::Debug {
    /// The handler succeeded: the event leaves its queue.
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>>;
    /// The handler failed for good: the event leaves its queue without being handled.
    fn reject(self: Box<Self>) -> BoxFuture<'static, Result<()>>;
    /// The handler failed and may try again: the event leaves its queue and `retry` is published
    /// to this subscription's queue only (lymph's retry exchange, keyed by queue name).
    fn retry(self: Box<Self>, retry: Event) -> BoxFuture<'static, Result<()>>;
}

/// One event delivered to a subscription, to be acknowledged once handled.
#[derive(Debug)]
pub struct Delivery {
    /// The event.
    pub event: Event,
    /// How to settle it; dropping a delivery unsettled leaves the decision to the backend
    /// (a broker redelivers it when the consumer goes away).
    pub acker: Box<dyn Acknowledge>,
}

/// The stream of deliveries of one subscription.
///
/// Unbounded, as lymph consumes without a prefetch limit; dropping it ends the subscription
/// (unsettled deliveries go back to their queue).
pub type Deliveries = mpsc::UnboundedReceiver<Delivery>;

/// Publishes events and delivers them to subscribed queues.
///
/// lymph's event system, with RabbitMQ's semantics: [`emit`](EventSystem::emit) publishes an
/// event to every queue bound to a pattern matching its type; a queue shared by several
/// subscribers (the instances of one service) hands each event to one of them; a `broadcast` or
/// `once` subscription has a queue of its own. An event emitted with a delay is published when
/// the delay has passed.
///
/// Backends: [`MemoryEvents`](crate::memory::MemoryEvents) (in-process), the simulated broker of
/// `lymph-testing`, and RabbitMQ in `lymph-transports`.
pub trait EventSystem: Send + Sync + fmt::Debug {
    /// Publishes `event`, after `delay` when it is not zero.
    ///
    /// # Errors
    ///
    /// When the event system cannot be reached.
    fn emit(&self, event: Event, delay: Duration) -> BoxFuture<'_, Result<()>>;

    /// Declares the subscription's queue and bindings and starts consuming from it.
    ///
    /// # Errors
    ///
    /// When the event system cannot be reached.
    fn subscribe(&self, subscription: Subscription) -> BoxFuture<'_, Result<Deliveries>>;
}

/// The longest event type, queue or exchange name, in bytes: AMQP carries them as short strings
/// (RabbitMQ refuses longer ones), and every backend of lymph-rs keeps to the same limit.
pub const MAX_NAME_LEN: usize = 255;

/// Checks that events of `event_type` can be published: an empty type (an empty routing key)
/// is never what anyone means, and a type longer than [`MAX_NAME_LEN`] bytes cannot be a routing
/// key. [`Context::emit`](crate::Context::emit) and every [`EventSystem`] of lymph-rs refuse them.
///
/// # Errors
///
/// [`Error::Config`](crate::Error::Config) when `event_type` is empty or too long.
pub fn check_event_type(event_type: &str) -> Result<()> {
    if event_type.is_empty() {
        return Err(crate::Error::Config("an event type must not be empty".to_owned()));
    }
    check_name("event type", event_type)
}

/// [`check_event_type`], and for a delayed event (`delay` above zero) the name of lymph's wait
/// queue `<event type>-wait_<delay ms>`, which must fit in [`MAX_NAME_LEN`] bytes too.
///
/// # Errors
///
/// [`Error::Config`](crate::Error::Config) naming what is too long.
pub fn check_emit(event_type: &str, delay: std::time::Duration) -> Result<()> {
    check_event_type(event_type)?;
    if delay.is_zero() {
        return Ok(());
    }
    // The length of `<event type>-wait_<delay ms>`, without building it (emits are a hot path).
    let digits = delay.as_millis().checked_ilog10().map_or(1, |log| log as usize + 1);
    let len = event_type.len() + "-wait_".len() + digits;
    if len > MAX_NAME_LEN {
        return Err(crate::Error::Config(format!(
            "the wait queue of a delayed event \"{}…-wait_{}\" is {len} bytes; at most {MAX_NAME_LEN} (an AMQP short string)",
            truncated(event_type),
            delay.as_millis()
        )));
    }
    Ok(())
}

/// Checks that a subscription's queue name and patterns fit in [`MAX_NAME_LEN`] bytes (a
/// broadcast or once queue gets a suffix of 37 bytes more, which counts too).
///
/// # Errors
///
/// [`Error::Config`](crate::Error::Config) naming what is too long.
pub fn check_subscription(subscription: &Subscription) -> Result<()> {
    // `-<uuid4>`: the suffix lymph gives the unique queue of a broadcast or once subscription.
    const UNIQUE_SUFFIX: usize = 37;
    let queue = &subscription.queue;
    if (subscription.broadcast || subscription.once) && queue.len() + UNIQUE_SUFFIX > MAX_NAME_LEN {
        return Err(crate::Error::Config(format!(
            "the queue name {:?}… is {} bytes with its unique suffix; at most {MAX_NAME_LEN}",
            truncated(queue),
            queue.len() + UNIQUE_SUFFIX
        )));
    }
    check_name("queue name", queue)?;
    subscription.patterns.iter().try_for_each(|pattern| check_name("event type pattern", pattern))
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.len() > MAX_NAME_LEN {
        return Err(crate::Error::Config(format!(
            "the {what} {:?}… is {} bytes; at most {MAX_NAME_LEN} (an AMQP short string)",
            truncated(name),
            name.len()
        )));
    }
    Ok(())
}

/// The first 40 characters of `name`, for error messages.
fn truncated(name: &str) -> String {
    name.chars().take(40).collect()
}

/// Whether the event type `event_type` matches the topic `pattern` (`*` one word, `#` zero or more).
pub fn topic_matches(pattern: &str, event_type: &str) -> bool {
    fn go(pattern: &[&str], words: &[&str]) -> bool {
        match pattern.split_first() {
            None => words.is_empty(),
            Some((&"#", rest)) => (0..=words.len()).any(|skip| go(rest, &words[skip..])),
            Some((&"*", rest)) => !words.is_empty() && go(rest, &words[1..]),
            Some((word, rest)) => words.first() == Some(word) && go(rest, &words[1..]),
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let words: Vec<&str> = event_type.split('.').collect();
    go(&pattern, &words)
}

#[cfg(test)]
mod tests {
    use super::{MAX_NAME_LEN, check_emit, topic_matches};

    #[test]
    fn topic_patterns_follow_rabbitmq() {
        assert!(topic_matches("a.b", "a.b"));
        assert!(!topic_matches("a.b", "a.c"));
        assert!(topic_matches("a.*", "a.b"));
        assert!(!topic_matches("a.*", "a.b.c"));
        assert!(!topic_matches("a.*", "a"));
        assert!(topic_matches("a.#", "a"));
        assert!(topic_matches("a.#", "a.b.c"));
        assert!(topic_matches("#", "anything.at.all"));
        assert!(topic_matches("#.c", "a.b.c"));
        assert!(topic_matches("a.#.c", "a.c"));
        assert!(!topic_matches("a.#.c", "a.b.d"));
        assert!(topic_matches("interop.#", "interop.ping"));
    }

    #[test]
    fn the_wait_queue_limit_is_the_length_of_the_name_it_would_be() {
        for ms in [1u64, 9, 10, 99, 100, 999, 1_000, 123_456, u64::MAX] {
            let delay = std::time::Duration::from_millis(ms);
            let fits = "t".repeat(MAX_NAME_LEN - format!("-wait_{ms}").len());
            assert!(check_emit(&fits, delay).is_ok(), "{ms} ms, {} bytes", fits.len());
            assert!(check_emit(&format!("{fits}t"), delay).is_err(), "{ms} ms, one byte more");
        }
    }
}
