//! The simulated registry: a ZooKeeper-like host with sessions, ephemeral registrations and
//! watches, and its client [`SimRegistry`].
//!
//! Registrations live in one of two namespaces, as in lymph's ZooKeeper layout: `services` (RPC
//! interfaces, discovered and watched) and `http` (web interfaces, looked up). Both are owned
//! by the session that made them and both come back after a reconnect.
//!
//! # Protocol
//!
//! One TCP connection per client session; every message is a u32 big-endian length followed by
//! msgpack (serde, maps with field names). The client sends [`ClientMessage`]s `{id, request}`;
//! the server answers each with a `Reply {id, result}` and pushes an `Update {service,
//! instances}` whenever a watched service changes (web registrations are not watched). `Ping`
//! (id 0) is answered with `Pong`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use lymph_core::memory::MemoryRegistry;
use lymph_core::registry::{InstanceWatch, Registry, ServiceInstance, WebInstance};
use lymph_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use turmoil::net::TcpListener;

use super::REQUEST_TIMEOUT;
use super::SimHost;
use super::wire::{self, AbortOnDrop, Link, Liveness, Out, Session};
use crate::timeline::{Entry, Timeline};

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Request {
    Register { service: String, instance: Box<ServiceInstance> },
    Unregister { service: String, id: String },
    Discover,
    Watch { service: String },
    RegisterWeb { service: String, instance: Box<WebInstance> },
    UnregisterWeb { service: String, id: String },
    LookupWeb { service: String },
    Ping,
}

#[derive(Debug, Serialize, Deserialize)]
struct ClientMessage {
    id: u64,
    request: Request,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Done,
    Services(Vec<String>),
    Instances(Vec<ServiceInstance>),
    WebInstances(Vec<WebInstance>),
}

#[derive(Debug, Serialize, Deserialize)]
enum Failure {
    LookupFailure(String),
}

#[derive(Debug, Serialize, Deserialize)]
enum ServerMessage {
    Reply { id: u64, result: std::result::Result<Reply, Failure> },
    Update { service: String, instances: Vec<ServiceInstance> },
    Pong,
}

/// The namespace of a registration, as lymph's ZooKeeper paths `/services/…` and `/http/…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Namespace {
    Services,
    Http,
}

/// A registration: its namespace, service name and instance id.
type Key = (Namespace, String, String);

// ---------------------------------------------------------------------------------------------
// Server

/// Runs a simulated registry on `port` with a fresh, empty registry: the body of a turmoil host.
///
/// ```no_run
/// # let mut sim = turmoil::Builder::new().build();
/// use lymph_testing::Timeline;
/// use lymph_testing::sim::{self, SimHost};
/// sim.host("registry", || sim::registry_server(SimHost::new("registry", Timeline::new()), sim::DEFAULT_REGISTRY_PORT));
/// ```
///
/// `host` is the turmoil host it runs on; powering it off closes every session.
///
/// Must be called from within a simulation.
///
/// # Errors
///
/// When the port cannot be bound.
pub async fn registry_server(host: SimHost, port: u16) -> turmoil::Result {
    registry_server_on(host, port, MemoryRegistry::new()).await
}

