//! The registry contract on ZooKeeper: each client a [`ZkRegistry`] behind a [`FaultProxy`] of
//! its own, each check in a chroot of its own.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use lymph_core::Error;
use lymph_transports::{ZkConfig, ZkRegistry};

use super::{Client, RegistryHarness, checks};
use crate::contract::{Fault, Faults, Report};
use crate::real::{FaultProxy, infra};

/// The session timeout lymph-rs asks ZooKeeper for by default (`ZkConfig`).
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than the session timeout a client is cut off to have its session expire:
/// ZooKeeper checks for expired sessions every tick (2 s by default).
const EXPIRY_MARGIN: Duration = Duration::from_secs(3);

/// Clients of the ZooKeeper at `LYMPH_TEST_ZOOKEEPER` (default `127.0.0.1:2181`), under a
/// chroot of their own.
#[derive(Debug)]
pub struct RealRegistries {
    server: String,
    chroot: String,
    clients: RefCell<Vec<(Arc<ZkRegistry>, FaultProxy)>>,
}

impl RealRegistries {
    /// A harness with a fresh chroot on the local ZooKeeper.
    pub fn new() -> Self {
        let server = std::env::var("LYMPH_TEST_ZOOKEEPER").unwrap_or_else(|_| "127.0.0.1:2181".to_owned());
        let chroot = format!("/lymph-contract-{:016x}", rand::random::<u64>());
        Self { server, chroot, clients: RefCell::default() }
    }

    fn proxy(&self, client: &Client) -> std::cell::Ref<'_, FaultProxy> {
        std::cell::Ref::map(self.clients.borrow(), |clients| &clients[client.index].1)
    }
}

impl Default for RealRegistries {
    fn default() -> Self {
        Self::new()
    }
}

impl Faults for RealRegistries {
    fn lacks(&self, _: Fault) -> Option<&'static str> {
        None
    }
}

impl RegistryHarness for RealRegistries {
    fn client(&self) -> LocalBoxFuture<'_, Result<Client, Error>> {
        Box::pin(async move {
            let proxy = FaultProxy::start(&self.server).await.map_err(|e| Error::transport(e.to_string()))?;
            let config =
                ZkConfig::new(format!("{}{}", proxy.addr(), self.chroot)).with_session_timeout(SESSION_TIMEOUT);
            let registry = Arc::new(ZkRegistry::connect(config).await?);
            let mut clients = self.clients.borrow_mut();
            clients.push((registry.clone(), proxy));
            Ok(Client { index: clients.len() - 1, registry })
        })
    }

    fn crash<'a>(&'a self, client: &'a Client) -> LocalBoxFuture<'a, ()> {
        Box::pin(async move { self.proxy(client).crash() })
    }

    fn cut<'a>(&'a self, client: &'a Client, duration: Duration) -> LocalBoxFuture<'a, ()> {
        Box::pin(async move {
            self.proxy(client).cut();
            tokio::time::sleep(duration).await;
            self.proxy(client).heal();
        })
    }

    fn expire_session<'a>(&'a self, client: &'a Client) -> LocalBoxFuture<'a, Result<(), String>> {
        // As ZooKeeper expires a session: it hears nothing from the client for the session
        // timeout. The client is cut off a little longer, then the link heals.
        Box::pin(async move {
            self.proxy(client).cut();
            tokio::time::sleep(SESSION_TIMEOUT + EXPIRY_MARGIN).await;
            self.proxy(client).heal();
            Ok(())
        })
    }

    fn restart_server(&self) -> LocalBoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let restarted = tokio::task::spawn_blocking(infra::restart_zookeeper).await;
            match restarted {
                Ok(result) => result.map_err(|e| format!("restarting ZooKeeper: {e}")),
                Err(e) => Err(format!("restarting ZooKeeper: {e}")),
            }
        })
    }

    fn session_timeout(&self) -> Duration {
        SESSION_TIMEOUT
    }

    fn service(&self, name: &str) -> String {
        name.to_owned()
    }
}

/// Runs every check on the local ZooKeeper, each with a chroot and clients of its own: the
/// checks that need no server restart all at once, then the others one by one (a restart
/// disturbs every user of the server).
pub fn run() -> Report {
    crate::contract::run_real("real (ZooKeeper)", checks(), || -> Result<Box<dyn RegistryHarness>, Error> {
        Ok(Box::new(RealRegistries::new()))
    })
}
