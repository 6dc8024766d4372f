//! The RPC contract on the simulated transport, each check in a turmoil world of its own.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use lymph_core::Error;
use lymph_core::rpc::{Frames, RpcTransport};
use tokio::sync::{mpsc, oneshot};

use super::{Peer, RpcHarness, checks};
use crate::contract::{Fault, Faults, Report};
use crate::sim::SimRpc;
use crate::{REGISTRY_HOST, Runner, SERVICE_PORT, World};

/// A send for a peer's host to make.
type Order = (String, Frames, oneshot::Sender<Result<(), Error>>);

/// Every peer is a [`SimRpc`] on a host of its own (`peer-0`, `peer-1`, …), driven by a task
/// on that host: what a peer sends leaves from its own host.
#[derive(Debug)]
pub struct SimulatedRpc {
    world: World,
    peers: RefCell<Vec<(String, mpsc::UnboundedSender<Order>)>>,
}

impl SimulatedRpc {
    /// A harness in `world`.
    pub fn new(world: World) -> Self {
        Self { world, peers: RefCell::default() }
    }

    fn host(&self, peer: &Peer) -> String {
        self.peers.borrow()[peer.index].0.clone()
    }

    async fn order(&self, from: &Peer, to: String, frames: Frames) -> Result<(), Error> {
        let orders = self.peers.borrow()[from.index].1.clone();
        let (reply, answer) = oneshot::channel();
        orders.send((to, frames, reply)).map_err(|_| Error::transport("the sending peer's host is down"))?;
        answer.await.map_err(|_| Error::transport("the sending peer's host went down"))?
    }
}

impl Faults for SimulatedRpc {
    fn lacks(&self, _: Fault) -> Option<&'static str> {
        None
    }
}

impl RpcHarness for SimulatedRpc {
    fn peer(&self) -> LocalBoxFuture<'_, Result<Peer, Error>> {
        Box::pin(async move {
            let index = self.peers.borrow().len();
            let host = format!("peer-{index}");
            let (orders, ready, inbox) = self
                .world
                .bare_host(&host, |sim_host| {
                    let rpc = Arc::new(SimRpc::new(sim_host, SERVICE_PORT));
                    let (orders, mut orders_rx) = mpsc::unbounded_channel::<Order>();
                    let (inbox_tx, inbox) = mpsc::unbounded_channel();
                    let (ready_tx, ready) = oneshot::channel();
                    tokio::spawn(async move {
                        let (endpoint, mut incoming) = match rpc.bind().await {
                            Ok(bound) => bound,
                            Err(error) => {
                                let _ = ready_tx.send(Err(error));
                                return;
                            }
                        };
                        let _ = ready_tx.send(Ok(endpoint));
                        loop {
                            tokio::select! {
                                biased;
                                message = incoming.recv() => match message {
                                    Some(message) => { let _ = inbox_tx.send(message); }
                                    None => return,
                                },
                                order = orders_rx.recv() => match order {
                                    Some((to, frames, reply)) => {
                                        let rpc = rpc.clone();
                                        tokio::spawn(async move { let _ = reply.send(rpc.send(&to, frames).await); });
                                    }
                                    None => return,
                                },
                            }
                        }
                    });
                    (orders, ready, inbox)
                })
                .await?;
            let endpoint = ready.await.map_err(|_| Error::transport("the peer's host went down while binding"))??;
            self.peers.borrow_mut().push((host, orders));
            Ok(Peer { index, endpoint, inbox: tokio::sync::Mutex::new(inbox) })
        })
    }

    fn send<'a>(&'a self, from: &'a Peer, to: &'a Peer, frames: Frames) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(self.order(from, to.endpoint.clone(), frames))
    }

    fn send_to_nobody<'a>(&'a self, from: &'a Peer, frames: Frames) -> LocalBoxFuture<'a, Result<(), Error>> {
        // A host that exists, on a port it does not listen on.
        Box::pin(self.order(from, format!("tcp://{REGISTRY_HOST}:9"), frames))
    }

    fn crash<'a>(&'a self, peer: &'a Peer) -> LocalBoxFuture<'a, ()> {
        Box::pin(async move { self.world.crash(&self.host(peer)) })
    }

    fn cut<'a>(&'a self, a: &'a Peer, b: &'a Peer, duration: Duration) -> LocalBoxFuture<'a, ()> {
        Box::pin(async move {
            let (a, b) = (self.host(a), self.host(b));
            self.world.partition(&a, &b);
            tokio::time::sleep(duration).await;
            self.world.repair(&a, &b);
        })
    }

    fn set_latency<'a>(&'a self, a: &'a Peer, b: &'a Peer, latency: Duration) -> LocalBoxFuture<'a, ()> {
        Box::pin(async move {
            let (a, b) = (self.host(a), self.host(b));
            if latency.is_zero() {
                self.world.reset_latency(&a, &b);
            } else {
                self.world.set_latency(&a, &b, latency);
            }
            // Latency changes between two steps of the simulation.
            tokio::time::sleep(Duration::from_millis(1)).await;
        })
    }
}

/// Runs every check in worlds of its own, one per seed of `runner` (its seed count, or
/// `LYMPH_TEST_NUM`, `LYMPH_TEST_SEED`, `LYMPH_TEST_BASE_SEED`, as for any simulated test). A
/// failed seed prints its replay line and timeline file, and fails the check.
pub fn run(runner: impl Fn(&'static str) -> Runner) -> Report {
    let make = |world| -> Box<dyn RpcHarness> { Box::new(SimulatedRpc::new(world)) };
    crate::contract::run_simulated("simulated (SimRpc)", checks(), make, runner)
}
