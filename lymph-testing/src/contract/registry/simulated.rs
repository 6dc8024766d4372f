//! The registry contract on the simulated ZooKeeper, each check in a turmoil world of its own.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use lymph_core::Error;

use super::{Client, RegistryHarness, checks};
use crate::contract::{Fault, Faults, Report};
use crate::sim::{REGISTRY_SESSION_TIMEOUT, SimRegistry};
use crate::world::registry_addr;
use crate::{REGISTRY_HOST, Runner, World};

/// Every client is a [`SimRegistry`] on a host of its own (`client-0`, `client-1`, …), so a
/// fault on one client's host touches no other client.
#[derive(Debug)]
pub struct SimulatedRegistries {
    world: World,
    hosts: RefCell<Vec<String>>,
}

impl SimulatedRegistries {
    /// A harness in `world`: clients connect to its registry host.
    pub fn new(world: World) -> Self {
        Self { world, hosts: RefCell::default() }
    }

    fn host(&self, client: &Client) -> String {
        self.hosts.borrow()[client.index].clone()
    }
}

impl Faults for SimulatedRegistries {
    fn lacks(&self, _: Fault) -> Option<&'static str> {
        None
    }
}

impl RegistryHarness for SimulatedRegistries {
    fn client(&self) -> LocalBoxFuture<'_, Result<Client, Error>> {
        Box::pin(async move {
            let index = self.hosts.borrow().len();
            let host = format!("client-{index}");
            self.hosts.borrow_mut().push(host.clone());
            let registry =
                self.world.bare_host(&host, |sim_host| SimRegistry::connect(&registry_addr(), sim_host)).await??;
            Ok(Client { index, registry: Arc::new(registry) })
        })
    }

    fn crash<'a>(&'a self, client: &'a Client) -> LocalBoxFuture<'a, ()> {
        Box::pin(async move { self.world.crash(&self.host(client)) })
    }

    fn cut<'a>(&'a self, client: &'a Client, duration: Duration) -> LocalBoxFuture<'a, ()> {
        Box::pin(async move {
            let host = self.host(client);
            self.world.partition(&host, REGISTRY_HOST);
            tokio::time::sleep(duration).await;
            self.world.repair(&host, REGISTRY_HOST);
        })
    }

    fn expire_session<'a>(&'a self, client: &'a Client) -> LocalBoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.world.expire_session(&self.host(client)).await;
            Ok(())
        })
    }

    fn restart_server(&self) -> LocalBoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.world.restart(REGISTRY_HOST).await.map_err(|e| e.to_string()) })
    }

    fn session_timeout(&self) -> Duration {
        REGISTRY_SESSION_TIMEOUT
    }

    fn service(&self, name: &str) -> String {
        name.to_owned()
    }
}

/// Runs every check in worlds of its own, one per seed of `runner` (its seed count, or
/// `LYMPH_TEST_NUM`, `LYMPH_TEST_SEED`, `LYMPH_TEST_BASE_SEED`, as for any simulated test). A
/// failed seed prints its replay line and timeline file, and fails the check.
pub fn run(runner: impl Fn(&'static str) -> Runner) -> Report {
    let make = |world| -> Box<dyn RegistryHarness> { Box::new(SimulatedRegistries::new(world)) };
    crate::contract::run_simulated("simulated (SimRegistry)", checks(), make, runner)
}
