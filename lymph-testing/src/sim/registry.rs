//! The simulated registry: a ZooKeeper-like host with sessions, ephemeral registrations and
//! watches, and its client [`SimRegistry`].
//!
//! Registrations live in one of two namespaces, as in lymph's ZooKeeper layout: `services` (RPC
//! interfaces, discovered and watched) and `http` (web interfaces, looked up). Both are owned
//! by the session that made them.
//!
//! # Sessions
//!
//! As in ZooKeeper, a session outlives the connection it was made on:
//!
//! - The server makes a session for each connection that does not ask to resume one, and names it
//!   (id and password) in every `Pong`.
//! - A client that hears nothing on its connection for two thirds of
//!   [`REGISTRY_SESSION_TIMEOUT`](super::REGISTRY_SESSION_TIMEOUT) (ZooKeeper's read timeout) drops it, connects
//!   again and first sends `Resume {session}`. While the session lives, the new connection takes
//!   it over with its registrations and watches, and the server sends the current instances of
//!   every service the session watches (the watch events missed meanwhile); the client sends
//!   again the requests that were in flight.
//! - The server expires a session it has heard nothing from for `REGISTRY_SESSION_TIMEOUT`, whether or not
//!   its connection is still open: its registrations are deleted, its watches dropped, its
//!   connection closed. A client that asks to resume it gets a new session instead, and registers
//!   and watches again what it had.
//! - A client that is dropped closes its session (`Close`), which deletes its registrations at
//!   once. A client whose host crashes leaves its session to expire.
//!
//! # Protocol
//!
//! One TCP connection at a time per client; every message is a u32 big-endian length followed by
//! msgpack (serde, maps with field names). The client sends [`ClientMessage`]s `{id, request}`;
//! the server answers each with a `Reply {id, result}` and pushes an `Update {service,
//! instances}` whenever a watched service changes (web registrations are not watched). `Ping`
//! (id 0) is answered with `Pong {session}`.
//!
//! # Timeline
//!
//! The client records `session` (subject `registry`) when, after a reconnect, it resumes its
//! session (`resumed session 3`) or learns that it expired (`session 3 expired, new session 4`).
//! The server records `session` (subject the client's host) when it expires a session.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use lymph_core::Latch;
use lymph_core::memory::MemoryRegistry;
use lymph_core::registry::{InstanceWatch, Registry, ServiceInstance, WebInstance};
use lymph_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use turmoil::net::TcpListener;

use super::SimHost;
use super::wire::{self, Link, Liveness, Out, Session};
use super::{REGISTRY_PING_INTERVAL, REGISTRY_SESSION_TIMEOUT, REQUEST_TIMEOUT};
use crate::timeline::{Entry, Timeline};

/// How long a client's connection may stay silent before the client drops it and connects again:
/// two thirds of the session timeout, as ZooKeeper's clients do, so that it can resume its
/// session before the server expires it.
const READ_TIMEOUT: Duration = Duration::from_millis(REGISTRY_SESSION_TIMEOUT.as_millis() as u64 * 2 / 3);

