//! The RPC contract on `ZmqRpc`: every peer a transport bound on loopback, every link from one
//! peer to another through a [`FaultProxy`] of its own.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use lymph_core::Error;
use lymph_core::rpc::{Frames, RpcTransport};
use lymph_transports::ZmqRpc;

use super::{Peer, RpcHarness, checks};
use crate::contract::{Fault, Faults, Report};
use crate::real::FaultProxy;

/// Peers on loopback; `from` reaches `to` through the proxy of the pair `(from, to)`, made on
/// first use ([`ZmqRpc::route`]), so faults on one link touch no other.
#[derive(Debug, Default)]
pub struct RealRpc {
    peers: RefCell<Vec<Arc<ZmqRpc>>>,
    links: RefCell<BTreeMap<(usize, usize), Arc<FaultProxy>>>,
}

impl RealRpc {
    /// The proxy `from` reaches `to` through.
    async fn link(&self, from: &Peer, to: &Peer) -> Result<Arc<FaultProxy>, Error> {
        if let Some(proxy) = self.links.borrow().get(&(from.index, to.index)) {
            return Ok(proxy.clone());
        }
        let target = to.endpoint.trim_start_matches("tcp://");
        let proxy = Arc::new(FaultProxy::start(target).await.map_err(|e| Error::transport(e.to_string()))?);
        let rpc = self.peers.borrow()[from.index].clone();
        rpc.route(&to.endpoint, &format!("tcp://{}", proxy.addr()));
        Ok(self.links.borrow_mut().entry((from.index, to.index)).or_insert(proxy).clone())
    }

    /// The proxies of the links between `a` and `b`, both ways, made if needed.
    async fn both_ways(&self, a: &Peer, b: &Peer) -> Result<[Arc<FaultProxy>; 2], Error> {
        Ok([self.link(a, b).await?, self.link(b, a).await?])
    }
}

impl Faults for RealRpc {
    fn lacks(&self, _: Fault) -> Option<&'static str> {
        None
    }
}

impl RpcHarness for RealRpc {
    fn peer(&self) -> LocalBoxFuture<'_, Result<Peer, Error>> {
        Box::pin(async move {
            let rpc = Arc::new(ZmqRpc::default());
            let (endpoint, inbox) = rpc.bind().await?;
            let mut peers = self.peers.borrow_mut();
            peers.push(rpc);
            Ok(Peer::reading(peers.len() - 1, endpoint, inbox))
        })
    }

    fn send<'a>(&'a self, from: &'a Peer, to: &'a Peer, frames: Frames) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let proxy = self.link(from, to).await?;
            let rpc = self.peers.borrow()[from.index].clone();
            rpc.send(&to.endpoint, frames).await.map(|()| drop(proxy))
        })
    }

    fn send_to_nobody<'a>(&'a self, from: &'a Peer, frames: Frames) -> LocalBoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map_err(|e| Error::transport(e.to_string()))?
                .port();
            let rpc = self.peers.borrow()[from.index].clone();
            rpc.send(&format!("tcp://127.0.0.1:{port}"), frames).await
        })
    }

    fn crash<'a>(&'a self, peer: &'a Peer) -> LocalBoxFuture<'a, ()> {
        Box::pin(async move {
            let rpc = self.peers.borrow()[peer.index].clone();
            rpc.close().await;
            // The kernel closes a dead process's connections, and its port refuses new ones.
            for ((_, to), proxy) in self.links.borrow().iter() {
                if *to == peer.index {
                    proxy.crash();
                }
            }
        })
    }

    fn cut<'a>(&'a self, a: &'a Peer, b: &'a Peer, duration: Duration) -> LocalBoxFuture<'a, ()> {
        Box::pin(async move {
            let Ok(proxies) = self.both_ways(a, b).await else { return };
            proxies.iter().for_each(|proxy| proxy.cut());
            tokio::time::sleep(duration).await;
            proxies.iter().for_each(|proxy| proxy.heal());
        })
    }

    fn set_latency<'a>(&'a self, a: &'a Peer, b: &'a Peer, latency: Duration) -> LocalBoxFuture<'a, ()> {
        Box::pin(async move {
            if let Ok(proxies) = self.both_ways(a, b).await {
                proxies.iter().for_each(|proxy| proxy.set_latency(latency));
            }
        })
    }
}

/// Runs every check on loopback, each with peers of its own, all at once.
pub fn run() -> Report {
    crate::contract::run_real("real (ZmqRpc)", checks(), || -> Result<Box<dyn RpcHarness>, Error> {
        Ok(Box::new(RealRpc::default()))
    })
}
