//! The container: hosts interfaces, serves their requests and events, registers them, and
//! makes requests to other services.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, oneshot};
use tracing::Instrument;

use crate::builtin::{Builtin, LYMPH_VERSION};
use crate::connection::{ConnectionConfig, PeerStatus, Peers};
use crate::event::{Delivery, Subscription};
use crate::id::{InstanceVersion, container_identity, instance_id};
use crate::interface::{CallError, Client, EventHandlerSpec, Interface};
use crate::memory::MemoryNetwork;
use crate::plugin::{ContainerInfo, Handled, HandledKind, Plugin, Plugins};
use crate::registry::InstanceWatch;
use crate::rpc::{ClientRequest, Inbox};
use crate::version::{Version, parse_interface_key};
use crate::web::server::{InstalledWeb, WebService};
use crate::web::{TcpWebNetwork, WebInterface, WebNetwork};
use crate::{
    Context, Error, Event, EventSystem, Headers, Latch, Message, MessageKind, Proxy, Registry, Result, RpcTransport,
    ServiceInstance, Value, WebInstance,
};

/// lymph's default request timeout: 3 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// The tracing target of the container's own log lines.
pub const TRACING_TARGET: &str = "lymph";

/// How long `stop` waits for in-flight requests and events to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping container that was registered keeps serving after it deregistered, before
/// it drains: callers hear of the deregistration from the registry a moment after the container
/// does, and the requests they sent before that are still on their way.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// One interface installed in a container, under a name and maybe a version.
pub(crate) struct Installed {
    pub(crate) name: String,
    pub(crate) version: Option<Version>,
    pub(crate) interface: Arc<dyn Interface>,
    pub(crate) config: Arc<Value>,
    pub(crate) builtin: bool,
    /// The version as registered and sent in reply headers: the builtin's is lymph's.
    pub(crate) version_string: Option<String>,
}

impl Installed {
    fn new(
        name: String,
        version: Option<Version>,
        interface: Arc<dyn Interface>,
        config: Value,
        builtin: bool,
    ) -> Self {
        let version_string = if builtin { Some(LYMPH_VERSION.to_owned()) } else { version.map(|v| v.to_string()) };
        Self { name, version, interface, config: Arc::new(config), builtin, version_string }
    }

    /// The id this interface registers under in the container with `identity`, as lymph
    /// computes it.
    pub(crate) fn instance_id(&self, identity: &str) -> String {
        let version = match (&self.version_string, self.builtin) {
            (Some(v), true) => InstanceVersion::Str(v),
            (Some(v), false) => InstanceVersion::Semver(v),
            (None, _) => InstanceVersion::None,
        };
        instance_id(identity, &self.name, version)
    }
}

impl fmt::Debug for Installed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Installed").field("name", &self.name).field("version", &self.version).finish()
    }
}

/// Counts in-flight handlers so that `stop` can wait for them.
#[derive(Debug, Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

pub(crate) struct InFlightGuard(Arc<Shared>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.in_flight.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.in_flight.idle.notify_waiters();
        }
    }
}

