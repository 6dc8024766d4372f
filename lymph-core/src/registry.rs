//! The registry seam: which instances of which services exist, and where.

use std::fmt;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::Result;

/// One registered instance of a service, as lymph 0.15 writes it into its registry.
///
/// The fields and their order are those of lymph's ZooKeeper node JSON, so a registry backend
/// can store this value as it is and Python lymph reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstance {
    /// The interface instance id: `md5` of `(identity, name, version)` as lymph computes it.
    pub id: String,
    /// The container identity: `md5` of `(endpoint,)`.
    pub identity: String,
    /// The interface version (`"X.Y.Z"`), or `None` for an unversioned interface.
    pub version: Option<String>,
    /// The RPC endpoint of the container.
    pub endpoint: String,
    /// The endpoint of the container's log stream, if it has one.
    #[serde(default)]
    pub log_endpoint: Option<String>,
    /// The endpoint of the container's metrics stream, if it has one.
    #[serde(default)]
    pub monitoring_endpoint: Option<String>,
    /// The endpoint of a debug backdoor, if any.
    #[serde(default)]
    pub backdoor_endpoint: Option<String>,
    /// The host's fully qualified name.
    #[serde(default)]
    pub fqdn: Option<String>,
    /// The host's name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The container's IP address.
    #[serde(default)]
    pub ip: Option<String>,
    /// Whether the container is a worker (runs task handlers only).
    #[serde(rename = "type", default)]
    pub worker: bool,
}

impl ServiceInstance {
    /// An instance with the given ids, version and endpoint, and no side endpoints or host facts.
    pub fn new(
        id: impl Into<String>,
        identity: impl Into<String>,
        version: Option<String>,
        endpoint: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            identity: identity.into(),
            version,
            endpoint: endpoint.into(),
            log_endpoint: None,
            monitoring_endpoint: None,
            backdoor_endpoint: None,
            fqdn: None,
            hostname: None,
            ip: None,
            worker: false,
        }
    }
}

/// A web interface's registration in lymph's `http` namespace (ZooKeeper:
/// `/http/<name>/<id>`), next to its registration as a service: where its HTTP server listens.
///
/// The fields and their order are those lymph 0.15 writes, so Python tools read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebInstance {
    /// The interface instance id, the same as its service registration's.
    pub id: String,
    /// The container identity.
    pub identity: String,
    /// Always `None`: lymph registers web interfaces without a version.
    pub version: Option<String>,
    /// The host's name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The address the HTTP server listens on.
    #[serde(default)]
    pub ip: Option<String>,
    /// The HTTP server's port.
    pub http_port: u16,
}

/// The live list of a service's instances, updated by the registry as they come and go.
pub type InstanceWatch = watch::Receiver<Vec<ServiceInstance>>;

/// Checks that `service` can name a service in every registry, as ZooKeeper's path rules allow
/// one node name (lymph keeps services at `/services/<name>/<id>`): not empty, not `.` or `..`,
/// no `/`, no control or non-character code points (ZooKeeper refuses U+0000–U+001F,
/// U+007F–U+009F, U+D800–U+F8FF, of which a Rust string can hold U+E000–U+F8FF, and
/// U+FFF0–U+FFFF), at most 255 bytes. Every [`Registry`] of
/// lymph-rs refuses other names when registering.
///
/// # Errors
///
/// [`Error::Config`](crate::Error::Config) saying what is wrong with the name.
pub fn check_service_name(service: &str) -> Result<()> {
    let refuse = |why: &str| Err(crate::Error::Config(format!("bad service name {service:?}: {why}")));
    if service.is_empty() {
        return refuse("it is empty");
    }
    if service == "." || service == ".." {
        return refuse("ZooKeeper reserves . and ..");
    }
    if service.len() > 255 {
        return refuse("it is longer than 255 bytes");
    }
    let forbidden = |c: char| matches!(c, '/' | '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{e000}'..='\u{f8ff}' | '\u{fff0}'..='\u{ffff}');
    if let Some(c) = service.chars().find(|&c| forbidden(c)) {
        return refuse(&format!("{c:?} is not allowed in a ZooKeeper node name"));
    }
    Ok(())
}

/// Keeps track of service instances.
///
/// lymph's registry: a container registers one instance per interface it hosts (including the
/// built-in `lymph` interface), clients look services up by name and watch them change.
/// A registration lasts until [`unregister`](Registry::unregister) is called or, for backends
/// with sessions, until the registering client's session dies.
///
/// Lists of instances are ordered by instance id, so every backend gives the same order.
///
/// Backends: [`MemoryRegistry`](crate::memory::MemoryRegistry) (a shared in-process map), the
/// simulated ZooKeeper of `lymph-testing`, and ZooKeeper in `lymph-transports`.
pub trait Registry: Send + Sync + fmt::Debug {
    /// Registers `instance` under the service name `service`.
    ///
    /// Registering the same instance id again replaces the earlier registration.
    ///
    /// # Errors
    ///
    /// When the registry cannot be reached.
    fn register<'a>(&'a self, service: &'a str, instance: ServiceInstance) -> BoxFuture<'a, Result<()>>;

    /// Removes the instance `id` of `service`; removing an unknown instance is not an error.
    ///
    /// # Errors
    ///
    /// When the registry cannot be reached.
    fn unregister<'a>(&'a self, service: &'a str, id: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Lists the names of all services that have, or had, instances.
    ///
    /// # Errors
    ///
    /// When the registry cannot be reached.
    fn discover(&self) -> BoxFuture<'_, Result<Vec<String>>>;

    /// Watches the instances of `service`: the receiver holds the current list and sees every change.
    ///
    /// # Errors
    ///
    /// [`Error::LookupFailure`](crate::Error::LookupFailure) when the service is not known to the
    /// registry at all, or a transport error when the registry cannot be reached.
    fn watch<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<InstanceWatch>>;

    /// Registers the web interface `instance` of `service` in the `http` namespace; it lasts as
    /// long as service registrations do.
    ///
    /// The `http` namespace is apart from the services: [`discover`](Registry::discover) and
    /// [`watch`](Registry::watch) do not show web registrations, and the same id may be registered
    /// in both. Registering the same id again replaces the earlier web registration.
    ///
    /// # Errors
    ///
    /// When the registry cannot be reached, or (the default) keeps no web registrations.
    fn register_web<'a>(&'a self, service: &'a str, instance: WebInstance) -> BoxFuture<'a, Result<()>> {
        let _ = (service, instance);
        Box::pin(async { Err(crate::Error::Config("this registry keeps no web registrations".to_owned())) })
    }

    /// Removes the web registration `id` of `service`; removing an unknown one is not an error.
    ///
    /// # Errors
    ///
    /// When the registry cannot be reached, or (the default) keeps no web registrations.
    fn unregister_web<'a>(&'a self, service: &'a str, id: &'a str) -> BoxFuture<'a, Result<()>> {
        let _ = (service, id);
        Box::pin(async { Err(crate::Error::Config("this registry keeps no web registrations".to_owned())) })
    }

    /// The web registrations of `service`, ordered by id; empty when it has none.
    ///
    /// # Errors
    ///
    /// When the registry cannot be reached, or (the default) keeps no web registrations.
    fn lookup_web<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Vec<WebInstance>>> {
        let _ = service;
        Box::pin(async { Err(crate::Error::Config("this registry keeps no web registrations".to_owned())) })
    }
}
