//! Real infrastructure as a [`Cluster`]: ZeroMQ, RabbitMQ and ZooKeeper on this machine.
//!
//! A scenario written against [`Cluster`] runs here unchanged. Every [`Real`] cluster gets a
//! namespace of its own, a ZooKeeper chroot and a RabbitMQ virtual host with random names, so
//! tests run in parallel without seeing each other's services, queues or events, and a cluster
//! leaves nothing behind. The servers are ZooKeeper on `127.0.0.1:2181` and RabbitMQ on
//! `127.0.0.1:5672` (override with `LYMPH_TEST_ZOOKEEPER` and `LYMPH_TEST_AMQP`, the latter
//! without a virtual host), started by `scripts/infra.sh up` or any other way: the virtual hosts
//! are made with `rabbitmqctl` on the node it finds: `LYMPH_TEST_RABBITMQ_NODE` if set, else
//! `rabbitmqctl`'s default node (`rabbit@<short hostname>`), else `rabbit@localhost`.
//!
//! The fault tests restart the servers with [`Real::restart_rabbitmq`], [`Real::stop_rabbitmq`],
//! [`Real::start_rabbitmq`] and [`Real::restart_zookeeper`], which work on servers started any
//! way (see there).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use lymph_core::rpc::RpcTransport;
use lymph_core::{Container, ContainerBuilder, Error};
use lymph_transports::{AmqpConfig, AmqpEvents, ZkConfig, ZkRegistry, ZmqRpc};

use crate::cluster::Instances;
use crate::{BROKER_HOST, Cluster, REGISTRY_HOST, Timeline};

/// A cluster on real ZeroMQ, RabbitMQ and ZooKeeper, in a namespace of its own.
pub struct Real {
    namespace: String,
    zookeeper: String,
    amqp: String,
    instances: Instances,
    clients: RefCell<Vec<Container>>,
    /// Each running instance's links to the servers and its RPC transport, for faults.
    links: RefCell<BTreeMap<String, Links>>,
    /// Each instance's factory, to restart it.
    factories: RefCell<BTreeMap<String, Rc<dyn Fn() -> ContainerBuilder>>>,
    /// Crashed instances' containers: kept, never stopped (a crashed process says goodbye to no one).
    crashed: RefCell<Vec<Container>>,
    /// The links between running instances, one proxy per direction: `(from, to)`.
    peer_links: RefCell<BTreeMap<(String, String), FaultProxy>>,
    /// What every transport the cluster made carried (see [`Real::timeline`]).
    timeline: Timeline,
    /// When the cluster was made: the timeline's zero.
    origin: std::time::Instant,
}

/// An instance's connections to the outside, each through a [`FaultProxy`] of its own.
struct Links {
    registry: FaultProxy,
    broker: FaultProxy,
    rpc: Arc<ZmqRpc>,
}

impl fmt::Debug for Real {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Real")
            .field("zookeeper", &self.zookeeper)
            .field("amqp", &self.amqp)
            .field("instances", &self.instances.names())
            .finish()
    }
}

pub(crate) mod infra;
mod proxy;

pub use proxy::FaultProxy;

fn rabbitmqctl(args: &[&str]) -> Result<(), Error> {
    infra::rabbitmqctl(args).map(drop)
}

impl Real {
    /// A fresh namespace on the local servers: a ZooKeeper chroot and a RabbitMQ virtual host.
    ///
    /// # Errors
    ///
    /// When the virtual host cannot be created (RabbitMQ not running, `rabbitmqctl` missing or
    /// unable to reach the node: the error says which nodes it tried, and what to check).
    pub fn new() -> Result<Self, Error> {
        let namespace = format!("lymph-test-{:016x}", rand::random::<u64>());
        let zookeeper = std::env::var("LYMPH_TEST_ZOOKEEPER").unwrap_or_else(|_| "127.0.0.1:2181".to_owned());
        let amqp = std::env::var("LYMPH_TEST_AMQP").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672".to_owned());
        rabbitmqctl(&["add_vhost", &namespace])?;
        rabbitmqctl(&["set_permissions", "-p", &namespace, "guest", ".*", ".*", ".*"])?;
        Ok(Self {
            zookeeper: format!("{zookeeper}/{namespace}"),
            amqp: format!("{amqp}/{namespace}"),
            namespace,
            instances: Instances::default(),
            clients: RefCell::default(),
            links: RefCell::default(),
            factories: RefCell::default(),
            crashed: RefCell::default(),
            peer_links: RefCell::default(),
            timeline: Timeline::new(),
            origin: std::time::Instant::now(),
        })
    }

