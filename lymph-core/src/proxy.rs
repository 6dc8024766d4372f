//! Calling services: [`Proxy`], the dynamic client every typed client wraps.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::container::Shared;
use crate::error::NotConnectedReason;
use crate::version::Version;
use crate::{Error, Message, MessageKind, Result, Value, codec};

/// A client of one service (or one endpoint): `proxy.call("upper", &args)` sends the request
/// `<service>.upper` to one of its instances and decodes the reply.
///
/// Made by [`Context::proxy`](crate::Context::proxy) or [`Container::proxy`](crate::Container::proxy),
/// it carries the trace id of the context it came from. Instance choice is lymph's: look the
/// service up in the registry, keep the instances whose version satisfies the requested one,
/// skip those that stopped answering heartbeats, pick one at random (from the container's seeded
/// generator). Registrations that cannot be used do not fail a call while a usable instance
/// exists: an instance whose version does not parse is skipped, and one that the request
/// certainly could not be sent to (its endpoint does not parse, nothing listens there) is marked
/// unresponsive until it answers and the request goes to another; each such instance is logged
/// once. A request that may have been delivered is never sent twice. Cloning is cheap.
///
/// # Errors
///
/// Calls fail with [`Error::Timeout`], [`Error::Nack`], [`Error::RemoteError`],
/// [`Error::LookupFailure`] or [`Error::NotConnected`].
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
    address: Arc<str>,
    namespace: Arc<str>,
    version: Option<Arc<str>>,
    timeout: Duration,
    trace_id: Arc<str>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("version", &self.version)
            .field("timeout", &self.timeout)
            .field("trace_id", &self.trace_id)
            .finish()
    }
}

impl Proxy {
    pub(crate) fn new(shared: Arc<Shared>, address: &str, trace_id: Arc<str>) -> Self {
        let timeout = shared.timeout;
        Self { shared, address: address.into(), namespace: address.into(), version: None, timeout, trace_id }
    }

    /// The service name or endpoint this proxy calls.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sets the request timeout (the container's, 3 s by default, otherwise).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Only calls instances whose version satisfies `requirement` (caret: `1.2` accepts
    /// `1.2.0 <= v < 2.0.0`), as lymph's `proxy(name, version='1.2')`.
    pub fn version(mut self, requirement: &str) -> Self {
        self.version = Some(requirement.into());
        self
    }

    /// Sets the subject prefix (the service name by default; `lymph` to call the built-in interface).
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The same proxy in the trace `trace_id`.
    pub fn with_trace_id(mut self, trace_id: &str) -> Self {
        self.trace_id = trace_id.into();
        self
    }

    /// The trace id the proxy's requests carry.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// Calls `method` with `args` (encoded as a map of keyword arguments) and decodes the reply.
    ///
    /// # Errors
    ///
    /// See [`Proxy`]; also [`Error::Decode`] when the reply does not decode as `R`.
    pub async fn call<R: DeserializeOwned, A: Serialize + ?Sized>(&self, method: &str, args: &A) -> Result<R> {
        let body = codec::to_msgpack(args)?;
        let subject = format!("{}.{method}", self.namespace);
        let reply = self.request_subject(&subject, Bytes::from(body)).await?;
        decode_reply(&subject, reply)
    }

    /// Applies the task `task` of the service: emits `lymph.tasks.<service>.<task>` with `args`
    /// (a map of keyword arguments) as its body, for a worker of the service to run (lymph's
    /// `self.<task>.apply(**kwargs)`). Returns once the event system took the event.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] when `args` cannot be encoded, or an event system error.
    pub async fn apply<A: Serialize + ?Sized>(&self, task: &str, args: &A) -> Result<()> {
        let body = crate::value::to_value(args)?;
        let event_type = crate::interface::EventHandlerSpec::task_event_type(&self.namespace, task);
        self.shared.emit(&event_type, body, &self.trace_id, std::time::Duration::ZERO).await
    }

    /// Calls `method` in a task of its own and returns at once; `.await` the result later
    /// (lymph's `.defer()`). Must be called within a tokio runtime.
    pub fn defer<R, A>(&self, method: &str, args: &A) -> Deferred<R>
    where
        R: DeserializeOwned + Send + 'static,
        A: Serialize + ?Sized,
    {
        let proxy = self.clone();
        let method = method.to_owned();
        let body = codec::to_msgpack(args);
        Deferred {
            handle: tokio::spawn(async move {
                let subject = format!("{}.{method}", proxy.namespace);
                let reply = proxy.request_subject(&subject, Bytes::from(body?)).await?;
                decode_reply(&subject, reply)
            }),
        }
    }

    /// Sends `method` with a raw msgpack `body` and returns the reply message, whatever its kind
    /// (REP, ERROR, NACK or ACK).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], [`Error::LookupFailure`], [`Error::NotConnected`], or a transport error.
    pub async fn request(&self, method: &str, body: Bytes) -> Result<Message> {
        self.request_subject(&format!("{}.{method}", self.namespace), body).await
    }

