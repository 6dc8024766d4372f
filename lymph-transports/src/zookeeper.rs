//! The service registry in ZooKeeper, as lymph 0.15's `ZookeeperServiceRegistry`.
//!
//! Layout (relative to the chroot, `/lymph` unless the hosts string names another one):
//!
//! - `/services/<service>`: a persistent node with empty data, made on first registration and never removed;
//! - `/services/<service>/<instance id>`: an ephemeral node holding the instance as JSON, byte for byte as
//!   Python's `json.dumps` writes it (`", "` and `": "` separators, non-ASCII characters escaped);
//! - `/http/<service>/<instance id>`: an ephemeral node holding a web interface's registration
//!   ([`WebInstance`]) as JSON in the same way; its parent nodes are made as for services.
//!
//! A background task follows the client's session. A plain disconnect is repaired by the client
//! itself (the ephemeral nodes live as long as the session does); when the session expires, a new
//! one is made and every instance registered through this registry, web registrations included,
//! is written again, as lymph does on kazoo's `CONNECTED` state. Watches use ZooKeeper's one-shot
//! watches on the service node's children and on each instance node, re-armed on every change.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, join_all, select_all};
use lymph_core::registry::{InstanceWatch, Registry, ServiceInstance, WebInstance};
use lymph_core::{Error, Result};
use tokio::sync::watch;
use tokio::time::Instant;
use zookeeper_client as zk;

/// The `tracing` target of this module.
const TARGET: &str = "lymph::zookeeper";

const DEFAULT_HOSTS: &str = "127.0.0.1:2181";
const DEFAULT_CHROOT: &str = "/lymph";

const PERSISTENT: zk::CreateOptions<'static> = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
const EPHEMERAL: zk::CreateOptions<'static> = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());

/// The first and the longest pause between two attempts of a failing background operation.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Where the ZooKeeper registry connects, and its session settings.
///
/// lymph's `registry.zkclient.hosts` maps onto [`hosts`](Self::hosts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkConfig {
    /// The ZooKeeper connect string: `host:port[,host:port...][/chroot]` (default `127.0.0.1:2181`).
    ///
    /// Without a chroot suffix the registry lives under `/lymph`, as in lymph; with one (for
    /// example `zk1:2181,zk2:2181/other`) it lives under that chroot instead.
    pub hosts: String,
    /// The session timeout asked of ZooKeeper (default 10 s, kazoo's default). Registered
    /// instances vanish this long after the process dies without closing its session.
    pub session_timeout: Duration,
    /// How long [`ZkRegistry::connect`] tries to reach ZooKeeper before it gives up (default 5 s).
    pub connect_timeout: Duration,
}