    /// Stops the RabbitMQ broker with `rabbitmqctl stop_app`, on whatever node serves
    /// `127.0.0.1:5672` (the Erlang node keeps running), and returns once the port refuses
    /// connections. [`Real::start_rabbitmq`] starts it again. Runs `scripts/infra.sh stop
    /// rabbitmq`, whose log goes to the test's output.
    ///
    /// A restart disturbs every user of the server: call this from a test binary of its own, one
    /// test at a time.
    ///
    /// # Errors
    ///
    /// When `rabbitmqctl` reaches no node (the log names the nodes tried, the Erlang cookie and
    /// `LYMPH_TEST_RABBITMQ_NODE`) or the broker does not stop.
    pub fn stop_rabbitmq() -> Result<(), Error> {
        infra::stop_rabbitmq()
    }

    /// Starts the RabbitMQ broker again (`rabbitmqctl start_app`) and returns once it has booted
    /// and `127.0.0.1:5672` accepts connections; does nothing when the port already does.
    ///
    /// # Errors
    ///
    /// When the broker does not come back.
    pub fn start_rabbitmq() -> Result<(), Error> {
        infra::start_rabbitmq()
    }

    /// [`Real::stop_rabbitmq`], then [`Real::start_rabbitmq`] (`scripts/infra.sh restart rabbitmq`).
    ///
    /// # Errors
    ///
    /// As theirs.
    pub fn restart_rabbitmq() -> Result<(), Error> {
        infra::restart_rabbitmq()
    }

    /// Restarts the ZooKeeper server (`scripts/infra.sh restart zookeeper`): with the shell
    /// command in `LYMPH_TEST_ZOOKEEPER_RESTART` if set (e.g. `systemctl restart zookeeper`), else
    /// the server `scripts/infra.sh up` started, by its pid; returns once `127.0.0.1:2181` accepts
    /// connections again. A server the script did not start is never killed.
    ///
    /// # Errors
    ///
    /// When the server was started some other way and `LYMPH_TEST_ZOOKEEPER_RESTART` is not set
    /// (the log says how to set it), or when it does not come back.
    pub fn restart_zookeeper() -> Result<(), Error> {
        infra::restart_zookeeper()
    }

    /// The ZooKeeper hosts string of this namespace, with its chroot.
    pub fn zookeeper(&self) -> &str {
        &self.zookeeper
    }

    /// The AMQP URL of this namespace's virtual host.
    pub fn amqp(&self) -> &str {
        &self.amqp
    }

    /// The container of instance `name`.
    pub fn container(&self, name: &str) -> Option<Container> {
        self.instances.get(name)
    }

    /// Puts the cluster's backends into `builder`: a ZeroMQ endpoint on loopback, a RabbitMQ
    /// connection and a ZooKeeper session of its own.
    ///
    /// # Errors
    ///
    /// When RabbitMQ or ZooKeeper cannot be reached.
    pub async fn connect(&self, builder: ContainerBuilder) -> Result<ContainerBuilder, Error> {
        let events = AmqpEvents::connect(AmqpConfig::new(self.amqp.clone())).await?;
        let registry = ZkRegistry::connect(ZkConfig::new(self.zookeeper.clone())).await?;
        Ok(builder
            .rpc_arc(self.recorded(crate::TEST_HOST, Arc::new(ZmqRpc::default())))
            .events(events)
            .registry(registry))
    }

    /// The RPC traffic of the run so far, recorded at every transport the cluster made (hosts:
    /// the instance names, and `test` for clients), with the wall time since the cluster was made:
    /// the timeline checkers ([`check`](crate::check)) read it as they read a simulated run's.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// `rpc`, recording onto the cluster's timeline as `host`.
    fn recorded(&self, host: &str, rpc: Arc<ZmqRpc>) -> Arc<dyn lymph_core::RpcTransport> {
        Arc::new(crate::RecordingRpc::new(rpc, host, self.timeline.clone(), self.origin))
    }