    /// Sends the request to an instance chosen by [`pick`](Self::pick); while sending certainly
    /// fails before the request left ([`Error::is_not_sent`]: an endpoint that does not parse or
    /// refuses the connection), marks that instance unreachable and sends to another one. A
    /// request that may have reached a handler (a timeout, any other error) is never sent again.
    async fn request_subject(&self, subject: &str, body: Bytes) -> Result<Message> {
        if self.address.contains("://") {
            return self.shared.request(&self.address, subject, None, &self.trace_id, body, self.timeout).await;
        }
        let mut tried: Vec<String> = Vec::new();
        let mut last_error = None;
        loop {
            let (endpoint, version) = match self.pick(&tried).await {
                Ok(chosen) => chosen,
                // Every instance left failed as the last one did: its error says more.
                Err(error) => return Err(last_error.unwrap_or(error)),
            };
            let sent =
                self.shared.request(&endpoint, subject, version.as_deref(), &self.trace_id, body.clone(), self.timeout);
            match sent.await {
                Err(error) if error.is_not_sent() => {
                    self.shared.peer_unreachable(&endpoint);
                    if self.shared.skipped.first(&endpoint) {
                        tracing::warn!(
                            target: crate::TRACING_TARGET, service = %self.address, endpoint, %error,
                            "cannot send to an instance, skipping it until it answers"
                        );
                    }
                    tried.push(endpoint);
                    last_error = Some(error);
                }
                result => return result,
            }
        }
    }

    /// Chooses the instance to send to, not one of `tried`: its endpoint and the version header
    /// to send. Instances whose registered version is not a version are skipped (and logged once).
    async fn pick(&self, tried: &[String]) -> Result<(String, Option<String>)> {
        let requirement = self.version.as_deref().map(Version::parse).transpose()?;
        let not_connected = |reason| {
            let service = match &self.version {
                Some(v) => format!("{}@{v}", self.address),
                None => self.address.to_string(),
            };
            Error::NotConnected { service, reason }
        };
        let watch = self.shared.instances(&self.address).await?;
        let instances = watch.borrow();
        if instances.is_empty() {
            return Err(not_connected(NotConnectedReason::NoInstances));
        }
        let matching: Vec<_> = instances
            .iter()
            .filter(|instance| {
                let version = match instance.version.as_deref().map(Version::parse) {
                    None => None,
                    Some(Ok(version)) => Some(version),
                    Some(Err(error)) => {
                        if self.shared.skipped.first(&instance.id) {
                            tracing::warn!(
                                target: crate::TRACING_TARGET, service = %self.address, instance = %instance.id,
                                endpoint = %instance.endpoint, version = ?instance.version, %error,
                                "an instance registered an invalid version, skipping it"
                            );
                        }
                        return false;
                    }
                };
                match &requirement {
                    None => true,
                    Some(requirement) => version.is_some_and(|v| v.satisfies(requirement)),
                }
            })
            .collect();
        if matching.is_empty() {
            return Err(not_connected(NotConnectedReason::NoMatchingVersion));
        }
        let alive: Vec<_> = matching
            .iter()
            .filter(|i| !tried.contains(&i.endpoint) && self.shared.peer_status(&i.endpoint).is_alive())
            .collect();
        if alive.is_empty() {
            return Err(not_connected(NotConnectedReason::AllUnresponsive(matching.len())));
        }
        let chosen = alive[self.shared.with_rng(|rng| rng.random_range(0..alive.len()))];
        Ok((chosen.endpoint.clone(), chosen.version.clone()))
    }
}

/// The instances that proxies skipped, by instance id or endpoint, so each is logged once and
/// not once per call. Bounded: past [`Skipped::LIMIT`] it starts afresh.
#[derive(Debug, Default)]
pub(crate) struct Skipped(Mutex<BTreeSet<String>>);

impl Skipped {
    const LIMIT: usize = 4096;

    /// Whether `key` is skipped for the first time (and should be logged).
    pub(crate) fn first(&self, key: &str) -> bool {
        let mut skipped = self.0.lock().expect("skipped lock");
        if skipped.contains(key) {
            return false;
        }
        if skipped.len() >= Self::LIMIT {
            skipped.clear();
        }
        skipped.insert(key.to_owned())
    }
}

impl Message {
    /// Turns this reply to a request for `subject` into the call's result, as
    /// [`Proxy::call`] does: a REP's (or ACK's) body decoded as `R`, an ERROR as
    /// [`Error::RemoteError`], a NACK as [`Error::Nack`].
    ///
    /// # Errors
    ///
    /// As described, and [`Error::Decode`] when the body does not decode as `R`.
    pub fn into_reply<R: DeserializeOwned>(self, subject: &str) -> Result<R> {
        decode_reply(subject, self)
    }
}

/// Turns a reply into the call's result.
fn decode_reply<R: DeserializeOwned>(subject: &str, reply: Message) -> Result<R> {
    match reply.kind {
        MessageKind::Rep | MessageKind::Ack => Ok(codec::from_msgpack(&reply.body)?),
        MessageKind::Error => {
            let body = reply.body_value()?;
            let text = |key| body.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
            Err(Error::RemoteError { type_name: text("type"), message: text("message") })
        }
        MessageKind::Nack | MessageKind::Req => Err(Error::Nack { subject: subject.to_owned() }),
    }
}

/// A call running in the background, made by [`Proxy::defer`]; `.await` it for the result.
#[derive(Debug)]
pub struct Deferred<R> {
    handle: tokio::task::JoinHandle<Result<R>>,
}

impl<R> std::future::Future for Deferred<R> {
    type Output = Result<R>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<R>> {
        std::pin::Pin::new(&mut self.handle).poll(cx).map(|joined| match joined {
            Ok(result) => result,
            Err(error) => Err(Error::transport(error)),
        })
    }
}