/// The state shared by a container's tasks, contexts and proxies.
pub(crate) struct Shared {
    pub(crate) rpc: Arc<dyn RpcTransport>,
    pub(crate) events: Arc<dyn EventSystem>,
    pub(crate) registry: Arc<dyn Registry>,
    pub(crate) endpoint: String,
    pub(crate) identity: String,
    pub(crate) timeout: Duration,
    pub(crate) connection: ConnectionConfig,
    pub(crate) interfaces: BTreeMap<String, Vec<Arc<Installed>>>,
    rng: Mutex<StdRng>,
    pending: Mutex<HashMap<String, oneshot::Sender<Message>>>,
    peers: Mutex<Peers>,
    watches: Mutex<BTreeMap<String, InstanceWatch>>,
    /// The instances proxies skipped as unusable, each logged once.
    pub(crate) skipped: crate::proxy::Skipped,
    /// What the container registered, undone by `stop`: services first, then web interfaces.
    registrations: Mutex<Vec<(Namespace, String, String)>>,
    /// The web interfaces, also among `interfaces`.
    webs: Vec<Arc<InstalledWeb>>,
    /// Where web interfaces listen.
    pub(crate) web_network: Arc<dyn WebNetwork>,
    /// Whether this container is a worker (runs tasks only).
    pub(crate) worker: bool,
    host: HostInfo,
    pub(crate) log_levels: Option<Arc<dyn LogLevels>>,
    pub(crate) shutdown: Latch,
    /// Set by `stop` once the container has deregistered and drained, just before its endpoint
    /// closes: requests that arrive until then are still served.
    closing: Latch,
    in_flight: InFlight,
    pub(crate) metrics: crate::metrics::Metrics,
    pub(crate) plugins: Plugins,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field("endpoint", &self.endpoint)
            .field("identity", &self.identity)
            .field("interfaces", &self.interfaces.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The container's metrics in lymph's `[name, value, tags]` form.
    pub(crate) fn metrics_series(&self) -> Value {
        let connections = self.peers.lock().expect("peers lock").endpoints().len();
        let in_flight = self.in_flight.count.load(Ordering::Acquire);
        self.metrics.series(connections, in_flight, &[("identity", &self.identity), ("endpoint", &self.endpoint)])
    }

    /// A fresh 32-hex id (message ids, trace ids) from the container's seeded generator.
    pub(crate) fn new_id(&self) -> String {
        let n: u128 = self.rng.lock().expect("rng lock").random();
        format!("{n:032x}")
    }

    /// Runs `f` with the container's seeded random generator.
    pub(crate) fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut self.rng.lock().expect("rng lock"))
    }

    fn is_running(&self) -> bool {
        !self.shutdown.is_set()
    }

    pub(crate) fn track(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.clone())
    }

    /// The installed interface a request for `name` with the `version` header goes to.
    ///
    /// With a version: exactly that version. Without one: the unversioned interface, else the
    /// newest version, as lymph.
    fn find_interface(&self, name: &str, version: Option<&str>) -> Option<Arc<Installed>> {
        let installed = self.interfaces.get(name)?;
        match version {
            Some(version) => {
                let builtin = installed.iter().find(|i| i.builtin);
                if let Some(builtin) = builtin {
                    // lymph NACKs `lymph.*` requests that carry the builtin's version (a bug of
                    // its own); they are served here.
                    return (version == LYMPH_VERSION).then(|| builtin.clone());
                }
                let version = Version::parse(version).ok()?;
                installed.iter().find(|i| i.version == Some(version)).cloned()
            }
            None => installed
                .iter()
                .find(|i| i.version.is_none())
                .or_else(|| installed.iter().max_by_key(|i| i.version))
                .cloned(),
        }
    }

    pub(crate) fn peer_status(&self, endpoint: &str) -> PeerStatus {
        self.peers.lock().expect("peers lock").status(endpoint, &self.connection, tokio::time::Instant::now())
    }

    /// Notes that a request to `endpoint` could not be sent: the peer is not chosen again until
    /// it is heard from.
    pub(crate) fn peer_unreachable(&self, endpoint: &str) {
        self.peers.lock().expect("peers lock").unreachable(endpoint, tokio::time::Instant::now());
    }

    /// The endpoints of the registered instances of every service this container has looked up.
    fn registered_endpoints(&self) -> BTreeSet<String> {
        let watches = self.watches.lock().expect("watches lock");
        watches
            .values()
            .flat_map(|watch| watch.borrow().iter().map(|i| i.endpoint.clone()).collect::<Vec<_>>())
            .collect()
    }

    /// Sends a request and waits for its reply, whatever its kind.
    pub(crate) async fn request(
        &self,
        endpoint: &str,
        subject: &str,
        version: Option<&str>,
        trace_id: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Message> {
        if !self.is_running() {
            return Err(Error::Stopped);
        }
        let id = self.new_id();
        let message = Message {
            id: id.clone(),
            kind: MessageKind::Req,
            subject: subject.to_owned(),
            headers: Headers::rpc(version, Some(trace_id)),
            body,
        };
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id.clone(), tx);
        // Forgets the request however it ends without its reply: a failed send, a timeout, or
        // the caller dropping this future.
        let mut waiting = Waiting { pending: &self.pending, id: &id, answered: false };
        self.peers.lock().expect("peers lock").sent(endpoint, tokio::time::Instant::now());
        self.rpc.send(endpoint, message.to_frames()).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => {
                // The receiving side took the entry out to answer it.
                waiting.answered = true;
                Ok(reply)
            }
            _ => {
                drop(waiting);
                self.rpc.gave_up(&ClientRequest { id: &id, subject, trace_id, endpoint }, timeout);
                Err(Error::Timeout { subject: subject.to_owned(), timeout })
            }
        }
    }

    /// How many requests await their reply.
    pub(crate) fn pending_requests(&self) -> usize {
        self.pending.lock().expect("pending lock").len()
    }

    /// The live instance list of `service`, watched from the registry on first use.
    pub(crate) async fn instances(&self, service: &str) -> Result<InstanceWatch> {
        if let Some(watch) = self.watches.lock().expect("watches lock").get(service) {
            return Ok(watch.clone());
        }
        // Two first calls may both ask the registry; the second watch simply replaces the first.
        let watch = self.registry.watch(service).await?;
        self.watches.lock().expect("watches lock").insert(service.to_owned(), watch.clone());
        Ok(watch)
    }

    pub(crate) async fn emit(&self, event_type: &str, body: Value, trace_id: &str, delay: Duration) -> Result<()> {
        let mut event = Event::new(event_type, body, Some(trace_id.to_owned()));
        event.source = self.identity.clone();
        self.events.emit(event, delay).await
    }

    async fn reply(&self, to: &str, request: &Message, kind: MessageKind, headers: Headers, body: Vec<u8>) {
        let reply = Message { id: self.new_id(), kind, subject: request.id.clone(), headers, body: Bytes::from(body) };
        if let Err(error) = self.rpc.send(to, reply.to_frames()).await {
            tracing::warn!(target: TRACING_TARGET, %error, to, subject = %request.subject, "could not send the reply");
        }
    }
}

/// A request awaiting its reply: removes it from the pending requests when dropped unanswered.
struct Waiting<'a> {
    pending: &'a Mutex<HashMap<String, oneshot::Sender<Message>>>,
    id: &'a str,
    answered: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.pending.lock().expect("pending lock").remove(self.id);
        }
    }
}

/// Builds a [`Container`]: its backends, its interfaces and its settings.
///
/// Backends left unset are those of [`MemoryNetwork::global`], the process-wide embedded network.
pub struct ContainerBuilder {
    rpc: Option<Arc<dyn RpcTransport>>,
    events: Option<Arc<dyn EventSystem>>,
    registry: Option<Arc<dyn Registry>>,
    interfaces: Vec<(Option<String>, Arc<dyn Interface>, Value)>,
    webs: Vec<(Option<String>, Arc<dyn WebInterface>, Value)>,
    web_network: Option<Arc<dyn WebNetwork>>,
    plugins: Vec<Arc<dyn Plugin>>,
    seed: Option<u64>,
    timeout: Duration,
    connection: ConnectionConfig,
    register: bool,
    worker: bool,
    host: HostInfo,
    log_levels: Option<Arc<dyn LogLevels>>,
}