    /// Starts the instance `name` with its links to the registry and the broker each through a
    /// [`FaultProxy`], so that faults can cut and slow them.
    async fn start_instance(&self, name: &str, factory: Rc<dyn Fn() -> ContainerBuilder>) -> Result<(), Error> {
        let proxy = |target: String| async move {
            FaultProxy::start(&target).await.map_err(|e| Error::transport(format!("a fault proxy for {target}: {e}")))
        };
        let (zookeeper_server, chroot) = split_first(&self.zookeeper, '/');
        let (amqp_base, vhost) = self.amqp.rsplit_once('/').unwrap_or((&self.amqp, ""));
        let (scheme_and_user, amqp_server) = amqp_base.rsplit_once('@').unwrap_or(("amqp://", amqp_base));
        let registry = proxy(zookeeper_server.to_owned()).await?;
        let broker = proxy(amqp_server.to_owned()).await?;
        let zookeeper = format!("{}{chroot}", registry.addr());
        let separator = if scheme_and_user.ends_with("//") { "" } else { "@" };
        let amqp = format!("{scheme_and_user}{separator}{}/{vhost}", broker.addr());
        let events = AmqpEvents::connect(AmqpConfig::new(amqp)).await?;
        let zk = ZkRegistry::connect(ZkConfig::new(zookeeper)).await?;
        let rpc = Arc::new(ZmqRpc::default());
        // Its messages to the running instances go through proxies of their own, made before
        // it starts so that its first connection to each already does.
        let others: Vec<(String, Arc<ZmqRpc>)> =
            self.links.borrow().iter().map(|(other, links)| (other.clone(), links.rpc.clone())).collect();
        for (other, other_rpc) in &others {
            if let Some(endpoint) = other_rpc.endpoint() {
                let proxy = proxy(endpoint.trim_start_matches("tcp://").to_owned()).await?;
                rpc.route(&endpoint, &format!("tcp://{}", proxy.addr()));
                self.peer_links.borrow_mut().insert((name.to_owned(), other.clone()), proxy);
            }
        }
        let container = factory().rpc_arc(self.recorded(name, rpc.clone())).events(events).registry(zk).start().await?;
        if let Some(endpoint) = rpc.endpoint() {
            for (other, other_rpc) in &others {
                let proxy = proxy(endpoint.trim_start_matches("tcp://").to_owned()).await?;
                other_rpc.route(&endpoint, &format!("tcp://{}", proxy.addr()));
                self.peer_links.borrow_mut().insert((other.clone(), name.to_owned()), proxy);
            }
        }
        self.instances.insert(name, container);
        self.links.borrow_mut().insert(name.to_owned(), Links { registry, broker, rpc });
        self.factories.borrow_mut().insert(name.to_owned(), factory);
        Ok(())
    }

    /// Applies `use_it` to the proxies of the link between `a` and `b`: an instance's link to
    /// the broker or the registry, or both directions between two running instances.
    fn link(&self, a: &str, b: &str, use_it: impl Fn(&FaultProxy)) -> Result<(), Error> {
        let server_link = match (a, b) {
            (server @ (BROKER_HOST | REGISTRY_HOST), instance) | (instance, server @ (BROKER_HOST | REGISTRY_HOST)) => {
                Some((instance, server))
            }
            _ => None,
        };
        if let Some((instance, server)) = server_link {
            let links = self.links.borrow();
            let links =
                links.get(instance).ok_or_else(|| Error::Config(format!("no running instance named {instance:?}")))?;
            use_it(if server == BROKER_HOST { &links.broker } else { &links.registry });
            return Ok(());
        }
        let peer_links = self.peer_links.borrow();
        let both = [peer_links.get(&(a.to_owned(), b.to_owned())), peer_links.get(&(b.to_owned(), a.to_owned()))];
        let [Some(there), Some(back)] = both else {
            return Err(Error::Config(format!(
                "Real cannot cut or slow the link of {a} and {b}: the links that go through fault proxies are an \
                 instance's links to {BROKER_HOST:?} and {REGISTRY_HOST:?} and those between two running instances ({})",
                crate::FAULTS
            )));
        };
        use_it(there);
        use_it(back);
        Ok(())
    }