/// Runs a simulated registry on `port` serving `registry` (which the test can inspect).
///
/// Sessions own what they register: when a session's connection closes or stays silent for
/// [`SESSION_TIMEOUT`](super::SESSION_TIMEOUT), the instances it registered (and that no later
/// session registered again) are unregistered, web registrations as well as services.
///
/// Must be called from within a simulation.
///
/// # Errors
///
/// When the port cannot be bound.
pub async fn registry_server_on(host: SimHost, port: u16, registry: MemoryRegistry) -> turmoil::Result {
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    let owners: Arc<Mutex<BTreeMap<Key, u64>>> = Arc::default();
    let watchers: Watchers = Arc::default();
    let mut sessions = JoinSet::new();
    let mut last_session = 0u64;
    loop {
        let down = host.down();
        let accepted = tokio::select! {
            biased;
            () = down.wait() => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = accepted?;
        while sessions.try_join_next().is_some() {}
        last_session += 1;
        let link = Link::new(stream, peer.to_string(), wire::read_serde::<ClientMessage>, host.down());
        let server = ServerSession {
            id: last_session,
            registry: registry.clone(),
            owners: Arc::clone(&owners),
            owned: BTreeSet::new(),
            watchers: Arc::clone(&watchers),
        };
        sessions.spawn(server.run(link));
    }
}

/// Who watches which service: session id to the session's connection, per service.
type Watchers = Arc<Mutex<BTreeMap<String, BTreeMap<u64, Out>>>>;

struct ServerSession {
    id: u64,
    registry: MemoryRegistry,
    /// Which session registered each instance last.
    owners: Arc<Mutex<BTreeMap<Key, u64>>>,
    owned: BTreeSet<Key>,
    watchers: Watchers,
}

impl ServerSession {
    async fn run(mut self, mut link: Link<ClientMessage>) {
        let mut liveness = Liveness::new();
        loop {
            tokio::select! {
                biased;
                message = link.rx.recv() => match message {
                    Some(message) => {
                        liveness.heard();
                        let out = Out::of(&link);
                        self.handle(message, &out);
                    }
                    None => break,
                },
                silent = liveness.tick() => {
                    if silent {
                        tracing::debug!(session = self.id, "registry session timed out");
                        break;
                    }
                }
            }
        }
        drop(link);
        for sessions in self.watchers.lock().unwrap_or_else(PoisonError::into_inner).values_mut() {
            sessions.remove(&self.id);
        }
        let owners = Arc::clone(&self.owners);
        for key in std::mem::take(&mut self.owned) {
            let mine = {
                let mut owners = owners.lock().unwrap_or_else(PoisonError::into_inner);
                if owners.get(&key) == Some(&self.id) {
                    owners.remove(&key);
                    true
                } else {
                    false
                }
            };
            if !mine {
                continue;
            }
            let (namespace, service, id) = key;
            match namespace {
                Namespace::Services => {
                    if self.registry.unregister_now(&service, &id) {
                        self.publish(&service);
                    }
                }
                Namespace::Http => {
                    self.registry.unregister_web_now(&service, &id);
                }
            }
        }
    }

    /// Records that this session owns `key` now.
    fn own(&mut self, key: Key) {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner).insert(key.clone(), self.id);
        self.owned.insert(key);
    }

    /// Records that `key` was unregistered (by this session; any session may unregister).
    fn disown(&mut self, key: &Key) {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
        self.owned.remove(key);
    }

    /// Sends the current instances of `service` to every session watching it, in session order,
    /// at once: waking one task per watcher would wake them in an order tokio picks at random.
    fn publish(&self, service: &str) {
        let instances = self.registry.instances(service).unwrap_or_default();
        let watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        for out in watchers.get(service).into_iter().flat_map(BTreeMap::values) {
            out.send(&ServerMessage::Update { service: service.to_owned(), instances: instances.clone() });
        }
    }

    fn handle(&mut self, message: ClientMessage, out: &Out) {
        let ClientMessage { id, request } = message;
        let result = match request {
            Request::Ping => {
                out.send(&ServerMessage::Pong);
                return;
            }
            Request::Register { service, instance } => {
                self.own((Namespace::Services, service.clone(), instance.id.clone()));
                self.registry.register_now(&service, *instance);
                self.publish(&service);
                Ok(Reply::Done)
            }
            Request::Unregister { service, id } => {
                self.disown(&(Namespace::Services, service.clone(), id.clone()));
                if self.registry.unregister_now(&service, &id) {
                    self.publish(&service);
                }
                Ok(Reply::Done)
            }
            Request::RegisterWeb { service, instance } => {
                self.own((Namespace::Http, service.clone(), instance.id.clone()));
                self.registry.register_web_now(&service, *instance);
                Ok(Reply::Done)
            }
            Request::UnregisterWeb { service, id } => {
                self.disown(&(Namespace::Http, service.clone(), id.clone()));
                self.registry.unregister_web_now(&service, &id);
                Ok(Reply::Done)
            }
            Request::LookupWeb { service } => Ok(Reply::WebInstances(self.registry.web_instances(&service))),
            Request::Discover => Ok(Reply::Services(self.registry.services())),
            Request::Watch { service } => match self.registry.instances(&service) {
                Some(instances) => {
                    let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
                    watchers.entry(service).or_default().insert(self.id, out.clone());
                    Ok(Reply::Instances(instances))
                }
                None => Err(Failure::LookupFailure(service)),
            },
        };
        out.send(&ServerMessage::Reply { id, result });
    }
}

// ---------------------------------------------------------------------------------------------
// Client

type Answer = Result<Answered>;

#[derive(Debug)]
enum Answered {
    Done,
    Services(Vec<String>),
    Watch(InstanceWatch),
    WebInstances(Vec<WebInstance>),
}

#[derive(Debug)]
struct Command {
    request: Request,
    reply: oneshot::Sender<Answer>,
}

struct InFlight {
    request: Request,
    reply: Option<oneshot::Sender<Answer>>,
}

struct ClientSession {
    me: String,
    timeline: Timeline,
    last_id: u64,
    in_flight: BTreeMap<u64, InFlight>,
    /// What this client registered, to register again after a reconnect.
    registered: BTreeMap<(String, String), ServiceInstance>,
    /// The web registrations of this client, to register again after a reconnect.
    registered_web: BTreeMap<(String, String), WebInstance>,
    /// The services watched, with the channels handed out.
    watches: BTreeMap<String, watch::Sender<Vec<ServiceInstance>>>,
}

