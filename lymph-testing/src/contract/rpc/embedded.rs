//! The RPC contract on the in-process [`MemoryNetwork`].

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use lymph_core::Error;
use lymph_core::memory::{MemoryNetwork, MemoryRpc};
use lymph_core::rpc::{Frames, RpcTransport};

use super::{Peer, RpcHarness, checks};
use crate::contract::{Fault, Faults, Report};

const NO_NETWORK: &str =
    "the in-process transport hands frames from one inbox to another: it has no links or processes";

/// Every peer is a [`MemoryRpc`] of one [`MemoryNetwork`]. It has none of the faults.
#[derive(Debug, Default)]
pub struct EmbeddedRpc {
    network: MemoryNetwork,
    peers: RefCell<Vec<Arc<MemoryRpc>>>,
}

impl Faults for EmbeddedRpc {
    fn lacks(&self, _: Fault) -> Option<&'static str> {
        Some(NO_NETWORK)
    }
}

impl RpcHarness for EmbeddedRpc {
    fn peer(&self) -> LocalBoxFuture<'_, Result<Peer, Error>> {
        Box::pin(async move {
            let rpc = Arc::new(self.network.rpc());
            let (endpoint, inbox) = rpc.bind().await?;
            let mut peers = self.peers.borrow_mut();
            peers.push(rpc);
            Ok(Peer::reading(peers.len() - 1, endpoint, inbox))
        })
    }

    fn send<'a>(&'a self, from: &'a Peer, to: &'a Peer, frames: Frames) -> LocalBoxFuture<'a, Result<(), Error>> {
        let rpc = self.peers.borrow()[from.index].clone();
        Box::pin(async move { rpc.send(&to.endpoint, frames).await })
    }

    fn send_to_nobody<'a>(&'a self, from: &'a Peer, frames: Frames) -> LocalBoxFuture<'a, Result<(), Error>> {
        let rpc = self.peers.borrow()[from.index].clone();
        Box::pin(async move { rpc.send("mock://127.0.0.1:65000", frames).await })
    }

    fn crash<'a>(&'a self, _: &'a Peer) -> LocalBoxFuture<'a, ()> {
        unreachable!("{NO_NETWORK}")
    }

    fn cut<'a>(&'a self, _: &'a Peer, _: &'a Peer, _: Duration) -> LocalBoxFuture<'a, ()> {
        unreachable!("{NO_NETWORK}")
    }

    fn set_latency<'a>(&'a self, _: &'a Peer, _: &'a Peer, _: Duration) -> LocalBoxFuture<'a, ()> {
        unreachable!("{NO_NETWORK}")
    }
}

/// Runs every check on a fresh in-process network each, on a paused clock.
pub fn run() -> Report {
    crate::contract::run_paused("embedded (MemoryRpc)", checks(), || -> Box<dyn RpcHarness> {
        Box::new(EmbeddedRpc::default())
    })
}