impl Default for ZkConfig {
    fn default() -> Self {
        Self {
            hosts: DEFAULT_HOSTS.to_owned(),
            session_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl ZkConfig {
    /// The default settings with the given connect string (`host:port[,...][/chroot]`).
    pub fn new(hosts: impl Into<String>) -> Self {
        Self { hosts: hosts.into(), ..Self::default() }
    }

    /// Sets the session timeout.
    #[must_use]
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Splits the connect string into the servers and the chroot (`/lymph` when it names none).
    fn split(&self) -> Result<(String, String)> {
        let hosts = self.hosts.trim();
        // The chroot follows the last server; a server may carry a scheme such as `tcp://`.
        let last = hosts.rfind(',').map_or(0, |i| i + 1);
        let segment = &hosts[last..];
        let scheme = segment.find("://").map_or(0, |i| i + 3);
        let (servers, chroot) = match segment[scheme..].find('/') {
            Some(slash) => hosts.split_at(last + scheme + slash),
            None => (hosts, ""),
        };
        if servers.is_empty() {
            return Err(Error::Config(format!("no ZooKeeper server in hosts {:?}", self.hosts)));
        }
        let chroot = chroot.trim_end_matches('/');
        if chroot.is_empty() {
            return Ok((servers.to_owned(), DEFAULT_CHROOT.to_owned()));
        }
        if chroot.split('/').skip(1).any(|part| part.is_empty() || part == "." || part == "..") {
            return Err(Error::Config(format!("bad ZooKeeper chroot {chroot:?} in hosts {:?}", self.hosts)));
        }
        Ok((servers.to_owned(), chroot.to_owned()))
    }
}

/// A failed ZooKeeper operation, with what was being done.
#[derive(Debug)]
struct ZkError {
    context: String,
    source: zk::Error,
}

impl fmt::Display for ZkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for ZkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn zk_error(context: String, source: zk::Error) -> Error {
    Error::transport(ZkError { context, source })
}

/// Whether an operation that failed this way may succeed on the same or on the next session.
fn retryable(error: &zk::Error) -> bool {
    matches!(
        error,
        zk::Error::ConnectionLoss | zk::Error::SessionExpired | zk::Error::SessionMoved | zk::Error::ClientClosed
    )
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

type ZkResult<T> = std::result::Result<T, zk::Error>;

/// The namespace of a registration: the first path segment under the chroot, as lymph's
/// `register(..., namespace=...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Namespace {
    /// `/services`: RPC interfaces.
    Services,
    /// `/http`: web interfaces.
    Http,
}

impl Namespace {
    fn as_str(self) -> &'static str {
        match self {
            Self::Services => "services",
            Self::Http => "http",
        }
    }
}

/// A registration: its namespace, service name and instance id.
type Key = (Namespace, String, String);

type InstanceSender = Arc<watch::Sender<Vec<ServiceInstance>>>;

/// What the registry handle and its background tasks share.
struct Inner {
    config: ZkConfig,
    /// The connect string without its chroot.
    servers: String,
    /// The absolute path every lymph path is relative to, e.g. `/lymph`.
    chroot: String,
    /// The client of the current session (unchrooted: paths are absolute). Replaced when the
    /// session ends; `None` while [`ZkRegistry::restart_session`] lets the session close.
    client: Mutex<Option<zk::Client>>,
    /// Counts the sessions that replaced an expired one; bumped after each replacement.
    generation: watch::Sender<u64>,
    /// Every instance registered through this registry: `(namespace, service, id)` to node data.
    registered: Mutex<BTreeMap<Key, Vec<u8>>>,
    /// One live instance list per watched service, kept by one background task each.
    watches: Mutex<HashMap<String, InstanceSender>>,
    /// Set when the [`ZkRegistry`] is dropped or closed: every background task ends.
    shutdown: watch::Sender<bool>,
}

impl Inner {
    fn client(&self) -> Option<zk::Client> {
        lock(&self.client).clone()
    }

    fn services_path(&self) -> String {
        format!("{}/services", self.chroot)
    }

    fn service_path(&self, service: &str) -> String {
        self.dir_path(Namespace::Services, service)
    }

    /// The node whose children are the instances of `service` in `namespace`.
    fn dir_path(&self, namespace: Namespace, service: &str) -> String {
        format!("{}/{}/{service}", self.chroot, namespace.as_str())
    }

    fn node_path(&self, (namespace, service, id): &Key) -> String {
        format!("{}/{id}", self.dir_path(*namespace, service))
    }

    async fn connect_client(config: &ZkConfig, servers: &str) -> Result<zk::Client> {
        let connector = zk::Client::connector().with_session_timeout(config.session_timeout).with_fail_eagerly();
        match tokio::time::timeout(config.connect_timeout, connector.connect(servers)).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(error)) => Err(zk_error(format!("cannot connect to ZooKeeper at {servers}"), error)),
            Err(_) => Err(Error::transport(format!(
                "cannot connect to ZooKeeper at {servers}: no session within {:?}",
                config.connect_timeout
            ))),
        }
    }

