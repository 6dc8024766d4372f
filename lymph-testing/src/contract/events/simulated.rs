//! The events contract on the simulated RabbitMQ, each check in a turmoil world of its own.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use lymph_core::Error;

use super::{Client, EventsHarness, checks};
use crate::contract::{Fault, Faults, Report};
use crate::sim::SimEvents;
use crate::world::broker_addr;
use crate::{BROKER_HOST, Runner, World};

/// Every client is a [`SimEvents`] on a host of its own (`client-0`, `client-1`, …), so a fault
/// on one client's host touches no other client.
#[derive(Debug)]
pub struct SimulatedEvents {
    world: World,
    hosts: RefCell<Vec<String>>,
}

impl SimulatedEvents {
    /// A harness in `world`: clients connect to its broker host.
    pub fn new(world: World) -> Self {
        Self { world, hosts: RefCell::default() }
    }

    fn host(&self, client: &Client) -> String {
        self.hosts.borrow()[client.index].clone()
    }
}

impl Faults for SimulatedEvents {
    fn lacks(&self, _: Fault) -> Option<&'static str> {
        None
    }
}

impl EventsHarness for SimulatedEvents {
    fn client(&self) -> LocalBoxFuture<'_, Result<Client, Error>> {
        Box::pin(async move {
            let index = self.hosts.borrow().len();
            let host = format!("client-{index}");
            self.hosts.borrow_mut().push(host.clone());
            let events = self.world.bare_host(&host, |sim_host| SimEvents::connect(&broker_addr(), sim_host)).await??;
            Ok(Client { index, events: Arc::new(events) })
        })
    }

    fn crash<'a>(&'a self, client: &'a Client) -> LocalBoxFuture<'a, ()> {
        Box::pin(async move { self.world.crash(&self.host(client)) })
    }

    fn cut<'a>(&'a self, client: &'a Client, duration: Duration) -> LocalBoxFuture<'a, ()> {
        Box::pin(async move {
            let host = self.host(client);
            self.world.partition(&host, BROKER_HOST);
            tokio::time::sleep(duration).await;
            self.world.repair(&host, BROKER_HOST);
        })
    }

    fn restart_server(&self) -> LocalBoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.world.restart(BROKER_HOST).await.map_err(|e| e.to_string()) })
    }
}

/// Runs every check in worlds of its own, one per seed of `runner` (its seed count, or
/// `LYMPH_TEST_NUM`, `LYMPH_TEST_SEED`, `LYMPH_TEST_BASE_SEED`, as for any simulated test). A
/// failed seed prints its replay line and timeline file, and fails the check.
pub fn run(runner: impl Fn(&'static str) -> Runner) -> Report {
    let make = |world| -> Box<dyn EventsHarness> { Box::new(SimulatedEvents::new(world)) };
    crate::contract::run_simulated("simulated (SimEvents)", checks(), make, runner)
}
