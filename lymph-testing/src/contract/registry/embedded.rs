//! The registry contract on the in-process [`MemoryRegistry`].

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use lymph_core::Error;
use lymph_core::memory::MemoryRegistry;

use super::{Client, RegistryHarness, checks};
use crate::contract::{Fault, Faults, Report};

const NO_SESSIONS: &str = "the in-process registry is a map in the process: it has no connections, sessions or server";

/// Every client is a handle of one [`MemoryRegistry`]. It has none of the faults.
#[derive(Debug, Default)]
pub struct EmbeddedRegistries {
    registry: MemoryRegistry,
    clients: Cell<usize>,
}

impl Faults for EmbeddedRegistries {
    fn lacks(&self, _: Fault) -> Option<&'static str> {
        Some(NO_SESSIONS)
    }
}

impl RegistryHarness for EmbeddedRegistries {
    fn client(&self) -> LocalBoxFuture<'_, Result<Client, Error>> {
        let index = self.clients.replace(self.clients.get() + 1);
        let registry = Arc::new(self.registry.clone());
        Box::pin(async move { Ok(Client { index, registry }) })
    }

    fn crash<'a>(&'a self, _: &'a Client) -> LocalBoxFuture<'a, ()> {
        unreachable!("{NO_SESSIONS}")
    }

    fn cut<'a>(&'a self, _: &'a Client, _: Duration) -> LocalBoxFuture<'a, ()> {
        unreachable!("{NO_SESSIONS}")
    }

    fn expire_session<'a>(&'a self, _: &'a Client) -> LocalBoxFuture<'a, Result<(), String>> {
        unreachable!("{NO_SESSIONS}")
    }

    fn restart_server(&self) -> LocalBoxFuture<'_, Result<(), String>> {
        unreachable!("{NO_SESSIONS}")
    }

    fn session_timeout(&self) -> Duration {
        Duration::ZERO
    }

    fn service(&self, name: &str) -> String {
        name.to_owned()
    }
}

/// Runs every check on a fresh in-process registry each, on a paused clock.
pub fn run() -> Report {
    crate::contract::run_paused("embedded (MemoryRegistry)", checks(), || -> Box<dyn RegistryHarness> {
        Box::new(EmbeddedRegistries::default())
    })
}