    /// Runs `op` on the current client; retries it while the connection or the session is being
    /// repaired, for at most the session timeout.
    async fn run<T, F, Fut>(&self, what: impl Fn() -> String, mut op: F) -> std::result::Result<T, (zk::Error, String)>
    where
        F: FnMut(zk::Client) -> Fut,
        Fut: Future<Output = ZkResult<T>>,
    {
        let deadline = Instant::now() + self.config.session_timeout;
        let mut generation = self.generation.subscribe();
        let mut shutdown = self.shutdown.subscribe();
        let mut pause = RETRY_MIN;
        loop {
            let result = match self.client() {
                Some(client) => op(client).await,
                None => Err(zk::Error::ClientClosed),
            };
            match result {
                Ok(value) => return Ok(value),
                Err(error) if retryable(&error) && Instant::now() < deadline => {
                    tracing::debug!(target: TARGET, %error, "ZooKeeper {}: retrying", what());
                    tokio::select! {
                        _ = generation.changed() => {}
                        _ = shutdown.wait_for(|closed| *closed) => return Err((error, what())),
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(RETRY_MAX);
                }
                Err(error) => return Err((error, what())),
            }
        }
    }

    /// Writes the ephemeral node of an instance: makes its service node if needed, deletes an
    /// existing node at its path, creates it.
    async fn put_node(&self, key: &Key, data: &[u8]) -> Result<()> {
        let dir = self.dir_path(key.0, &key.1);
        let path = self.node_path(key);
        self.run(|| format!("register {path}"), |client| put_node(client, &dir, &path, data))
            .await
            .map_err(|(error, what)| zk_error(format!("cannot {what} on {}", self.config.hosts), error))
    }

    /// Registers `instance` (a service or web registration) as the node `id` of `service` in
    /// `namespace`, as lymph's JSON.
    async fn register_instance(
        &self,
        namespace: Namespace,
        service: &str,
        id: &str,
        instance: &impl serde::Serialize,
    ) -> Result<()> {
        if !valid_service(service) {
            return Err(Error::Config(format!("bad service name {service:?} for ZooKeeper")));
        }
        if !valid_service(id) {
            return Err(Error::Config(format!("bad instance id {id:?} for ZooKeeper")));
        }
        let data = python_json(instance)?;
        self.register_node((namespace, service.to_owned(), id.to_owned()), data).await
    }

    /// Remembers the instance `key` and writes its node; forgets it again when that fails.
    async fn register_node(&self, key: Key, data: Vec<u8>) -> Result<()> {
        lock(&self.registered).insert(key.clone(), data.clone());
        let result = self.put_node(&key, &data).await;
        if result.is_err() {
            let mut registered = lock(&self.registered);
            if registered.get(&key) == Some(&data) {
                registered.remove(&key);
            }
        }
        result
    }

    /// Forgets the instance `key` and deletes its node, if it is there.
    async fn unregister_node(&self, key: Key) -> Result<()> {
        lock(&self.registered).remove(&key);
        if !valid_service(&key.1) || !valid_service(&key.2) {
            return Ok(());
        }
        let path = self.node_path(&key);
        let delete = |client: zk::Client| {
            let path = path.clone();
            async move {
                match client.delete(&path, None).await {
                    Ok(()) | Err(zk::Error::NoNode) => Ok(()),
                    Err(error) => Err(error),
                }
            }
        };
        self.run(|| format!("unregister {path}"), delete)
            .await
            .map_err(|(error, what)| zk_error(format!("cannot {what} on {}", self.config.hosts), error))
    }

    /// Writes every remembered instance again (on a new session).
    async fn reregister_all(&self) {
        let registered: Vec<_> = lock(&self.registered).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (key, data) in registered {
            // Unregistered meanwhile: leave it out.
            if !lock(&self.registered).contains_key(&key) {
                continue;
            }
            let (namespace, service, id) = (key.0.as_str(), key.1.as_str(), key.2.as_str());
            match self.put_node(&key, &data).await {
                Ok(()) if !lock(&self.registered).contains_key(&key) => {
                    // Unregistered while it was being written: take it away again.
                    let path = self.node_path(&key);
                    if let Some(client) = self.client()
                        && let Err(error) = client.delete(&path, None).await
                    {
                        tracing::warn!(target: TARGET, path, %error, "could not remove an unregistered instance");
                    }
                }
                Ok(()) => tracing::info!(target: TARGET, namespace, service, id, "re-registered the instance"),
                Err(error) => {
                    tracing::error!(target: TARGET, namespace, service, id, %error, "could not re-register the instance")
                }
            }
        }
    }

    /// Ends the watch task of `service` if nobody holds its list any more; decided under the
    /// lock that [`ZkRegistry::watch`] subscribes under, so no new receiver is left behind.
    fn release_watch(&self, service: &str, sender: &InstanceSender) -> bool {
        let mut watches = lock(&self.watches);
        if sender.receiver_count() > 0 {
            return false;
        }
        if watches.get(service).is_some_and(|current| Arc::ptr_eq(current, sender)) {
            watches.remove(service);
        }
        true
    }
}

/// Makes every missing node of the absolute path `path` (persistent, empty), as kazoo's `makepath`.
async fn make_path(client: &zk::Client, path: &str) -> ZkResult<()> {
    let mut end = 0;
    while end < path.len() {
        end = path[end + 1..].find('/').map_or(path.len(), |i| end + 1 + i);
        match client.create(&path[..end], &[], &PERSISTENT).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

async fn put_node(client: zk::Client, dir: &str, path: &str, data: &[u8]) -> ZkResult<()> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match client.delete(path, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(error) => return Err(error),
        }
        match client.create(path, data, &EPHEMERAL).await {
            Ok(_) => return Ok(()),
            Err(zk::Error::NoNode) if attempts < 5 => make_path(&client, dir).await?,
            // Another session wrote the same instance meanwhile: replace it again.
            Err(zk::Error::NodeExists) if attempts < 5 => {}
            Err(error) => return Err(error),
        }
    }
}

/// Reads the web registrations under the node `dir` (`/http/<service>`), ordered by id; none when
/// the node does not exist.
async fn read_web(client: zk::Client, dir: &str) -> ZkResult<Vec<WebInstance>> {
    let mut children = match client.list_children(dir).await {
        Ok(children) => children,
        Err(zk::Error::NoNode) => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    children.sort();
    let paths: Vec<String> = children.iter().map(|child| format!("{dir}/{child}")).collect();
    // The requests are sent as the futures are made, so they travel pipelined.
    let reads: Vec<_> = paths.iter().map(|path| client.get_data(path)).collect();
    let mut instances = Vec::with_capacity(paths.len());
    for (path, read) in paths.iter().zip(join_all(reads).await) {
        match read {
            Ok((data, _)) => match serde_json::from_slice::<WebInstance>(&data) {
                Ok(instance) => instances.push(instance),
                Err(error) => {
                    tracing::warn!(target: TARGET, path, %error, "skipping a web node that is not lymph's JSON")
                }
            },
            // Deleted since it was listed.
            Err(zk::Error::NoNode) => {}
            Err(error) => return Err(error),
        }
    }
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(instances)
}

/// Reads the instances of the service node `dir` and arms one-shot watches on its children and
/// on each instance node.
async fn read_service(client: zk::Client, dir: &str) -> ZkResult<(Vec<ServiceInstance>, Vec<zk::OneshotWatcher>)> {
    let (mut children, _, children_watcher) = client.get_and_watch_children(dir).await?;
    children.sort();
    let paths: Vec<String> = children.iter().map(|child| format!("{dir}/{child}")).collect();
    // The requests are sent as the futures are made, so they travel pipelined.
    let reads: Vec<_> = paths.iter().map(|path| client.get_and_watch_data(path)).collect();
    let mut watchers = vec![children_watcher];
    let mut instances = Vec::with_capacity(paths.len());
    for (path, read) in paths.iter().zip(join_all(reads).await) {
        match read {
            Ok((data, _, watcher)) => {
                watchers.push(watcher);
                match serde_json::from_slice::<ServiceInstance>(&data) {
                    Ok(instance) => instances.push(instance),
                    Err(error) => {
                        tracing::warn!(target: TARGET, path, %error, "skipping an instance node that is not lymph's JSON")
                    }
                }
            }
            // Deleted since it was listed; the children watch reports that.
            Err(zk::Error::NoNode) => {}
            Err(error) => return Err(error),
        }
    }
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((instances, watchers))
}

fn publish(sender: &InstanceSender, list: Vec<ServiceInstance>) {
    sender.send_if_modified(|current| {
        if *current == list {
            false
        } else {
            *current = list;
            true
        }
    });
}

/// Keeps the panic that zookeeper-client 0.11.2 raises in a one-shot watch dropped without an
/// event (its `session/watch.rs`), which [`ZkRegistry`] catches and recovers from, off the
/// terminal: the process's panic hook gets every other panic, as before. For binaries: a library
/// never changes the panic hook by itself. Calling it more than once installs it once.
pub fn quiet_caught_watch_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.location().is_some_and(|location| is_caught_watch_panic(location.file())) {
                tracing::debug!(target: TARGET, %info, "a ZooKeeper watch broke without an event (caught)");
            } else {
                previous(info);
            }
        }));
    });
}

