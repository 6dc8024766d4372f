//! The events contract on the in-process [`MemoryEvents`].

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use lymph_core::Error;
use lymph_core::memory::MemoryEvents;

use super::{Client, EventsHarness, checks};
use crate::contract::{Fault, Faults, Report};

const NO_BROKER: &str = "the in-process event system is queues in the process: it has no connections or server";

/// Every client is a handle of one [`MemoryEvents`]. It has none of the faults.
#[derive(Debug, Default)]
pub struct EmbeddedEvents {
    events: MemoryEvents,
    clients: Cell<usize>,
}

impl Faults for EmbeddedEvents {
    fn lacks(&self, _: Fault) -> Option<&'static str> {
        Some(NO_BROKER)
    }
}

impl EventsHarness for EmbeddedEvents {
    fn client(&self) -> LocalBoxFuture<'_, Result<Client, Error>> {
        let index = self.clients.replace(self.clients.get() + 1);
        let events = Arc::new(self.events.clone());
        Box::pin(async move { Ok(Client { index, events }) })
    }

    fn crash<'a>(&'a self, _: &'a Client) -> LocalBoxFuture<'a, ()> {
        unreachable!("{NO_BROKER}")
    }

    fn cut<'a>(&'a self, _: &'a Client, _: Duration) -> LocalBoxFuture<'a, ()> {
        unreachable!("{NO_BROKER}")
    }

    fn restart_server(&self) -> LocalBoxFuture<'_, Result<(), String>> {
        unreachable!("{NO_BROKER}")
    }
}

/// Runs every check on a fresh in-process event system each, on a paused clock.
pub fn run() -> Report {
    crate::contract::run_paused("embedded (MemoryEvents)", checks(), || -> Box<dyn EventsHarness> {
        Box::new(EmbeddedEvents::default())
    })
}
