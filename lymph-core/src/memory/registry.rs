//! The in-process registry: a shared map of services to instances, with watches, and a second
//! map for web registrations (lymph's `http` namespace).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::registry::{InstanceWatch, Registry, ServiceInstance, WebInstance};
use crate::{Error, Result};

#[derive(Debug, Default)]
struct State {
    /// Every service ever registered, with its current instances by id.
    services: BTreeMap<String, BTreeMap<String, ServiceInstance>>,
    /// One watch channel per known service, holding its current list.
    watches: BTreeMap<String, watch::Sender<Vec<ServiceInstance>>>,
    /// The web registrations (namespace `http`), by service and id; apart from the services.
    web: BTreeMap<String, BTreeMap<String, WebInstance>>,
}

impl State {
    fn publish(&mut self, service: &str) {
        let list: Vec<ServiceInstance> =
            self.services.get(service).map(|instances| instances.values().cloned().collect()).unwrap_or_default();
        match self.watches.get(service) {
            Some(sender) => {
                sender.send_replace(list);
            }
            None => {
                self.watches.insert(service.to_owned(), watch::Sender::new(list));
            }
        }
    }
}

/// The in-process [`Registry`]: a map shared by every handle of one
/// [`MemoryNetwork`](super::MemoryNetwork).
///
/// Registrations last until they are unregistered (the simulated registry of `lymph-testing`
/// adds sessions on top). A service, once registered, stays known with an empty list after its
/// last instance leaves, as lymph's persistent ZooKeeper service nodes do; watching a service that
/// was never registered fails with [`Error::LookupFailure`]. Lists are ordered by instance id.
///
/// Web registrations ([`Registry::register_web`]) live in a namespace of their own: they are
/// neither discovered nor watched as services, and a service with only web registrations is not
/// known as a service.
#[derive(Clone, Debug, Default)]
pub struct MemoryRegistry {
    state: Arc<Mutex<State>>,
}

impl MemoryRegistry {
    /// A new, empty registry (not shared with any network).
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `instance` under `service` (synchronous form of [`Registry::register`]).
    pub fn register_now(&self, service: &str, instance: ServiceInstance) {
        let mut state = self.state();
        state.services.entry(service.to_owned()).or_default().insert(instance.id.clone(), instance);
        state.publish(service);
    }

    /// Removes instance `id` of `service`, if it is there (synchronous form of
    /// [`Registry::unregister`]); returns whether it was.
    pub fn unregister_now(&self, service: &str, id: &str) -> bool {
        let mut state = self.state();
        let removed = state.services.get_mut(service).and_then(|instances| instances.remove(id)).is_some();
        if removed {
            state.publish(service);
        }
        removed
    }

    /// The names of every service that has or had instances, in order.
    pub fn services(&self) -> Vec<String> {
        self.state().services.keys().cloned().collect()
    }

    /// The current instances of `service`, ordered by id, or `None` when it was never registered.
    pub fn instances(&self, service: &str) -> Option<Vec<ServiceInstance>> {
        self.state().services.get(service).map(|instances| instances.values().cloned().collect())
    }

    /// Watches `service` (synchronous form of [`Registry::watch`]).
    ///
    /// # Errors
    ///
    /// [`Error::LookupFailure`] when the service was never registered.
    pub fn watch_now(&self, service: &str) -> Result<InstanceWatch> {
        let state = self.state();
        match state.watches.get(service) {
            Some(sender) if state.services.contains_key(service) => Ok(sender.subscribe()),
            _ => Err(Error::LookupFailure { service: service.to_owned() }),
        }
    }

    /// Registers the web interface `instance` of `service` (synchronous form of
    /// [`Registry::register_web`]); the same id again replaces the earlier registration.
    pub fn register_web_now(&self, service: &str, instance: WebInstance) {
        self.state().web.entry(service.to_owned()).or_default().insert(instance.id.clone(), instance);
    }

    /// Removes the web registration `id` of `service`, if it is there (synchronous form of
    /// [`Registry::unregister_web`]); returns whether it was.
    pub fn unregister_web_now(&self, service: &str, id: &str) -> bool {
        let mut state = self.state();
        let Some(instances) = state.web.get_mut(service) else {
            return false;
        };
        let removed = instances.remove(id).is_some();
        if instances.is_empty() {
            state.web.remove(service);
        }
        removed
    }

    /// The web registrations of `service`, ordered by id (synchronous form of
    /// [`Registry::lookup_web`]); empty when it has none.
    pub fn web_instances(&self, service: &str) -> Vec<WebInstance> {
        self.state().web.get(service).map(|instances| instances.values().cloned().collect()).unwrap_or_default()
    }
}

impl Registry for MemoryRegistry {
    fn register<'a>(&'a self, service: &'a str, instance: ServiceInstance) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            crate::registry::check_service_name(service)?;
            self.register_now(service, instance);
            Ok(())
        })
    }

    fn unregister<'a>(&'a self, service: &'a str, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.unregister_now(service, id);
            Ok(())
        })
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move { Ok(self.services()) })
    }

    fn watch<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<InstanceWatch>> {
        Box::pin(async move { self.watch_now(service) })
    }

    fn register_web<'a>(&'a self, service: &'a str, instance: WebInstance) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            crate::registry::check_service_name(service)?;
            self.register_web_now(service, instance);
            Ok(())
        })
    }

    fn unregister_web<'a>(&'a self, service: &'a str, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.unregister_web_now(service, id);
            Ok(())
        })
    }

    fn lookup_web<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Vec<WebInstance>>> {
        Box::pin(async move { Ok(self.web_instances(service)) })
    }
}