/// Whether a panic at `file` is the one [`watch_event`] catches: zookeeper-client's
/// `src/session/watch.rs`.
fn is_caught_watch_panic(file: &str) -> bool {
    let file = file.replace('\\', "/");
    file.contains("zookeeper-client") && file.ends_with("src/session/watch.rs")
}

/// The event of a one-shot watch, or `None` when the watch broke.
///
/// zookeeper-client 0.11.2 panics in `OneshotWatcher::changed` when the watch is dropped on its
/// side without an event (seen across a server restart); that must not end the watch task, so
/// the panic is caught here and taken as a reason to read the service again.
fn watch_event(watcher: zk::OneshotWatcher) -> BoxFuture<'static, Option<zk::WatchedEvent>> {
    AssertUnwindSafe(watcher.changed())
        .catch_unwind()
        .map(|event| match event {
            Ok(event) => Some(event),
            Err(_) => {
                tracing::debug!(target: TARGET, "a ZooKeeper watch broke without an event");
                None
            }
        })
        .boxed()
}

/// Keeps the instance list of `service` live until the registry shuts down or nobody holds it.
async fn watch_task(inner: Arc<Inner>, service: String, sender: InstanceSender, mut watchers: Vec<zk::OneshotWatcher>) {
    let dir = inner.service_path(&service);
    let mut shutdown = inner.shutdown.subscribe();
    let mut generation = inner.generation.subscribe();
    let mut pause = RETRY_MIN;
    loop {
        let mut trigger: BoxFuture<'static, Option<zk::WatchedEvent>> = if watchers.is_empty() {
            tokio::time::sleep(pause).map(|()| None).boxed()
        } else {
            select_all(watchers.drain(..).map(watch_event)).map(|(event, ..)| event).boxed()
        };
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|closed| *closed) => return,
                () = sender.closed() => {
                    if inner.release_watch(&service, &sender) {
                        tracing::debug!(target: TARGET, service, "nobody watches the service any more");
                        return;
                    }
                }
                event = &mut trigger => {
                    tracing::trace!(target: TARGET, service, ?event, "ZooKeeper watch fired");
                    break;
                }
                _ = generation.changed() => break,
            }
        }
        match inner.run(|| format!("watch {dir}"), |client| read_service(client, &dir)).await {
            Ok((list, armed)) => {
                publish(&sender, list);
                watchers = armed;
                pause = RETRY_MIN;
            }
            Err((zk::Error::NoNode, _)) => {
                // The service node was removed by hand: no instances until it comes back.
                publish(&sender, Vec::new());
                let check = |client: zk::Client| {
                    let dir = dir.clone();
                    async move { client.check_and_watch_stat(&dir).await }
                };
                match inner.run(|| format!("watch {dir}"), check).await {
                    Ok((None, watcher)) => watchers = vec![watcher],
                    Ok((Some(_), _)) => {}
                    Err((error, _)) => {
                        tracing::warn!(target: TARGET, service, %error, "cannot watch the service node");
                        pause = (pause * 2).min(RETRY_MAX);
                    }
                }
            }
            Err((error, _)) => {
                tracing::warn!(target: TARGET, service, %error, "cannot read the service's instances; retrying");
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Follows the session: logs its states and replaces it when it expires.
async fn session_task(inner: Arc<Inner>, mut session: zk::SessionId, mut states: zk::StateWatcher) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        // A state reached before the watcher was made is not reported by it.
        let mut state = states.peek_state();
        while !state.is_terminated() {
            state = tokio::select! {
                _ = shutdown.wait_for(|closed| *closed) => return,
                state = states.changed() => state,
            };
            match state {
                zk::SessionState::Disconnected => {
                    tracing::warn!(target: TARGET, %session, "disconnected from ZooKeeper; reconnecting");
                }
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    tracing::info!(target: TARGET, %session, ?state, "connected to ZooKeeper");
                }
                _ => {}
            }
        }
        if *shutdown.borrow() {
            return;
        }
        tracing::warn!(target: TARGET, %session, ?state, "the ZooKeeper session ended; starting a new one");
        let mut pause = Duration::from_millis(200);
        let client = loop {
            let attempt = tokio::select! {
                _ = shutdown.wait_for(|closed| *closed) => return,
                attempt = Inner::connect_client(&inner.config, &inner.servers) => attempt,
            };
            match attempt {
                Ok(client) => break client,
                Err(error) => {
                    tracing::warn!(target: TARGET, %error, "cannot start a new ZooKeeper session; retrying");
                    tokio::select! {
                        _ = shutdown.wait_for(|closed| *closed) => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        };
        session = client.session_id();
        states = client.state_watcher();
        tracing::info!(target: TARGET, %session, "started a new ZooKeeper session");
        *lock(&inner.client) = Some(client);
        inner.generation.send_modify(|generation| *generation += 1);
        inner.reregister_all().await;
    }
}

/// lymph's service registry in ZooKeeper: the [`Registry`] that Python lymph 0.15 services share.
///
/// Instances are ephemeral nodes of this registry's ZooKeeper session: they vanish when the
/// registry is dropped (the session is closed) or when the process dies (after the session
/// timeout). An expired session is replaced and the registered instances are written again.
/// Web registrations ([`Registry::register_web`], nodes `/http/<service>/<id>`) are ephemeral
/// nodes of the same session and are written again with the others.
///
/// Dropping the registry ends its background tasks and closes its session; watch receivers keep
/// their last list but see no more changes.
pub struct ZkRegistry {
    inner: Arc<Inner>,
}

impl fmt::Debug for ZkRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkRegistry")
            .field("hosts", &self.inner.config.hosts)
            .field("chroot", &self.inner.chroot)
            .field("session", &self.inner.client().map(|client| format!("{}", client.session_id())))
            .finish_non_exhaustive()
    }
}