/// Changes log levels at run time, for the built-in `lymph.change_loglevel`: the application
/// that owns the process's logging implements it.
pub trait LogLevels: Send + Sync {
    /// Logs `target` (a logger name, a `tracing` target) at `level` (lymph's level names:
    /// `DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`) for `period`, then as before.
    ///
    /// # Errors
    ///
    /// A reason, when the level cannot be changed.
    fn change(&self, target: &str, level: &str, period: Duration) -> std::result::Result<(), String>;
}

/// Where a registration is: among the services, or in lymph's `http` namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Namespace {
    Services,
    Http,
}

/// What a container publishes about its host in its registrations, besides its endpoint.
#[derive(Debug, Clone, Default)]
struct HostInfo {
    log_endpoint: Option<String>,
    monitoring_endpoint: Option<String>,
    ip: Option<String>,
    hostname: Option<String>,
    fqdn: Option<String>,
}

impl fmt::Debug for ContainerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerBuilder")
            .field("rpc", &self.rpc)
            .field("events", &self.events)
            .field("registry", &self.registry)
            .field(
                "interfaces",
                &self.interfaces.iter().map(|(n, i, _)| n.as_deref().unwrap_or(i.spec().name)).collect::<Vec<_>>(),
            )
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl Default for ContainerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ContainerBuilder {
    /// A builder with no interfaces, lymph's default timeouts, and the embedded backends.
    pub fn new() -> Self {
        Self {
            rpc: None,
            events: None,
            registry: None,
            interfaces: Vec::new(),
            webs: Vec::new(),
            web_network: None,
            plugins: Vec::new(),
            seed: None,
            timeout: DEFAULT_TIMEOUT,
            connection: ConnectionConfig::default(),
            register: true,
            worker: false,
            host: HostInfo::default(),
            log_levels: None,
        }
    }

    /// Uses the three backends of an in-process network.
    pub fn network(self, network: &MemoryNetwork) -> Self {
        self.rpc(network.rpc()).events(network.events()).registry(network.registry())
    }

    /// Sets the RPC transport.
    pub fn rpc(mut self, rpc: impl RpcTransport + 'static) -> Self {
        self.rpc = Some(Arc::new(rpc));
        self
    }

    /// Sets the event system.
    pub fn events(mut self, events: impl EventSystem + 'static) -> Self {
        self.events = Some(Arc::new(events));
        self
    }

    /// Sets the registry.
    pub fn registry(mut self, registry: impl Registry + 'static) -> Self {
        self.registry = Some(Arc::new(registry));
        self
    }

    /// Sets the RPC transport, shared.
    pub fn rpc_arc(mut self, rpc: Arc<dyn RpcTransport>) -> Self {
        self.rpc = Some(rpc);
        self
    }

    /// Sets the event system, shared.
    pub fn events_arc(mut self, events: Arc<dyn EventSystem>) -> Self {
        self.events = Some(events);
        self
    }

    /// Sets the registry, shared.
    pub fn registry_arc(mut self, registry: Arc<dyn Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Installs an interface under the name and version it declares.
    pub fn interface(mut self, interface: impl Interface) -> Self {
        self.interfaces.push((None, Arc::new(interface), Value::Nil));
        self
    }

    /// Installs an interface under `key`: a name, or `name@X.Y.Z` (lymph's config keys), with its
    /// configuration (handlers read it with [`Context::config`]).
    pub fn interface_as(mut self, key: impl Into<String>, interface: impl Interface, config: Value) -> Self {
        self.interfaces.push((Some(key.into()), Arc::new(interface), config));
        self
    }

    /// Installs a shared interface under `key` with its configuration, as
    /// [`interface_as`](Self::interface_as) does; for interfaces chosen at run time, e.g. from a
    /// configuration file's class names.
    pub fn interface_arc(mut self, key: impl Into<String>, interface: Arc<dyn Interface>, config: Value) -> Self {
        self.interfaces.push((Some(key.into()), interface, config));
        self
    }

    /// Seeds the container's random generator (message and trace ids, instance choice).
    /// Without a seed the generator is seeded from the operating system.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The default timeout of this container's requests (3 s unless set).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Heartbeat and liveness settings.
    pub fn connection(mut self, connection: ConnectionConfig) -> Self {
        self.connection = connection;
        self
    }

    /// Whether the container registers its interfaces (`true` unless set); lymph's `--isolated`
    /// is `register(false)`.
    pub fn register(mut self, register: bool) -> Self {
        self.register = register;
        self
    }

    /// The endpoint of the container's log stream, registered as `log_endpoint` so that
    /// `lymph tail` finds it.
    pub fn log_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.host.log_endpoint = Some(endpoint.into());
        self
    }

    /// The endpoint of the container's metrics stream, registered as `monitoring_endpoint` so
    /// that monitoring tools find it.
    pub fn monitoring_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.host.monitoring_endpoint = Some(endpoint.into());
        self
    }

    /// The host facts registered with each instance (`ip`, `hostname`, `fqdn`), as lymph
    /// registers them.
    pub fn host(mut self, ip: impl Into<String>, hostname: impl Into<String>, fqdn: impl Into<String>) -> Self {
        self.host.ip = Some(ip.into());
        self.host.hostname = Some(hostname.into());
        self.host.fqdn = Some(fqdn.into());
        self
    }

    /// What `lymph.change_loglevel` uses to change log levels; without it the method raises
    /// `ValueError`.
    pub fn log_levels(mut self, levels: Arc<dyn LogLevels>) -> Self {
        self.log_levels = Some(levels);
        self
    }

    /// Installs the web interface `interface` under its default name, with the default settings.
    pub fn web(mut self, interface: impl WebInterface) -> Self {
        self.webs.push((None, Arc::new(interface), Value::Nil));
        self
    }

    /// Installs the web interface `interface` under `key` (`name` or `name@X.Y.Z`) with its
    /// configuration section (`port`, `healthcheck`, `tracing`, ...: see
    /// [`WebConfig`](crate::web::WebConfig)).
    pub fn web_arc(mut self, key: impl Into<String>, interface: Arc<dyn WebInterface>, config: Value) -> Self {
        self.webs.push((Some(key.into()), interface, config));
        self
    }

    /// Serves web interfaces on `network` instead of TCP on the container's IP (or loopback).
    pub fn web_network(mut self, network: Arc<dyn WebNetwork>) -> Self {
        self.web_network = Some(network);
        self
    }

    /// Installs `plugin`: its hooks see every request, event and HTTP request the container
    /// handles, and every failure.
    pub fn plugin(self, plugin: impl Plugin) -> Self {
        self.plugin_arc(Arc::new(plugin))
    }

    /// Installs a shared plugin (see [`plugin`](Self::plugin)).
    pub fn plugin_arc(mut self, plugin: Arc<dyn Plugin>) -> Self {
        self.plugins.push(plugin);
        self
    }

    /// Makes the container a worker (lymph's `lymph worker`): it hosts only the interfaces that
    /// have tasks, each under `<name>.worker`, consumes only their tasks, and registers as a
    /// worker. A container that is not a worker consumes every event handler but tasks.
    pub fn worker(mut self, worker: bool) -> Self {
        self.worker = worker;
        self
    }

    /// Starts the container: binds its endpoint, starts serving, subscribes its event handlers
    /// and registers its interfaces. If a step fails, what had started is stopped again.
    ///
    /// # Errors
    ///
    /// A bad interface key, two interfaces with the same name and version, or a backend that fails.
    pub async fn start(self) -> Result<Container> {
        let network = MemoryNetwork::global();
        let rpc = self.rpc.unwrap_or_else(|| Arc::new(network.rpc()));
        let events = self.events.unwrap_or_else(|| Arc::new(network.events()));
        let registry = self.registry.unwrap_or_else(|| Arc::new(network.registry()));

        let mut interfaces: BTreeMap<String, Vec<Arc<Installed>>> = BTreeMap::new();
        let has_services = !self.interfaces.is_empty();
        let builtin = Installed::new("lymph".to_owned(), None, Arc::new(Builtin), Value::Nil, true);
        interfaces.entry("lymph".to_owned()).or_default().push(Arc::new(builtin));
        for (key, interface, config) in self.interfaces {
            let spec = interface.spec();
            if self.worker && !spec.event_handlers.iter().any(|handler| handler.task) {
                continue;
            }
            let (mut name, version) = match key {
                Some(key) => parse_interface_key(&key)?,
                None => (spec.name.to_owned(), spec.version.map(Version::parse).transpose()?),
            };
            if self.worker {
                name.push_str(".worker");
            }
            let slot = interfaces.entry(name.clone()).or_default();
            if slot.iter().any(|i| i.version == version) {
                return Err(Error::Config(format!("interface {name:?} is installed twice with the same version")));
            }
            slot.push(Arc::new(Installed::new(name, version, interface, config, false)));
        }
        // Web interfaces are services too (without methods), as in lymph; workers have none.
        let mut webs = Vec::new();
        for (key, interface, config) in if self.worker { Vec::new() } else { self.webs } {
            let (name, version) = match key {
                Some(key) => parse_interface_key(&key)?,
                None => (interface.name().to_owned(), None),
            };
            let slot = interfaces.entry(name.clone()).or_default();
            if slot.iter().any(|i| i.version == version) {
                return Err(Error::Config(format!("interface {name:?} is installed twice with the same version")));
            }
            let installed = Arc::new(Installed::new(name, version, Arc::new(WebService), config, false));
            webs.push(Arc::new(InstalledWeb::new(installed.clone(), interface)?));
            slot.push(installed);
        }
        let has_services = has_services || !webs.is_empty();
        let web_network = self.web_network.unwrap_or_else(|| {
            Arc::new(self.host.ip.as_deref().map_or_else(TcpWebNetwork::default, TcpWebNetwork::new))
        });

        let (endpoint, inbox) = rpc.bind().await?;
        let identity = container_identity(&endpoint);
        let seed = self.seed.unwrap_or_else(rand::random);
        let shared = Arc::new(Shared {
            rpc,
            events,
            registry,
            identity,
            endpoint,
            timeout: self.timeout,
            connection: self.connection,
            interfaces,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            pending: Mutex::new(HashMap::new()),
            peers: Mutex::new(Peers::default()),
            watches: Mutex::new(BTreeMap::new()),
            skipped: crate::proxy::Skipped::default(),
            registrations: Mutex::new(Vec::new()),
            webs,
            web_network,
            worker: self.worker,
            host: self.host,
            log_levels: self.log_levels,
            metrics: crate::metrics::Metrics::default(),
            plugins: Plugins::new(self.plugins),
            shutdown: Latch::new(),
            closing: Latch::new(),
            in_flight: InFlight::default(),
        });
        tokio::spawn(serve(shared.clone(), inbox));
        tokio::spawn(heartbeat(shared.clone()));
        let container = Container { shared };
        if let Err(error) = container.start_interfaces(self.register && has_services).await {
            // Undo what did start: registrations, consumers, the endpoint.
            container.stop().await;
            return Err(error);
        }
        Ok(container)
    }
}

