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
}
