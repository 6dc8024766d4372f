//! One scenario body for every backend: [`Cluster`] is what a scenario needs of its world.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use lymph_core::memory::MemoryNetwork;
use lymph_core::web::WebClient;
use lymph_core::{Container, ContainerBuilder, Error};

use crate::World;

/// Which cluster has which fault, for error messages and the docs: the simulator has every one;
/// real infrastructure (`Real`) crashes and restarts instances and servers,
/// partitions, slows and makes lossy the links between instances and an instance's links to the
/// broker and the registry, and expires sessions; the embedded cluster has none.
pub const FAULTS: &str = "the simulator has every fault; Real crashes and restarts instances and servers, \
     partitions, slows and makes lossy an instance's links to the broker, the registry and the other instances, \
     and expires sessions, but has no one-way partitions and cannot cut off the test's own clients; Embedded has \
     no faults";

fn lacks(fault: &str, what: &str) -> Error {
    Error::Config(format!("this cluster cannot {fault} {what} ({FAULTS})"))
}

/// A place to run services: start named service instances, stop them, make clients.
///
/// Written once against this trait, a scenario runs on the embedded backends ([`Embedded`]) and
/// in the simulator ([`World`]); a real-infrastructure implementation runs it there too.
pub trait Cluster {
    /// Starts an instance named `name` of the container `factory` makes; returns once it has started.
    fn start<'a>(
        &'a self,
        name: &'a str,
        factory: Box<dyn Fn() -> ContainerBuilder>,
    ) -> LocalBoxFuture<'a, Result<(), Error>>;

    /// Stops the instance `name` gracefully.
    fn stop<'a>(&'a self, name: &'a str) -> LocalBoxFuture<'a, Result<(), Error>>;

    /// A client container that registers nothing.
    fn client(&self) -> LocalBoxFuture<'_, Result<Container, Error>>;

    /// Crashes the instance `name`: its connections drop, its software stops, nothing is
    /// deregistered (its registrations go when its registry session expires, its unsettled
    /// events go back to their queues).
    ///
    /// # Errors
    ///
    /// When there is no such instance, or the cluster cannot crash one (see [`FAULTS`]).
    fn crash<'a>(&'a self, name: &'a str) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { Err(lacks("crash", name)) })
    }

    /// Restarts the instance `name` from its factory (after a crash, or as a crash and a
    /// restart in one) and waits until it has started. [`BROKER_HOST`](crate::BROKER_HOST)
    /// and [`REGISTRY_HOST`](crate::REGISTRY_HOST) restart the broker and the registry server.
    ///
    /// # Errors
    ///
    /// When there is no such instance, it does not start again, or the cluster cannot restart it.
    fn restart<'a>(&'a self, name: &'a str) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { Err(lacks("restart", name)) })
    }

    /// Cuts the link between `a` and `b` both ways: nothing crosses it until
    /// [`repair`](Cluster::repair).
    ///
    /// # Errors
    ///
    /// When the cluster cannot cut that link (see [`FAULTS`]).
    fn partition(&self, a: &str, b: &str) -> Result<(), Error> {
        Err(lacks("partition", &format!("{a} from {b}")))
    }

    /// Heals a [`partition`](Cluster::partition).
    ///
    /// # Errors
    ///
    /// As [`partition`](Cluster::partition).
    fn repair(&self, a: &str, b: &str) -> Result<(), Error> {
        Err(lacks("repair", &format!("{a} and {b}")))
    }

    /// Every message between `a` and `b` takes `latency` (late, not lost).
    ///
    /// # Errors
    ///
    /// As [`partition`](Cluster::partition).
    fn set_latency(&self, a: &str, b: &str, latency: std::time::Duration) -> Result<(), Error> {
        let _ = latency;
        Err(lacks("slow", &format!("the link of {a} and {b}")))
    }

    /// Gives the link between `a` and `b` its usual latency again.
    ///
    /// # Errors
    ///
    /// As [`partition`](Cluster::partition).
    fn reset_latency(&self, a: &str, b: &str) -> Result<(), Error> {
        Err(lacks("reset", &format!("the latency of {a} and {b}")))
    }

    /// Loses `rate` (0 to 1) of the messages between `a` and `b`.
    ///
    /// # Errors
    ///
    /// When the cluster cannot lose messages on that link (TCP on real infrastructure never does).
    fn set_loss(&self, a: &str, b: &str, rate: f64) -> Result<(), Error> {
        let _ = rate;
        Err(lacks("lose messages on", &format!("the link of {a} and {b}")))
    }

    /// The first half of an expired session: cuts `name` off from the registry, to be repaired
    /// (`repair(name, REGISTRY_HOST)`) once the registry has expired its session, after
    /// [`SESSION_EXPIRY`](crate::SESSION_EXPIRY). The instance then finds its session expired and
    /// registers again on a new one.
    ///
    /// # Errors
    ///
    /// As [`partition`](Cluster::partition).
    fn cut_off_session(&self, name: &str) -> Result<(), Error> {
        self.partition(name, crate::REGISTRY_HOST)
    }

    /// Whether the instance `name` runs (started, and not crashed or stopped since).
    fn is_running(&self, name: &str) -> bool;

    /// Notes something on the cluster's timeline, if it keeps one.
    fn note(&self, kind: &str, detail: &str) {
        let _ = (kind, detail);
    }

    /// An HTTP client of the web interface `service`: its first instance in the registry's
    /// `http` namespace, reached over this cluster's network.
    fn http<'a>(&'a self, service: &'a str) -> LocalBoxFuture<'a, Result<WebClient, Error>> {
        Box::pin(async move {
            let client = self.client().await?;
            let found = client.lookup_web(service).await;
            client.stop().await;
            let instance =
                found?.into_iter().next().ok_or_else(|| Error::LookupFailure { service: service.to_owned() })?;
            let ip = instance.ip.ok_or_else(|| Error::Config(format!("web instance {} has no ip", instance.id)))?;
            Ok(WebClient::new(client.web_network(), ip, instance.http_port))
        })
    }
}