/// A running lymph container: serves its interfaces and calls others.
///
/// Cloning gives another handle to the same container. Call [`stop`](Container::stop) to shut
/// it down gracefully.
///
/// # Example
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use lymph_core::{Container, Value, memory::MemoryNetwork};
///
/// let network = MemoryNetwork::new();
/// let container = Container::builder().network(&network).start().await?;
/// // Every container serves the built-in `lymph` interface.
/// let proxy = container.proxy(container.endpoint()).namespace("lymph");
/// let pong: String = proxy.call("ping", &Value::map([("payload", "hi")])).await?;
/// assert_eq!(pong, "hi");
/// container.stop().await;
/// # Ok::<(), lymph_core::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Container {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl Container {
    /// A builder for a container.
    pub fn builder() -> ContainerBuilder {
        ContainerBuilder::new()
    }

    /// Subscribes to events directly, outside any interface (lymph's `lymph subscribe`): the
    /// deliveries are the caller's to settle.
    ///
    /// # Errors
    ///
    /// When the event system cannot be reached.
    pub async fn subscribe(&self, subscription: Subscription) -> Result<crate::event::Deliveries> {
        self.shared.events.subscribe(subscription).await
    }

    /// The names of the services the registry knows (lymph's `container.discover()`), sorted.
    ///
    /// # Errors
    ///
    /// When the registry cannot be reached.
    pub async fn discover(&self) -> Result<Vec<String>> {
        let mut names = self.shared.registry.discover().await?;
        names.sort();
        Ok(names)
    }

    /// The registered instances of `service` now (lymph's `container.lookup(name)`), ordered
    /// by instance id.
    ///
    /// # Errors
    ///
    /// [`Error::LookupFailure`] when the registry does not know the service, or a registry error.
    pub async fn lookup(&self, service: &str) -> Result<Vec<ServiceInstance>> {
        Ok(self.shared.instances(service).await?.borrow().clone())
    }

    /// The container's RPC endpoint.
    pub fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    /// The container's identity: lymph's `md5` of its endpoint.
    pub fn identity(&self) -> &str {
        &self.shared.identity
    }

    /// A context with a fresh trace id, for work that does not start from a request or event.
    pub fn context(&self) -> Context {
        Context::new(self.shared.clone(), self.shared.new_id(), Arc::new(Value::Nil))
    }

    /// A context that continues the trace `trace_id`.
    pub fn context_with_trace(&self, trace_id: impl Into<String>) -> Context {
        Context::new(self.shared.clone(), trace_id.into(), Arc::new(Value::Nil))
    }

    /// A proxy to the service `address` (a service name, or an endpoint with `://`), in a fresh trace.
    pub fn proxy(&self, address: &str) -> Proxy {
        self.context().proxy(address)
    }

    /// The typed client `C` (e.g. `EchoClient`) of its service, in a fresh trace.
    pub fn client<C: Client>(&self) -> C {
        self.context().client()
    }

    /// Emits an event in a fresh trace.
    ///
    /// # Errors
    ///
    /// When `body` cannot be encoded or the event system fails.
    pub async fn emit(&self, event_type: &str, body: impl serde::Serialize) -> Result<()> {
        self.context().emit(event_type, body).await
    }

    /// The liveness of the peer at `endpoint`, as this container sees it.
    pub fn peer_status(&self, endpoint: &str) -> PeerStatus {
        self.shared.peer_status(endpoint)
    }

    /// Where the web interface `name` listens, once the container has started.
    pub fn web_addr(&self, name: &str) -> Option<std::net::SocketAddr> {
        self.shared.webs.iter().find(|web| web.installed.name == name).and_then(|web| web.addr())
    }

    /// The web registrations of `service` (lymph's `http` namespace).
    ///
    /// # Errors
    ///
    /// When the registry cannot be reached.
    pub async fn lookup_web(&self, service: &str) -> Result<Vec<WebInstance>> {
        self.shared.registry.lookup_web(service).await
    }

    /// Where this container's web interfaces listen and clients connect to them.
    pub fn web_network(&self) -> Arc<dyn WebNetwork> {
        self.shared.web_network.clone()
    }

    /// How many requests this container has sent that still await their reply. A request stops
    /// waiting when its reply arrives, when it times out, when sending it fails, or when its caller
    /// drops the call's future.
    pub fn pending_requests(&self) -> usize {
        self.shared.pending_requests()
    }

    /// Whether the container still runs.
    pub fn is_running(&self) -> bool {
        self.shared.is_running()
    }

    /// Waits until the container stops: returns once [`stop`](Container::stop) has begun (at
    /// once if it has), so that work tied to the container can end with it.
    pub async fn stopped(&self) {
        self.shared.shutdown.wait().await;
    }

    /// The container's metrics now, in lymph's form: a list of `[name, value, tags]` (see the
    /// table below). The built-in `lymph.get_metrics` returns it, and the metrics stream pushes it.
    ///
    /// | name | tags | value |
    /// |---|---|---|
    /// | `rpc` | `subject` | requests received (lymph's own counter) |
    /// | `rpc.error_count` | `subject`, `kind` (`ERROR`, `NACK`) | requests answered with an error |
    /// | `rpc.duration_ms` | `subject` | total handling time in milliseconds (divide by `rpc`) |
    /// | `rpc.latency_ms_bucket` | `subject`, `le` | requests handled within `le` milliseconds (a histogram, with `_sum` and `_count`) |
    /// | `rpc.connection_count` | | peers the container talks to |
    /// | `rpc.in_flight` | | requests and events being handled now |
    /// | `events` | `event_type`, `handler` | events handled; `event_type` is the handler's pattern that matched |
    /// | `events.failed` | `event_type`, `handler` | events whose handler failed (tagged as `events`) |
    /// | `http.requests` | `interface`, `method`, `status` | HTTP requests answered by web interfaces |
    /// | `http.duration_ms` | `interface` | their total handling time in milliseconds |
    /// | `http.latency_ms_bucket` | `interface`, `le` | HTTP requests answered within `le` milliseconds (with `_sum` and `_count`) |
    /// | `process.memory.rss` | | resident memory of the process in bytes (Linux) |
    ///
    /// Every entry also carries the container's `identity` and `endpoint` tags. Counters count
    /// from the container's start; heartbeats (`lymph.ping`) are not counted. A `subject` is
    /// one of a method its interface declares (the built-in `lymph.*` ones included); requests
    /// for any other method of an interface count under the one subject `unknown` (requests for
    /// an interface the container does not have are not counted), and an HTTP `method` other
    /// than the standard ones counts as `OTHER`, so that made-up names add no series. For the
    /// same reason an event's `event_type` tag is the pattern its handler subscribed with that
    /// matches it (`interop.#` for every `interop.…` type), or `unknown` for an event whose type
    /// matches none of them (its body names another type than the routing key it came under).
    pub fn metrics(&self) -> Value {
        self.shared.metrics_series()
    }

    /// Stops the container gracefully: stops consuming events, deregisters it, serves on for half
    /// a second (the requests of callers that have not heard of the deregistration yet), waits (up
    /// to 30 s) for in-flight requests and events to finish, and releases its endpoint. Stopping
    /// twice does nothing the second time.
    pub async fn stop(&self) {
        let shared = &self.shared;
        if !shared.shutdown.set() {
            let mut registrations = std::mem::take(&mut *shared.registrations.lock().expect("registrations lock"));
            registrations.sort_by_key(|(namespace, _, _)| *namespace);
            let registered = !registrations.is_empty();
            for (namespace, service, id) in registrations {
                let unregistered = match namespace {
                    Namespace::Services => shared.registry.unregister(&service, &id).await,
                    Namespace::Http => shared.registry.unregister_web(&service, &id).await,
                };
                if let Err(error) = unregistered {
                    tracing::warn!(target: TRACING_TARGET, %error, service, ?namespace, "could not unregister");
                }
            }
            if registered {
                tokio::time::sleep(STOP_GRACE).await;
            }
            for installed in shared.interfaces.values().flatten() {
                let ctx = Context::new(shared.clone(), shared.new_id(), installed.config.clone());
                installed.interface.on_stop(&ctx).await;
            }
            let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
                loop {
                    let idle = shared.in_flight.idle.notified();
                    if shared.in_flight.count.load(Ordering::Acquire) == 0 {
                        break;
                    }
                    idle.await;
                }
            })
            .await;
            if drained.is_err() {
                tracing::warn!(target: TRACING_TARGET, "stopped with requests or events still in flight");
            }
            shared.plugins.each("on_stop", |plugin| plugin.on_stop());
            shared.closing.set();
            shared.rpc.close().await;
            tracing::info!(target: TRACING_TARGET, endpoint = %shared.endpoint, "container stopped");
        }
    }

    async fn start_interfaces(&self, register: bool) -> Result<()> {
        let shared = &self.shared;
        for installed in shared.interfaces.values().flatten() {
            let ctx = Context::new(shared.clone(), shared.new_id(), installed.config.clone());
            installed.interface.on_start(&ctx).await?;
        }
        for installed in shared.interfaces.values().flatten() {
            for handler in installed.interface.spec().event_handlers {
                // Tasks are for workers, and workers run nothing else.
                if handler.task != shared.worker {
                    continue;
                }
                if let Some(serial) = handler.serial {
                    crate::serial::start(shared, installed, handler, serial, register).await?;
                    continue;
                }
                let patterns = if handler.task {
                    vec![EventHandlerSpec::task_event_type(&installed.name, handler.name)]
                } else {
                    handler.patterns.iter().map(|p| (*p).to_owned()).collect()
                };
                let subscription = Subscription {
                    queue: format!("{}-{}", installed.name, handler.queue_name.unwrap_or(handler.name)),
                    patterns,
                    broadcast: handler.broadcast,
                    once: handler.once,
                };
                let deliveries = shared.events.subscribe(subscription).await?;
                tokio::spawn(consume(shared.clone(), installed.clone(), handler, deliveries));
            }
        }
        let info = ContainerInfo {
            identity: &shared.identity,
            endpoint: &shared.endpoint,
            interfaces: shared.interfaces.keys().map(String::as_str).collect(),
        };
        shared.plugins.each("on_start", |plugin| plugin.on_start(&info));
        let mut listening = Vec::new();
        for web in &shared.webs {
            listening.push((web.clone(), crate::web::server::start(shared, web).await?));
        }
        if register {
            for (web, addr) in listening {
                let instance = WebInstance {
                    id: web.installed.instance_id(&shared.identity),
                    identity: shared.identity.clone(),
                    version: None,
                    hostname: shared.host.hostname.clone(),
                    // A socket listening on every address registers the container's IP.
                    ip: Some(match &shared.host.ip {
                        Some(ip) if addr.ip().is_unspecified() => ip.clone(),
                        _ => addr.ip().to_string(),
                    }),
                    http_port: addr.port(),
                };
                let (service, id) = (web.installed.name.clone(), instance.id.clone());
                shared.registry.register_web(&service, instance).await?;
                shared.registrations.lock().expect("registrations lock").push((Namespace::Http, service, id));
            }
            for installed in shared.interfaces.values().flatten() {
                let mut instance = ServiceInstance::new(
                    installed.instance_id(&shared.identity),
                    shared.identity.clone(),
                    installed.version_string.clone(),
                    shared.endpoint.clone(),
                );
                instance.worker = shared.worker;
                instance.log_endpoint.clone_from(&shared.host.log_endpoint);
                instance.monitoring_endpoint.clone_from(&shared.host.monitoring_endpoint);
                instance.ip.clone_from(&shared.host.ip);
                instance.hostname.clone_from(&shared.host.hostname);
                instance.fqdn.clone_from(&shared.host.fqdn);
                let id = instance.id.clone();
                shared.registry.register(&installed.name, instance).await?;
                let registered = (Namespace::Services, installed.name.clone(), id);
                shared.registrations.lock().expect("registrations lock").push(registered);
            }
        }
        tracing::info!(target: TRACING_TARGET, endpoint = %shared.endpoint, identity = %shared.identity, "container started");
        Ok(())
    }
}