/// A session as a client presents it to resume it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Credentials {
    id: u64,
    password: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Request {
    Register {
        service: String,
        instance: Box<ServiceInstance>,
    },
    Unregister {
        service: String,
        id: String,
    },
    Discover,
    Watch {
        service: String,
    },
    RegisterWeb {
        service: String,
        instance: Box<WebInstance>,
    },
    UnregisterWeb {
        service: String,
        id: String,
    },
    LookupWeb {
        service: String,
    },
    Ping,
    /// The first request on a connection of a client that has a session: take it over.
    Resume {
        session: Credentials,
    },
    /// Ends the session: its registrations are deleted at once.
    Close,
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
    /// The answer to `Resume`: the session of the connection now, and whether it is the one asked for.
    Session {
        session: Credentials,
        resumed: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum Failure {
    LookupFailure(String),
}

#[derive(Debug, Serialize, Deserialize)]
enum ServerMessage {
    Reply { id: u64, result: std::result::Result<Reply, Failure> },
    Update { service: String, instances: Vec<ServiceInstance> },
    Pong { session: Credentials },
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
/// `host` is the turmoil host it runs on; powering it off closes every connection. Each call
/// starts with nothing: to keep sessions and registrations over a restart, as ZooKeeper does, run
/// [`registry_server_with`] on one [`RegistryDisk`].
///
/// Must be called from within a simulation.
///
/// # Errors
///
/// When the port cannot be bound.
pub async fn registry_server(host: SimHost, port: u16) -> turmoil::Result {
    registry_server_on(host, port, MemoryRegistry::new()).await
}

/// Runs a simulated registry on `port` serving `registry` (which the test can inspect), with no
/// sessions yet.
///
/// Sessions own what they register (see the module docs of [`sim`](super)): when a session is
/// closed, or expires because the registry heard nothing from it for
/// [`REGISTRY_SESSION_TIMEOUT`](super::REGISTRY_SESSION_TIMEOUT), the instances it registered (and that no later
/// session registered again) are unregistered, web registrations as well as services. A
/// connection that merely breaks leaves its session to be resumed.
///
/// Must be called from within a simulation.
///
/// # Errors
///
/// When the port cannot be bound.
pub async fn registry_server_on(host: SimHost, port: u16, registry: MemoryRegistry) -> turmoil::Result {
    registry_server_with(host, port, RegistryDisk::new(registry)).await
}

/// What a simulated registry keeps over a restart, as ZooKeeper keeps its snapshot and
/// transaction log on disk: the registrations and the sessions that own them.
///
/// A registry started again on the same disk ([`registry_server_with`]) finds every session
/// that had not expired, detached from its connection (those died with the old server), and
/// gives each a full session timeout again from the boot, as ZooKeeper does when it loads its
/// sessions; clients that reconnect in time resume their sessions, and no registration went away.
#[derive(Clone)]
pub struct RegistryDisk {
    registry: MemoryRegistry,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for RegistryDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryDisk").finish_non_exhaustive()
    }
}

impl RegistryDisk {
    /// A disk holding `registry` and no sessions.
    pub fn new(registry: MemoryRegistry) -> Self {
        let state = State { last_session: 0, sessions: BTreeMap::new(), owners: BTreeMap::new() };
        Self { registry, state: Arc::new(Mutex::new(state)) }
    }

    /// The registrations on the disk.
    pub fn registry(&self) -> &MemoryRegistry {
        &self.registry
    }
}

impl Default for RegistryDisk {
    fn default() -> Self {
        Self::new(MemoryRegistry::new())
    }
}

/// Runs a simulated registry on `port` from `disk`: the sessions and registrations a registry
/// that ran on it earlier left there (see [`RegistryDisk`]), or none on a new disk.
///
/// Must be called from within a simulation.
///
/// # Errors
///
/// When the port cannot be bound.
pub async fn registry_server_with(host: SimHost, port: u16, disk: RegistryDisk) -> turmoil::Result {
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    {
        // Loading the sessions: their connections died with the old server, and each gets a
        // whole session timeout from now (instants of the old server's runtime mean nothing).
        let mut state = disk.state.lock().unwrap_or_else(PoisonError::into_inner);
        // New session ids start above the boot time, so that a session a server on another disk
        // made is not taken for one of this server's.
        let start_ms = u64::try_from(turmoil::sim_elapsed().unwrap_or_default().as_millis()).unwrap_or(u64::MAX);
        state.last_session = state.last_session.max(start_ms.saturating_mul(1000));
        let now = Instant::now();
        for session in state.sessions.values_mut() {
            session.attached = None;
            session.last_heard = now;
        }
    }
    let server =
        Server { host: host.clone(), registry: disk.registry, state: disk.state, wake: Arc::new(Notify::new()) };
    let mut tasks = JoinSet::new();
    tasks.spawn(server.clone().reap());
    let mut last_connection = 0u64;
    loop {
        let down = host.down();
        let accepted = tokio::select! {
            biased;
            () = down.wait() => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = accepted?;
        while tasks.try_join_next().is_some() {}
        last_connection += 1;
        let client = turmoil::reverse_lookup(peer.ip()).unwrap_or_else(|| peer.to_string());
        let link = Link::new(stream, peer.to_string(), wire::read_serde::<ClientMessage>, host.down());
        tasks.spawn(server.clone().serve(link, last_connection, client));
    }
}

/// The registry's state: its sessions and who owns which registration. The registrations
/// themselves are in the [`MemoryRegistry`].
struct State {
    /// The id of the last session made.
    last_session: u64,
    sessions: BTreeMap<u64, SessionState>,
    /// Which session registered each instance last.
    owners: BTreeMap<Key, u64>,
}

struct SessionState {
    password: u64,
    /// The client's host, for the timeline.
    client: String,
    owned: BTreeSet<Key>,
    watched: BTreeSet<String>,
    /// The connection the session is on, if any.
    attached: Option<Attached>,
    last_heard: Instant,
}

/// A session's connection: its number, its sending side, and the switch that closes it.
struct Attached {
    connection: u64,
    out: Out,
    kick: Latch,
}

#[derive(Clone)]
struct Server {
    host: SimHost,
    registry: MemoryRegistry,
    state: Arc<Mutex<State>>,
    /// Wakes the reaper when a session is made.
    wake: Arc<Notify>,
}

impl Server {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves one connection: the session it resumes or makes, then that session's requests.
    async fn serve(self, mut link: Link<ClientMessage>, connection: u64, client: String) {
        let out = Out::of(&link);
        let kick = Latch::new();
        let mut session = None;
        loop {
            let message = tokio::select! {
                biased;
                () = kick.wait() => break,
                message = link.rx.recv() => message,
            };
            let Some(ClientMessage { id, request }) = message else { break };
            let Some(current) = session else {
                let attached = Attached { connection, out: out.clone(), kick: kick.clone() };
                if let Request::Resume { session: asked } = request {
                    let (current, resumed) = self.resume(asked, &client, attached);
                    session = Some(current.id);
                    out.send(&ServerMessage::Reply { id, result: Ok(Reply::Session { session: current, resumed }) });
                    if resumed {
                        self.missed_updates(current.id, &out);
                    }
                    continue;
                }
                let current = self.open(&client, attached);
                session = Some(current);
                self.handle(current, id, request, &out);
                continue;
            };
            if !self.heard(current, connection) {
                break;
            }
            self.handle(current, id, request, &out);
        }
        drop(link);
        if let Some(session) = session
            && let Some(state) = self.state().sessions.get_mut(&session)
            && state.attached.as_ref().is_some_and(|a| a.connection == connection)
        {
            state.attached = None;
        }
    }

    /// Makes a new session on `attached`; returns its id.
    fn open(&self, client: &str, attached: Attached) -> u64 {
        let mut state = self.state();
        state.last_session += 1;
        let id = state.last_session;
        let password = crate::seed::derive(id, "registry session password");
        let session = SessionState {
            password,
            client: client.to_owned(),
            owned: BTreeSet::new(),
            watched: BTreeSet::new(),
            attached: Some(attached),
            last_heard: Instant::now(),
        };
        state.sessions.insert(id, session);
        drop(state);
        self.wake.notify_one();
        id
    }

    /// Moves the session `asked` onto `attached` (closing its earlier connection) if it lives and
    /// the password fits; makes a new session otherwise. Returns the session and whether it is
    /// the one asked for.
    fn resume(&self, asked: Credentials, client: &str, attached: Attached) -> (Credentials, bool) {
        let mut state = self.state();
        if let Some(session) = state.sessions.get_mut(&asked.id)
            && session.password == asked.password
        {
            session.last_heard = Instant::now();
            if let Some(earlier) = session.attached.replace(attached) {
                earlier.kick.set();
            }
            return (asked, true);
        }
        drop(state);
        let id = self.open(client, attached);
        (self.credentials(id).expect("the session was just made"), false)
    }

    fn credentials(&self, session: u64) -> Option<Credentials> {
        self.state().sessions.get(&session).map(|s| Credentials { id: session, password: s.password })
    }

    /// Records that `session` was heard on `connection`; false when that connection no longer
    /// holds the session (it expired, was closed, or moved to another connection).
    fn heard(&self, session: u64, connection: u64) -> bool {
        match self.state().sessions.get_mut(&session) {
            Some(state) if state.attached.as_ref().is_some_and(|a| a.connection == connection) => {
                state.last_heard = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Sends a resumed session the current instances of every service it watches, in name order.
    fn missed_updates(&self, session: u64, out: &Out) {
        let watched: Vec<String> =
            self.state().sessions.get(&session).map(|s| s.watched.iter().cloned().collect()).unwrap_or_default();
        for service in watched {
            let instances = self.registry.instances(&service).unwrap_or_default();
            out.send(&ServerMessage::Update { service, instances });
        }
    }

    /// Expires the sessions not heard from for [`REGISTRY_SESSION_TIMEOUT`], each when its time comes, in
    /// id order when several are due together.
    async fn reap(self) {
        let down = self.host.down();
        loop {
            let next = self.state().sessions.values().map(|s| s.last_heard).min();
            match next {
                None => tokio::select! {
                    biased;
                    () = down.wait() => return,
                    () = self.wake.notified() => continue,
                },
                Some(last_heard) => tokio::select! {
                    biased;
                    () = down.wait() => return,
                    () = tokio::time::sleep_until(last_heard + REGISTRY_SESSION_TIMEOUT) => {}
                },
            }
            let now = Instant::now();
            let due: Vec<u64> = self
                .state()
                .sessions
                .iter()
                .filter(|(_, s)| now.duration_since(s.last_heard) >= REGISTRY_SESSION_TIMEOUT)
                .map(|(id, _)| *id)
                .collect();
            for session in due {
                if let Some(client) = self.end(session) {
                    let detail = format!("expired session {session}: nothing heard for {REGISTRY_SESSION_TIMEOUT:?}");
                    self.host.timeline().record(Entry::now(self.host.name(), "session", client).detail(detail));
                }
            }
        }
    }

    /// Ends `session` (closed or expired): unregisters what it still owns, drops its watches,
    /// closes its connection. Returns its client, or `None` when there was no such session.
    fn end(&self, session: u64) -> Option<String> {
        let mut state = self.state();
        let ended = state.sessions.remove(&session)?;
        if let Some(attached) = &ended.attached {
            attached.kick.set();
        }
        let mut changed = BTreeSet::new();
        for key in ended.owned {
            if state.owners.get(&key) != Some(&session) {
                continue;
            }
            state.owners.remove(&key);
            let (namespace, service, id) = key;
            match namespace {
                Namespace::Services => {
                    if self.registry.unregister_now(&service, &id) {
                        changed.insert(service);
                    }
                }
                Namespace::Http => {
                    self.registry.unregister_web_now(&service, &id);
                }
            }
        }
        for service in changed {
            Self::publish(&state, &self.registry, &service);
        }
        Some(ended.client)
    }

    /// Sends the current instances of `service` to every session watching it, in session order,
    /// at once: waking one task per watcher would wake them in an order tokio picks at random.
    fn publish(state: &State, registry: &MemoryRegistry, service: &str) {
        let instances = registry.instances(service).unwrap_or_default();
        for session in state.sessions.values() {
            if let Some(attached) = &session.attached
                && session.watched.contains(service)
            {
                attached.out.send(&ServerMessage::Update { service: service.to_owned(), instances: instances.clone() });
            }
        }
    }

    fn handle(&self, session: u64, id: u64, request: Request, out: &Out) {
        let mut state = self.state();
        let credentials = match state.sessions.get(&session) {
            Some(s) => Credentials { id: session, password: s.password },
            None => return,
        };
        let own = |state: &mut State, key: Key| {
            state.owners.insert(key.clone(), session);
            if let Some(s) = state.sessions.get_mut(&session) {
                s.owned.insert(key);
            }
        };
        let disown = |state: &mut State, key: &Key| {
            state.owners.remove(key);
            if let Some(s) = state.sessions.get_mut(&session) {
                s.owned.remove(key);
            }
        };
        let result = match request {
            Request::Ping => {
                out.send(&ServerMessage::Pong { session: credentials });
                return;
            }
            Request::Resume { .. } => Ok(Reply::Session { session: credentials, resumed: true }),
            Request::Close => {
                drop(state);
                self.end(session);
                out.send(&ServerMessage::Reply { id, result: Ok(Reply::Done) });
                return;
            }
            Request::Register { service, instance } => {
                own(&mut state, (Namespace::Services, service.clone(), instance.id.clone()));
                self.registry.register_now(&service, *instance);
                Self::publish(&state, &self.registry, &service);
                Ok(Reply::Done)
            }
            Request::Unregister { service, id } => {
                disown(&mut state, &(Namespace::Services, service.clone(), id.clone()));
                if self.registry.unregister_now(&service, &id) {
                    Self::publish(&state, &self.registry, &service);
                }
                Ok(Reply::Done)
            }
            Request::RegisterWeb { service, instance } => {
                own(&mut state, (Namespace::Http, service.clone(), instance.id.clone()));
                self.registry.register_web_now(&service, *instance);
                Ok(Reply::Done)
            }
            Request::UnregisterWeb { service, id } => {
                disown(&mut state, &(Namespace::Http, service.clone(), id.clone()));
                self.registry.unregister_web_now(&service, &id);
                Ok(Reply::Done)
            }
            Request::LookupWeb { service } => Ok(Reply::WebInstances(self.registry.web_instances(&service))),
            Request::Discover => Ok(Reply::Services(self.registry.services())),
            Request::Watch { service } => match self.registry.instances(&service) {
                Some(instances) => {
                    if let Some(s) = state.sessions.get_mut(&session) {
                        s.watched.insert(service);
                    }
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
enum Command {
    /// A call of the [`Registry`] API.
    Call { request: Request, reply: oneshot::Sender<Answer> },
    /// The client was dropped: close the session.
    Close,
}

struct InFlight {
    request: Request,
    /// The caller's answer; `None` for what the client sends on its own (registrations made again
    /// on a new session, `Resume`, `Close`).
    reply: Option<oneshot::Sender<Answer>>,
}

struct ClientSession {
    me: String,
    timeline: Timeline,
    last_id: u64,
    in_flight: BTreeMap<u64, InFlight>,
    /// Requests in flight when the connection broke, to send again on the next one.
    unanswered: Vec<InFlight>,
    /// What this client registered, to register again on a new session.
    registered: BTreeMap<(String, String), ServiceInstance>,
    /// The web registrations of this client, to register again on a new session.
    registered_web: BTreeMap<(String, String), WebInstance>,
    /// The services watched, with the channels handed out.
    watches: BTreeMap<String, watch::Sender<Vec<ServiceInstance>>>,
    /// The session, once the registry has named it.
    session: Option<Credentials>,
    /// Whether the current connection holds a session yet.
    ready: bool,
    /// Whether the session of the current connection is a new one, which holds nothing yet.
    fresh: bool,
    /// The client was dropped and sent `Close`.
    closing: bool,
    /// The session is closed, or cannot be any more: the client stops.
    done: bool,
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

    /// The answer to `Resume`: the connection holds `session` now.
    fn resumed(&mut self, asked: Credentials, session: Credentials, resumed: bool) {
        let detail = if resumed {
            format!("resumed session {}", session.id)
        } else {
            format!("session {} expired, new session {}", asked.id, session.id)
        };
        self.timeline.record(Entry::now(&self.me, "session", "registry").detail(detail));
        self.session = Some(session);
        self.fresh = !resumed;
        self.ready = true;
    }
}

impl Session for ClientSession {
    type Command = Command;
    type In = ServerMessage;
    const NAME: &'static str = "registry";

    fn ping() -> Vec<u8> {
        wire::encode(&ClientMessage { id: 0, request: Request::Ping })
    }

    fn liveness() -> Liveness {
        Liveness::exact(READ_TIMEOUT, REGISTRY_PING_INTERVAL)
    }

    fn opened(&mut self, out: &Out) {
        match self.session {
            Some(session) => {
                self.ready = false;
                self.send(out, Request::Resume { session }, None);
            }
            None => {
                // The registry makes a session for this connection.
                self.ready = true;
                self.fresh = true;
            }
        }
    }

    fn ready(&self) -> bool {
        self.ready
    }

    fn connected(&mut self, out: &Out) {
        if self.fresh {
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
        for InFlight { request, reply } in std::mem::take(&mut self.unanswered) {
            // On a new session, what the client sent on its own was just sent again above.
            if self.fresh && reply.is_none() {
                continue;
            }
            self.send(out, request, reply);
        }
    }

    fn command(&mut self, command: Command, out: Option<&Out>) -> Option<Command> {
        match command {
            Command::Close => {
                match out {
                    Some(out) => {
                        self.closing = true;
                        self.send(out, Request::Close, None);
                    }
                    None => self.done = true,
                }
                None
            }
            Command::Call { reply, .. } if reply.is_closed() => None,
            Command::Call { request, reply } => match out {
                Some(out) => {
                    self.send(out, request, Some(reply));
                    None
                }
                None => Some(Command::Call { request, reply }),
            },
        }
    }

    fn message(&mut self, message: ServerMessage, _out: &Out) {
        match message {
            ServerMessage::Pong { session } => {
                if self.ready {
                    self.session = Some(session);
                }
            }
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
                    (Request::Resume { session: asked }, Ok(Reply::Session { session, resumed })) => {
                        self.resumed(asked, session, resumed);
                        return;
                    }
                    (Request::Close, _) => {
                        self.done = true;
                        return;
                    }
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
        self.ready = false;
        if self.closing {
            // The session could not be closed: the registry expires it.
            self.done = true;
        }
        for (_, in_flight) in std::mem::take(&mut self.in_flight) {
            if matches!(in_flight.request, Request::Resume { .. } | Request::Close)
                || in_flight.reply.as_ref().is_some_and(oneshot::Sender::is_closed)
            {
                continue;
            }
            self.unanswered.push(in_flight);
        }
    }

    fn closing(&self) -> bool {
        self.closing
    }

    fn done(&self) -> bool {
        self.done
    }
}

/// A [`Registry`] client of a simulated registry host (see [`registry_server`]).
///
/// It behaves as lymph's ZooKeeper registry does with a ZooKeeper client: one session, kept over
/// reconnects (see the module docs of [`sim`](super)). When its connection breaks it connects
/// again and resumes the session, so its registrations and watches stay, and calls in flight
/// are sent again; when the session has expired meanwhile (its host was cut off from the
/// registry for longer than [`REGISTRY_SESSION_TIMEOUT`](super::REGISTRY_SESSION_TIMEOUT)), it registers again
/// every instance it had registered on the new session and re-establishes its watches. The
/// [`InstanceWatch`]es it handed out keep working throughout. Web registrations
/// ([`Registry::register_web`]) are owned by the session in the same way. Dropping it closes the
/// session, which unregisters everything at once; when its host crashes, the session expires.
///
/// Successful registrations and unregistrations are recorded on the timeline: kinds `register`
/// and `unregister` for services, `register-web` and `unregister-web` for web interfaces; and
/// kind `session` when it resumes its session or finds it expired.
pub struct SimRegistry {
    host: String,
    addr: String,
    commands: mpsc::UnboundedSender<Command>,
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
            unanswered: Vec::new(),
            registered: BTreeMap::new(),
            registered_web: BTreeMap::new(),
            watches: BTreeMap::new(),
            session: None,
            ready: false,
            fresh: true,
            closing: false,
            done: false,
        };
        // The task ends by itself: when the session is closed after the client is dropped, or
        // when the host is powered off.
        tokio::spawn(wire::drive(session, target, host.clone(), rx));
        Ok(Self { host: host.name().to_owned(), addr: addr.to_owned(), commands })
    }

    async fn call(&self, request: Request) -> Answer {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Call { request, reply })
            .map_err(|_| Error::transport("the registry session task is gone"))?;
        wire::answer(rx, REQUEST_TIMEOUT, "registry call").await
    }
}

impl Drop for SimRegistry {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Close);
    }
}

impl Registry for SimRegistry {
    fn register<'a>(&'a self, service: &'a str, instance: ServiceInstance) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            lymph_core::registry::check_service_name(service)?;
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
            lymph_core::registry::check_service_name(service)?;
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