impl ClientSession {
    fn send(&mut self, out: &Out, request: Request, reply: Option<oneshot::Sender<Answer>>) {
        self.last_id += 1;
        let id = self.last_id;
        out.send(&ClientMessage { id, request: request.clone() });
        self.in_flight.insert(id, InFlight { request, reply });
    }

    fn update(&mut self, service: &str, instances: Vec<ServiceInstance>) -> InstanceWatch {
        match self.watches.get(service) {
            Some(sender) => {
                sender.send_if_modified(|current| {
                    let changed = *current != instances;
                    *current = instances;
                    changed
                });
                sender.subscribe()
            }
            None => {
                let (sender, receiver) = watch::channel(instances);
                self.watches.insert(service.to_owned(), sender);
                receiver
            }
        }
    }
}

impl Session for ClientSession {
    type Command = Command;
    type In = ServerMessage;
    const NAME: &'static str = "registry";

    fn ping() -> Vec<u8> {
        wire::encode(&ClientMessage { id: 0, request: Request::Ping })
    }

    fn connected(&mut self, out: &Out) {
        let registered: Vec<_> = self.registered.iter().map(|((s, _), i)| (s.clone(), i.clone())).collect();
        for (service, instance) in registered {
            self.send(out, Request::Register { service, instance: Box::new(instance) }, None);
        }
        let registered_web: Vec<_> = self.registered_web.iter().map(|((s, _), i)| (s.clone(), i.clone())).collect();
        for (service, instance) in registered_web {
            self.send(out, Request::RegisterWeb { service, instance: Box::new(instance) }, None);
        }
        let watched: Vec<String> = self.watches.keys().cloned().collect();
        for service in watched {
            self.send(out, Request::Watch { service }, None);
        }
    }

    fn command(&mut self, command: Command, out: Option<&Out>) -> Option<Command> {
        if command.reply.is_closed() {
            return None;
        }
        match out {
            Some(out) => {
                self.send(out, command.request, Some(command.reply));
                None
            }
            None => Some(command),
        }
    }