/// Receives messages: replies go to their waiting requests, requests to their interface. While
/// the container stops, it serves on until the endpoint closes: callers that have not yet seen
/// the container deregister still send it requests.
async fn serve(shared: Arc<Shared>, mut inbox: Inbox) {
    loop {
        let incoming = tokio::select! {
            biased;
            () = shared.closing.wait() => break,
            incoming = inbox.recv() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let message = match Message::from_frames(&incoming.frames) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(target: TRACING_TARGET, %error, source = %incoming.source, "bad message format, dropped");
                continue;
            }
        };
        let now = tokio::time::Instant::now();
        if message.kind == MessageKind::Req {
            let heartbeat = message.subject == "lymph.ping";
            shared.peers.lock().expect("peers lock").received(&incoming.source, heartbeat, now);
            let guard = shared.track();
            // Most handlers answer without waiting on anything: run the request here first, and
            // give it a task of its own only when it has to wait. That saves a task switch per
            // request and keeps the order of a replay the same.
            let mut handling = Box::pin(handle_request(shared.clone(), incoming.source, message, guard));
            if futures::poll!(handling.as_mut()).is_pending() {
                tokio::spawn(handling);
            }
        } else {
            let waiting = shared.pending.lock().expect("pending lock").remove(&message.subject);
            // Replies nobody waits for are answers to heartbeats (or late replies).
            shared.peers.lock().expect("peers lock").received(&incoming.source, waiting.is_none(), now);
            match waiting {
                Some(waiting) => {
                    let _ = waiting.send(message);
                }
                None => {
                    tracing::trace!(target: TRACING_TARGET, subject = %message.subject, "reply to no pending request")
                }
            }
        }
    }
}