impl Cluster for World {
    fn start<'a>(
        &'a self,
        name: &'a str,
        factory: Box<dyn Fn() -> ContainerBuilder>,
    ) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(World::start(self, name, factory))
    }

    fn stop<'a>(&'a self, name: &'a str) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(World::stop(self, name))
    }

    fn client(&self) -> LocalBoxFuture<'_, Result<Container, Error>> {
        Box::pin(World::client(self))
    }

    fn crash<'a>(&'a self, name: &'a str) -> LocalBoxFuture<'a, Result<(), Error>> {
        World::crash(self, name);
        Box::pin(async { Ok(()) })
    }

    fn restart<'a>(&'a self, name: &'a str) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(World::restart(self, name))
    }

    fn partition(&self, a: &str, b: &str) -> Result<(), Error> {
        World::partition(self, a, b);
        Ok(())
    }

    fn repair(&self, a: &str, b: &str) -> Result<(), Error> {
        World::repair(self, a, b);
        Ok(())
    }

    fn set_latency(&self, a: &str, b: &str, latency: std::time::Duration) -> Result<(), Error> {
        World::set_latency(self, a, b, latency);
        Ok(())
    }

    fn reset_latency(&self, a: &str, b: &str) -> Result<(), Error> {
        World::reset_latency(self, a, b);
        Ok(())
    }

    fn set_loss(&self, a: &str, b: &str, rate: f64) -> Result<(), Error> {
        World::set_loss(self, a, b, rate);
        Ok(())
    }

    fn cut_off_session(&self, name: &str) -> Result<(), Error> {
        World::cut_off_session(self, name);
        Ok(())
    }

    fn is_running(&self, name: &str) -> bool {
        self.container(name).is_some()
    }

    fn note(&self, kind: &str, detail: &str) {
        World::note(self, kind, detail);
    }
}

/// The named running instances of a cluster.
#[derive(Clone, Default)]
pub(crate) struct Instances(Rc<RefCell<BTreeMap<String, Container>>>);

impl Instances {
    /// An error when an instance named `name` runs already.
    pub(crate) fn check_free(&self, name: &str) -> Result<(), Error> {
        if self.0.borrow().contains_key(name) {
            return Err(Error::Config(format!("an instance named {name:?} exists already")));
        }
        Ok(())
    }

    pub(crate) fn insert(&self, name: &str, container: Container) {
        self.0.borrow_mut().insert(name.to_owned(), container);
    }

    pub(crate) fn get(&self, name: &str) -> Option<Container> {
        self.0.borrow().get(name).cloned()
    }

    #[cfg(feature = "real-infra")]
    pub(crate) fn remove(&self, name: &str) -> Option<Container> {
        self.0.borrow_mut().remove(name)
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.0.borrow().keys().cloned().collect()
    }

    #[cfg(feature = "real-infra")]
    pub(crate) fn all(&self) -> Vec<Container> {
        self.0.borrow().values().cloned().collect()
    }

    /// Stops the instance `name` gracefully and forgets it.
    pub(crate) async fn stop(&self, name: &str) -> Result<(), Error> {
        let container = self.0.borrow_mut().remove(name);
        let container = container.ok_or_else(|| Error::Config(format!("no instance named {name:?}")))?;
        container.stop().await;
        Ok(())
    }
}

/// The embedded backends as a [`Cluster`]: every instance is a container on one in-process
/// [`MemoryNetwork`].
#[derive(Clone, Default)]
pub struct Embedded {
    network: MemoryNetwork,
    instances: Instances,
}

impl fmt::Debug for Embedded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedded").field("instances", &self.instances.names()).finish()
    }
}

impl Embedded {
    /// A cluster on a fresh in-process network.
    pub fn new() -> Self {
        Self::default()
    }

    /// The network its containers share.
    pub fn network(&self) -> &MemoryNetwork {
        &self.network
    }

    /// The container of instance `name`.
    pub fn container(&self, name: &str) -> Option<Container> {
        self.instances.get(name)
    }
}

impl Cluster for Embedded {
    fn start<'a>(
        &'a self,
        name: &'a str,
        factory: Box<dyn Fn() -> ContainerBuilder>,
    ) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.instances.check_free(name)?;
            let container = factory().network(&self.network).start().await?;
            self.instances.insert(name, container);
            Ok(())
        })
    }

    fn stop<'a>(&'a self, name: &'a str) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(self.instances.stop(name))
    }

    fn client(&self) -> LocalBoxFuture<'_, Result<Container, Error>> {
        Box::pin(Container::builder().network(&self.network).start())
    }

    fn is_running(&self, name: &str) -> bool {
        self.instances.get(name).is_some()
    }
}