    /// Stops every container gracefully and removes the namespace.
    pub async fn shutdown(self) {
        let instances = self.instances.all();
        let clients: Vec<Container> = self.clients.borrow_mut().drain(..).collect();
        for container in instances.iter().chain(&clients) {
            container.stop().await;
        }
        // Drop runs now and deletes the virtual host.
    }
}

impl Drop for Real {
    fn drop(&mut self) {
        if let Err(error) = rabbitmqctl(&["delete_vhost", &self.namespace]) {
            tracing::warn!(%error, "could not delete the test virtual host");
        }
    }
}

impl Cluster for Real {
    fn start<'a>(
        &'a self,
        name: &'a str,
        factory: Box<dyn Fn() -> ContainerBuilder>,
    ) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.instances.check_free(name)?;
            self.start_instance(name, Rc::from(factory)).await
        })
    }

    fn stop<'a>(&'a self, name: &'a str) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.instances.stop(name).await?;
            self.links.borrow_mut().remove(name);
            Ok(())
        })
    }

    fn client(&self) -> LocalBoxFuture<'_, Result<Container, Error>> {
        Box::pin(async move {
            let container = self.connect(Container::builder()).await?.start().await?;
            self.clients.borrow_mut().push(container.clone());
            Ok(container)
        })
    }

    /// Crashes the instance: its links to the registry and the broker close at once and refuse
    /// new connections, its RPC endpoint closes, and it is never stopped, so it unregisters
    /// nothing; ZooKeeper expires its session after the session timeout and RabbitMQ returns its
    /// unacknowledged deliveries to their queues.
    fn crash<'a>(&'a self, name: &'a str) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let links = self.links.borrow_mut().remove(name);
            let links = links.ok_or_else(|| Error::Config(format!("no running instance named {name:?}")))?;
            tracing::info!(instance = name, "crashing the instance");
            links.registry.crash();
            links.broker.crash();
            links.rpc.close().await;
            // Its connections to and from the other instances end with it.
            self.peer_links.borrow_mut().retain(|(from, to), _| from != name && to != name);
            if let Some(container) = self.instances.remove(name) {
                self.crashed.borrow_mut().push(container);
            }
            Ok(())
        })
    }

    /// Restarts an instance (crashing it first if it runs) from its factory, on a new endpoint;
    /// [`BROKER_HOST`] restarts RabbitMQ ([`Real::restart_rabbitmq`]) and [`REGISTRY_HOST`]
    /// ZooKeeper ([`Real::restart_zookeeper`]).
    fn restart<'a>(&'a self, name: &'a str) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let blocking = |restart: fn() -> Result<(), Error>| async move {
                tokio::task::spawn_blocking(restart).await.map_err(|e| Error::transport(e.to_string()))?
            };
            match name {
                BROKER_HOST => return blocking(Real::restart_rabbitmq).await,
                REGISTRY_HOST => return blocking(Real::restart_zookeeper).await,
                _ => {}
            }
            let factory = self.factories.borrow().get(name).cloned();
            let factory = factory.ok_or_else(|| Error::Config(format!("no instance named {name:?}")))?;
            if self.links.borrow().contains_key(name) {
                self.crash(name).await?;
            }
            self.start_instance(name, factory).await
        })
    }

    fn partition(&self, a: &str, b: &str) -> Result<(), Error> {
        self.link(a, b, FaultProxy::cut)
    }

    fn repair(&self, a: &str, b: &str) -> Result<(), Error> {
        self.link(a, b, FaultProxy::heal)
    }

    fn set_latency(&self, a: &str, b: &str, latency: Duration) -> Result<(), Error> {
        self.link(a, b, |proxy| proxy.set_latency(latency))
    }

    fn reset_latency(&self, a: &str, b: &str) -> Result<(), Error> {
        self.link(a, b, |proxy| proxy.set_latency(Duration::ZERO))
    }

    fn set_loss(&self, a: &str, b: &str, rate: f64) -> Result<(), Error> {
        self.link(a, b, |proxy| proxy.set_loss(rate))
    }

    fn is_running(&self, name: &str) -> bool {
        self.links.borrow().contains_key(name)
    }
}

/// `text` split at the first `separator`, which the second part keeps: `("a", "/b/c")`.
fn split_first(text: &str, separator: char) -> (&str, &str) {
    text.find(separator).map_or((text, ""), |at| text.split_at(at))
}