impl ZkRegistry {
    /// Connects to ZooKeeper and starts following the session.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad hosts string, [`Error::Transport`] when no session could be
    /// made within the connect timeout (the message names the hosts).
    pub async fn connect(config: ZkConfig) -> Result<Self> {
        let (servers, chroot) = config.split()?;
        let client = Inner::connect_client(&config, &servers).await?;
        tracing::info!(
            target: TARGET,
            hosts = %config.hosts,
            chroot,
            session = %client.session_id(),
            "connected to ZooKeeper"
        );
        let (session, states) = (client.session_id(), client.state_watcher());
        let inner = Arc::new(Inner {
            config,
            servers,
            chroot,
            client: Mutex::new(Some(client)),
            generation: watch::Sender::new(0),
            registered: Mutex::new(BTreeMap::new()),
            watches: Mutex::new(HashMap::new()),
            shutdown: watch::Sender::new(false),
        });
        tokio::spawn(session_task(Arc::clone(&inner), session, states));
        Ok(Self { inner })
    }

    /// The absolute path the registry lives under (`/lymph` unless the hosts string names another).
    pub fn chroot(&self) -> &str {
        &self.inner.chroot
    }

    /// The id of the current ZooKeeper session, the owner of the registered ephemeral nodes, or
    /// `None` while a new session is being made. It changes when an ended session is replaced.
    pub fn session_id(&self) -> Option<i64> {
        self.inner.client().map(|client| client.session_id().0)
    }

