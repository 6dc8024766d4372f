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
use std::fmt;

use futures::future::LocalBoxFuture;
use lymph_core::{Container, ContainerBuilder, Error};
use lymph_transports::{AmqpConfig, AmqpEvents, ZkConfig, ZkRegistry, ZmqRpc};

use crate::Cluster;
use crate::cluster::Instances;

/// A cluster on real ZeroMQ, RabbitMQ and ZooKeeper, in a namespace of its own.
pub struct Real {
    namespace: String,
    zookeeper: String,
    amqp: String,
    instances: Instances,
    clients: RefCell<Vec<Container>>,
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
        Ok(builder.rpc(ZmqRpc::default()).events(events).registry(registry))
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
            let container = self.connect(factory()).await?.start().await?;
            self.instances.insert(name, container);
            Ok(())
        })
    }

    fn stop<'a>(&'a self, name: &'a str) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(self.instances.stop(name))
    }

    fn client(&self) -> LocalBoxFuture<'_, Result<Container, Error>> {
        Box::pin(async move {
            let container = self.connect(Container::builder()).await?.start().await?;
            self.clients.borrow_mut().push(container.clone());
            Ok(container)
        })
    }
}
