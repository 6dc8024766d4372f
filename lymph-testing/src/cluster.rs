//! One scenario body for every backend: [`Cluster`] is what a scenario needs of its world.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use lymph_core::memory::MemoryNetwork;
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

/// The embedded backends as a [`Cluster`]: every instance is a container on one in-process
/// [`MemoryNetwork`].
#[derive(Clone, Default)]
pub struct Embedded {
    network: MemoryNetwork,
    instances: Rc<RefCell<BTreeMap<String, Container>>>,
}

impl fmt::Debug for Embedded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedded").field("instances", &self.instances.borrow().keys().collect::<Vec<_>>()).finish()
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
        self.instances.borrow().get(name).cloned()
    }
}

impl Cluster for Embedded {
    fn start<'a>(
        &'a self,
        name: &'a str,
        factory: Box<dyn Fn() -> ContainerBuilder>,
    ) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            if self.instances.borrow().contains_key(name) {
                return Err(Error::Config(format!("an instance named {name:?} exists already")));
            }
            let container = factory().network(&self.network).start().await?;
            self.instances.borrow_mut().insert(name.to_owned(), container);
            Ok(())
        })
    }

    fn stop<'a>(&'a self, name: &'a str) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let container = self.instances.borrow_mut().remove(name);
            let container = container.ok_or_else(|| Error::Config(format!("no instance named {name:?}")))?;
            container.stop().await;
            Ok(())
        })
    }

    fn client(&self) -> LocalBoxFuture<'_, Result<Container, Error>> {
        Box::pin(Container::builder().network(&self.network).start())
    }
}