    /// Closes the current session and waits until the registry has made a new one and written
    /// its instances (and web registrations) again: the path an expired session takes, made to
    /// happen now.
    ///
    /// Meanwhile the registry's ephemeral nodes vanish, as on a real expiry, and watchers of its
    /// services see them go and come back. For tests of the recovery path.
    ///
    /// # Errors
    ///
    /// When no new session with every instance registered follows within twice the connect timeout.
    pub async fn restart_session(&self) -> Result<()> {
        let mut generation = self.inner.generation.subscribe();
        // Dropping the last client closes the session; the session task sees it closed.
        let old = lock(&self.inner.client).take();
        let Some(old) = old else {
            return Err(Error::Config("the ZooKeeper session is already being replaced".into()));
        };
        tracing::info!(target: TARGET, session = %old.session_id(), "closing the ZooKeeper session on request");
        drop(old);
        let wait = self.inner.config.connect_timeout * 2;
        let deadline = Instant::now() + wait;
        if tokio::time::timeout(wait, generation.changed()).await.is_err() {
            return Err(Error::transport(format!("no new ZooKeeper session within {wait:?}")));
        }
        // The session task re-registers after it publishes the new session: wait for that too.
        loop {
            let expected: Vec<Key> = lock(&self.inner.registered).keys().cloned().collect();
            let Some(client) = self.inner.client() else {
                return Err(Error::transport("the new ZooKeeper session ended at once"));
            };
            let mut missing = false;
            for key in &expected {
                let path = self.inner.node_path(key);
                match client.check_stat(&path).await {
                    Ok(Some(stat)) if stat.ephemeral_owner == client.session_id().0 => {}
                    _ => missing = true,
                }
            }
            if !missing {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::transport("the instances were not registered again on the new session"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes the session (its ephemeral nodes vanish at once) and ends the background tasks.
    ///
    /// Dropping the registry does the same without waiting.
    pub async fn close(self) {
        let Some(mut states) = self.inner.client().map(|client| client.state_watcher()) else {
            return;
        };
        drop(self);
        let closed = async {
            while !states.peek_state().is_terminated() {
                states.changed().await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(2), closed).await.is_err() {
            tracing::debug!(target: TARGET, "the ZooKeeper session did not report closing within 2 s");
        }
    }
}

impl Drop for ZkRegistry {
    fn drop(&mut self) {
        self.inner.shutdown.send_replace(true);
    }
}

/// Checks that a service name is one ZooKeeper node name.
fn valid_service(service: &str) -> bool {
    !service.is_empty() && service != "." && service != ".." && !service.contains('/')
}

impl Registry for ZkRegistry {
    fn register<'a>(&'a self, service: &'a str, instance: ServiceInstance) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            lymph_core::registry::check_service_name(service)?;
            self.inner.register_instance(Namespace::Services, service, &instance.id, &instance).await
        })
    }

    fn unregister<'a>(&'a self, service: &'a str, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.inner.unregister_node((Namespace::Services, service.to_owned(), id.to_owned())))
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let path = self.inner.services_path();
            let list = |client: zk::Client| {
                let path = path.clone();
                async move {
                    match client.list_children(&path).await {
                        Ok(children) => Ok(children),
                        Err(zk::Error::NoNode) => Ok(Vec::new()),
                        Err(error) => Err(error),
                    }
                }
            };
            let mut services =
                self.inner.run(|| format!("list {path}"), list).await.map_err(|(error, what)| {
                    zk_error(format!("cannot {what} on {}", self.inner.config.hosts), error)
                })?;
            services.sort();
            Ok(services)
        })
    }

    fn watch<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<InstanceWatch>> {
        Box::pin(async move {
            if !valid_service(service) {
                return Err(Error::LookupFailure { service: service.to_owned() });
            }
            if let Some(sender) = lock(&self.inner.watches).get(service) {
                return Ok(sender.subscribe());
            }
            let dir = self.inner.service_path(service);
            let (list, watchers) = match self.inner.run(|| format!("watch {dir}"), |c| read_service(c, &dir)).await {
                Ok(read) => read,
                Err((zk::Error::NoNode, _)) => return Err(Error::LookupFailure { service: service.to_owned() }),
                Err((error, what)) => {
                    return Err(zk_error(format!("cannot {what} on {}", self.inner.config.hosts), error));
                }
            };
            let mut watches = lock(&self.inner.watches);
            // Another first call got there meanwhile: share its list.
            if let Some(sender) = watches.get(service) {
                return Ok(sender.subscribe());
            }
            let sender: InstanceSender = Arc::new(watch::Sender::new(list));
            let receiver = sender.subscribe();
            watches.insert(service.to_owned(), Arc::clone(&sender));
            drop(watches);
            tokio::spawn(watch_task(Arc::clone(&self.inner), service.to_owned(), sender, watchers));
            Ok(receiver)
        })
    }

    fn register_web<'a>(&'a self, service: &'a str, instance: WebInstance) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            lymph_core::registry::check_service_name(service)?;
            self.inner.register_instance(Namespace::Http, service, &instance.id, &instance).await
        })
    }

    fn unregister_web<'a>(&'a self, service: &'a str, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.inner.unregister_node((Namespace::Http, service.to_owned(), id.to_owned())))
    }

    fn lookup_web<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Vec<WebInstance>>> {
        Box::pin(async move {
            if !valid_service(service) {
                return Ok(Vec::new());
            }
            let dir = self.inner.dir_path(Namespace::Http, service);
            self.inner
                .run(|| format!("look up {dir}"), |client| read_web(client, &dir))
                .await
                .map_err(|(error, what)| zk_error(format!("cannot {what} on {}", self.inner.config.hosts), error))
        })
    }
}