async fn handle_request(shared: Arc<Shared>, source: String, request: Message, _guard: InFlightGuard) {
    let trace_id = request.headers.trace_id().map(str::to_owned).unwrap_or_else(|| shared.new_id());
    let nack_headers = || {
        let mut headers = Headers::new();
        headers.insert("trace_id", Value::from(trace_id.as_str()));
        headers
    };
    let Some((interface_name, method)) = request.subject.rsplit_once('.') else {
        tracing::warn!(target: TRACING_TARGET, subject = %request.subject, %trace_id, "malformed subject");
        shared.reply(&source, &request, MessageKind::Nack, nack_headers(), Value::Nil.to_msgpack()).await;
        return;
    };
    let Some(installed) = shared.find_interface(interface_name, request.headers.version()) else {
        tracing::warn!(
            target: TRACING_TARGET, subject = %request.subject, version = ?request.headers.version(), %trace_id,
            "no such interface"
        );
        shared.reply(&source, &request, MessageKind::Nack, nack_headers(), Value::Nil.to_msgpack()).await;
        return;
    };
    let heartbeat = installed.builtin && method == "ping";
    let span = tracing::info_span!(target: TRACING_TARGET, "rpc", subject = %request.subject, trace_id = %trace_id);
    let ctx = Context::new(shared.clone(), trace_id.clone(), installed.config.clone());
    let started = tokio::time::Instant::now();
    let result = AssertUnwindSafe(installed.interface.call(&ctx, method, &request.body))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    let headers = Headers::rpc(installed.version_string.as_deref(), Some(&trace_id));
    let mut failure = None;
    let (kind, body) = match result {
        Ok(Ok(body)) => (MessageKind::Rep, body),
        Ok(Err(CallError::Failed(Error::Raised { type_name, message })))
            if installed.interface.declares(method, &type_name) =>
        {
            let body = Value::map([("type", Value::from(type_name)), ("message", Value::from(message))]);
            (MessageKind::Error, body.to_msgpack())
        }
        Ok(Err(error)) => {
            span.in_scope(|| tracing::error!(target: TRACING_TARGET, %error, "request failed, sending NACK"));
            failure = Some(error.to_string());
            (MessageKind::Nack, Value::Nil.to_msgpack())
        }
        Err(panic) => {
            let message = panic_message(&panic);
            span.in_scope(
                || tracing::error!(target: TRACING_TARGET, panic = %message, "handler panicked, sending NACK"),
            );
            failure = Some(format!("panic: {message}"));
            (MessageKind::Nack, Value::Nil.to_msgpack())
        }
    };
    let duration = started.elapsed();
    if !heartbeat {
        let error = match kind {
            MessageKind::Error => Some("ERROR"),
            MessageKind::Nack => Some("NACK"),
            _ => None,
        };
        let declared = installed.interface.spec().method(method).is_some();
        shared.metrics.request(&request.subject, declared, duration, error);
        shared.plugins.handled(&Handled {
            kind: HandledKind::Rpc,
            interface: &installed.name,
            name: method,
            subject: &request.subject,
            trace_id: &trace_id,
            duration,
            error: failure.as_deref(),
            status: None,
        });
    }
    span.in_scope(|| {
        if heartbeat {
            tracing::debug!(target: TRACING_TARGET, ?duration, %kind, "handled");
        } else {
            tracing::info!(target: TRACING_TARGET, ?duration, %kind, "handled");
        }
    });
    shared.reply(&source, &request, kind, headers, body).await;
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Sends `lymph.ping` to every known peer every heartbeat interval, as lymph does, and forgets
/// the peers that left (see `Peers::prune`).
///
/// Each peer's heartbeat is independent of the others', as lymph's per-connection heartbeat
/// loops are: a ping is sent right here, and one that cannot be sent at once (a connection being
/// made, maybe to a peer that is gone and costs the transport's connect timeout) finishes in a
/// task of its own while the others go out; that peer is skipped until its ping has ended.
async fn heartbeat(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(shared.connection.heartbeat_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let body = Bytes::from(Value::map([("payload", "")]).to_msgpack());
    loop {
        tokio::select! {
            biased;
            () = shared.shutdown.wait() => break,
            _ = interval.tick() => {}
        }
        let registered = shared.registered_endpoints();
        let (endpoints, forgotten) = {
            let mut peers = shared.peers.lock().expect("peers lock");
            let now = tokio::time::Instant::now();
            let forgotten = peers.prune(|endpoint| registered.contains(endpoint), &shared.connection, now);
            (peers.heartbeats_due(), forgotten)
        };
        for endpoint in forgotten {
            tracing::debug!(target: TRACING_TARGET, endpoint, "forgetting a peer that left");
            shared.rpc.disconnect(&endpoint);
        }
        for endpoint in endpoints {
            let ping = Message {
                id: shared.new_id(),
                kind: MessageKind::Req,
                subject: "lymph.ping".to_owned(),
                headers: Headers::rpc(None, Some(&shared.new_id())),
                body: body.clone(),
            };
            let mut sending = Box::pin(send_ping(shared.clone(), endpoint, ping.to_frames()));
            if futures::poll!(sending.as_mut()).is_pending() {
                tokio::spawn(sending);
            }
        }
    }
}

/// Sends one heartbeat and notes that it ended.
async fn send_ping(shared: Arc<Shared>, endpoint: String, frames: crate::rpc::Frames) {
    if let Err(error) = shared.rpc.send(&endpoint, frames).await {
        tracing::trace!(target: TRACING_TARGET, %error, endpoint, "heartbeat not sent");
    }
    shared.peers.lock().expect("peers lock").pinged(&endpoint);
}

/// The next delivery of a subscription, or `None` once the container stops or the subscription
/// ends.
pub(crate) async fn next_delivery(shared: &Shared, deliveries: &mut crate::event::Deliveries) -> Option<Delivery> {
    tokio::select! {
        biased;
        () = shared.shutdown.wait() => None,
        delivery = deliveries.recv() => delivery,
    }
}

/// Consumes one event handler's deliveries.
async fn consume(
    shared: Arc<Shared>,
    installed: Arc<Installed>,
    handler: &'static EventHandlerSpec,
    mut deliveries: crate::event::Deliveries,
) {
    loop {
        let Some(delivery) = next_delivery(&shared, &mut deliveries).await else { break };
        let guard = shared.track();
        let task = handle_delivery(shared.clone(), installed.clone(), handler, delivery, guard);
        if handler.sequential || handler.once {
            task.await;
        } else {
            tokio::spawn(task);
        }
        if handler.once {
            break;
        }
    }
}

pub(crate) async fn handle_delivery(
    shared: Arc<Shared>,
    installed: Arc<Installed>,
    handler: &'static EventHandlerSpec,
    delivery: Delivery,
    _guard: InFlightGuard,
) {
    let Delivery { event, acker } = delivery;
    let trace_id = event.trace_id().map(str::to_owned).unwrap_or_else(|| shared.new_id());
    let span = tracing::info_span!(
        target: TRACING_TARGET, "event", event_type = %event.event_type, handler = %handler.name, trace_id = %trace_id
    );
    let ctx = Context::new(shared.clone(), trace_id, installed.config.clone());
    let started = tokio::time::Instant::now();
    let result = AssertUnwindSafe(installed.interface.handle_event(&ctx, handler.name, &event))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(panic) => Some(format!("panic: {}", panic_message(&panic))),
    };
    let tag = crate::metrics::event_type_tag(handler, &installed.name, &event.event_type);
    shared.metrics.event(&tag, handler.name, failure.is_some());
    shared.plugins.handled(&Handled {
        kind: HandledKind::Event,
        interface: &installed.name,
        name: handler.name,
        subject: &event.event_type,
        trace_id: ctx.trace_id(),
        duration: started.elapsed(),
        error: failure.as_deref(),
        status: None,
    });
    let settled = match failure {
        None => acker.ack().await,
        Some(failure) => {
            let retry = event.retry_count().unwrap_or(i64::from(handler.retry)) - 1;
            if retry >= 0 {
                span.in_scope(
                    || tracing::warn!(target: TRACING_TARGET, %failure, retry, "event handler failed, retrying"),
                );
                let mut again = event.clone();
                again.headers.insert("retry_count", Value::from(retry));
                acker.retry(again).await
            } else {
                span.in_scope(
                    || tracing::error!(target: TRACING_TARGET, %failure, "event handler failed, event rejected"),
                );
                acker.reject().await
            }
        }
    };
    if let Err(error) = settled {
        span.in_scope(|| tracing::warn!(target: TRACING_TARGET, %error, "could not settle the event"));
    }
}