    fn message(&mut self, message: ServerMessage, _out: &Out) {
        match message {
            ServerMessage::Pong => {}
            ServerMessage::Update { service, instances } => {
                self.update(&service, instances);
            }
            ServerMessage::Reply { id, result } => {
                let Some(InFlight { request, reply }) = self.in_flight.remove(&id) else {
                    tracing::warn!(id, "registry reply to no request");
                    return;
                };
                let replay = reply.is_none();
                let answer = match (request, result) {
                    (Request::Register { service, instance }, Ok(_)) => {
                        let detail = format!(
                            "id={} endpoint={}{}",
                            instance.id.chars().take(8).collect::<String>(),
                            instance.endpoint,
                            if replay { " (again, new session)" } else { "" }
                        );
                        self.timeline.record(Entry::now(&self.me, "register", &service).detail(detail));
                        self.registered.insert((service, instance.id.clone()), *instance);
                        Ok(Answered::Done)
                    }
                    (Request::Unregister { service, id }, Ok(_)) => {
                        let detail = format!("id={}", id.chars().take(8).collect::<String>());
                        self.timeline.record(Entry::now(&self.me, "unregister", &service).detail(detail));
                        self.registered.remove(&(service, id));
                        Ok(Answered::Done)
                    }
                    (Request::RegisterWeb { service, instance }, Ok(_)) => {
                        let detail = format!(
                            "id={} http={}:{}{}",
                            instance.id.chars().take(8).collect::<String>(),
                            instance.ip.as_deref().unwrap_or("-"),
                            instance.http_port,
                            if replay { " (again, new session)" } else { "" }
                        );
                        self.timeline.record(Entry::now(&self.me, "register-web", &service).detail(detail));
                        self.registered_web.insert((service, instance.id.clone()), *instance);
                        Ok(Answered::Done)
                    }
                    (Request::UnregisterWeb { service, id }, Ok(_)) => {
                        let detail = format!("id={}", id.chars().take(8).collect::<String>());
                        self.timeline.record(Entry::now(&self.me, "unregister-web", &service).detail(detail));
                        self.registered_web.remove(&(service, id));
                        Ok(Answered::Done)
                    }
                    (Request::LookupWeb { .. }, Ok(Reply::WebInstances(instances))) => {
                        Ok(Answered::WebInstances(instances))
                    }
                    (Request::Discover, Ok(Reply::Services(services))) => Ok(Answered::Services(services)),
                    (Request::Watch { service }, Ok(Reply::Instances(instances))) => {
                        Ok(Answered::Watch(self.update(&service, instances)))
                    }
                    (Request::Watch { service }, Err(Failure::LookupFailure(_))) if replay => {
                        // The registry forgot the service (it restarted): no instances.
                        self.update(&service, Vec::new());
                        Err(Error::LookupFailure { service })
                    }
                    (_, Err(Failure::LookupFailure(service))) => Err(Error::LookupFailure { service }),
                    (request, Ok(reply)) => {
                        tracing::warn!(?request, ?reply, "registry reply does not fit the request");
                        Err(Error::transport("the registry sent a reply that does not fit the request"))
                    }
                };
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
        }
    }

    fn disconnected(&mut self) {
        for (_, in_flight) in std::mem::take(&mut self.in_flight) {
            if let Some(reply) = in_flight.reply {
                let _ = reply.send(Err(Error::transport("the connection to the registry was lost")));
            }
        }
    }
}

/// A [`Registry`] client of a simulated registry host (see [`registry_server`]).
///
/// It keeps one session (connection) to the registry, reconnecting when it fails; after a
/// reconnect it registers again every instance it had registered and re-establishes its watches,
/// so the [`InstanceWatch`]es it handed out keep working. Its registrations vanish when its
/// session dies (its host crashes, or is partitioned from the registry for longer than
/// [`SESSION_TIMEOUT`](super::SESSION_TIMEOUT)). Web registrations
/// ([`Registry::register_web`]) are owned by the session in the same way and registered again
/// with the others. Successful registrations and unregistrations are recorded on the timeline:
/// kinds `register` and `unregister` for services, `register-web` and `unregister-web` for web
/// interfaces.
pub struct SimRegistry {
    host: String,
    addr: String,
    commands: mpsc::UnboundedSender<Command>,
    _task: AbortOnDrop,
}

impl fmt::Debug for SimRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimRegistry").field("host", &self.host).field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl SimRegistry {
    /// Starts a client of the registry at `addr` (`"registry:2181"`) for `host`; it connects in
    /// the background, and calls wait for the connection.
    ///
    /// Must be called from within a simulation.
    ///
    /// # Errors
    ///
    /// When `addr` is not `host:port`.
    pub fn connect(addr: &str, host: &SimHost) -> Result<Self> {
        let target = wire::split_addr(addr)
            .ok_or_else(|| Error::Config(format!("registry address {addr:?} is not host:port")))?;
        let (commands, rx) = mpsc::unbounded_channel();
        let session = ClientSession {
            me: host.name().to_owned(),
            timeline: host.timeline().clone(),
            last_id: 0,
            in_flight: BTreeMap::new(),
            registered: BTreeMap::new(),
            registered_web: BTreeMap::new(),
            watches: BTreeMap::new(),
        };
        let task = tokio::spawn(wire::drive(session, target, host.clone(), rx));
        Ok(Self { host: host.name().to_owned(), addr: addr.to_owned(), commands, _task: AbortOnDrop(task) })
    }

    async fn call(&self, request: Request) -> Answer {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command { request, reply })
            .map_err(|_| Error::transport("the registry session task is gone"))?;
        wire::answer(rx, REQUEST_TIMEOUT, "registry call").await
    }
}

impl Registry for SimRegistry {
    fn register<'a>(&'a self, service: &'a str, instance: ServiceInstance) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(Request::Register { service: service.to_owned(), instance: Box::new(instance) }).await.map(drop)
        })
    }

    fn unregister<'a>(&'a self, service: &'a str, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(Request::Unregister { service: service.to_owned(), id: id.to_owned() }).await.map(drop)
        })
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            match self.call(Request::Discover).await? {
                Answered::Services(services) => Ok(services),
                other => Err(Error::transport(format!("unexpected registry answer {other:?}"))),
            }
        })
    }

    fn watch<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<InstanceWatch>> {
        Box::pin(async move {
            match self.call(Request::Watch { service: service.to_owned() }).await? {
                Answered::Watch(watch) => Ok(watch),
                other => Err(Error::transport(format!("unexpected registry answer {other:?}"))),
            }
        })
    }

    fn register_web<'a>(&'a self, service: &'a str, instance: WebInstance) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(Request::RegisterWeb { service: service.to_owned(), instance: Box::new(instance) })
                .await
                .map(drop)
        })
    }

    fn unregister_web<'a>(&'a self, service: &'a str, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(Request::UnregisterWeb { service: service.to_owned(), id: id.to_owned() }).await.map(drop)
        })
    }

    fn lookup_web<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Vec<WebInstance>>> {
        Box::pin(async move {
            match self.call(Request::LookupWeb { service: service.to_owned() }).await? {
                Answered::WebInstances(instances) => Ok(instances),
                other => Err(Error::transport(format!("unexpected registry answer {other:?}"))),
            }
        })
    }
}