/// The instance as JSON, byte for byte as Python's `json.dumps` (default settings) writes it:
/// `", "` and `": "` separators and every character outside printable ASCII escaped as `\uXXXX`.
fn python_json(instance: &impl serde::Serialize) -> Result<Vec<u8>> {
    let json =
        lymph_core::codec::json_dumps(instance).map_err(|error| Error::Config(format!("bad instance: {error}")))?;
    Ok(json.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_caught_watch_panic_is_kept_quiet() {
        let registry = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
        assert!(is_caught_watch_panic(&format!("{registry}/zookeeper-client-0.11.2/src/session/watch.rs")));
        assert!(is_caught_watch_panic(r"C:\cargo\registry\src\zookeeper-client-0.11.2\src\session\watch.rs"));
        assert!(!is_caught_watch_panic(&format!("{registry}/zookeeper-client-0.11.2/src/session/mod.rs")));
        assert!(!is_caught_watch_panic("lymph-transports/src/zookeeper.rs"));
        assert!(!is_caught_watch_panic(&format!("{registry}/other-crate/src/session/watch.rs")));
    }

    #[test]
    fn json_matches_python_json_dumps() {
        let mut instance = ServiceInstance::new(
            "8aaa4bc8b4228e28dcb6f58686228be1",
            "6332f7e13b20cdfe61daa462925c8f25",
            None,
            "tcp://127.0.0.1:64649",
        );
        instance.log_endpoint = Some("tcp://127.0.0.1:34151".into());
        instance.monitoring_endpoint = Some("tcp://127.0.0.1:40653".into());
        instance.fqdn = Some("localhost".into());
        instance.hostname = Some("vm".into());
        instance.ip = Some("127.0.0.1".into());
        // The capture in reference/wire/zookeeper.txt.
        let expected = r#"{"id": "8aaa4bc8b4228e28dcb6f58686228be1", "identity": "6332f7e13b20cdfe61daa462925c8f25", "version": null, "endpoint": "tcp://127.0.0.1:64649", "log_endpoint": "tcp://127.0.0.1:34151", "monitoring_endpoint": "tcp://127.0.0.1:40653", "backdoor_endpoint": null, "fqdn": "localhost", "hostname": "vm", "ip": "127.0.0.1", "type": false}"#;
        assert_eq!(String::from_utf8(python_json(&instance).unwrap()).unwrap(), expected);
        assert_eq!(expected.len(), 333);
    }

    #[test]
    fn web_json_matches_python_json_dumps() {
        let instance = WebInstance {
            id: "8aaa4bc8b4228e28dcb6f58686228be1".into(),
            identity: "6332f7e13b20cdfe61daa462925c8f25".into(),
            version: None,
            hostname: Some("vm".into()),
            ip: Some("127.0.0.1".into()),
            http_port: 4080,
        };
        // json.dumps(ServiceInstance(id=..., identity=..., hostname='vm', ip='127.0.0.1',
        // http_port=4080).serialize()), as lymph's web interface registers itself.
        let expected = r#"{"id": "8aaa4bc8b4228e28dcb6f58686228be1", "identity": "6332f7e13b20cdfe61daa462925c8f25", "version": null, "hostname": "vm", "ip": "127.0.0.1", "http_port": 4080}"#;
        assert_eq!(String::from_utf8(python_json(&instance).unwrap()).unwrap(), expected);
    }

    #[test]
    fn hosts_and_chroot() {
        let split = |hosts: &str| ZkConfig::new(hosts).split().map_err(|e| e.to_string());
        assert_eq!(split("127.0.0.1:2181"), Ok(("127.0.0.1:2181".into(), "/lymph".into())));
        assert_eq!(split("a:1,b:2/other/x"), Ok(("a:1,b:2".into(), "/other/x".into())));
        assert_eq!(split("a:1/"), Ok(("a:1".into(), "/lymph".into())));
        assert_eq!(split("tcp://a:1,tcp://b:2/c"), Ok(("tcp://a:1,tcp://b:2".into(), "/c".into())));
        assert_eq!(split("tcp://a:1"), Ok(("tcp://a:1".into(), "/lymph".into())));
        assert!(split("a:1//x").is_err());
        assert!(split("/x").is_err());
    }
}
