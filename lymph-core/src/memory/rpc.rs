//! In-process RPC: `mock://` endpoints connected by channels.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::rpc::{Frames, Inbox, Incoming, RpcTransport};
use crate::{Error, Result};

/// How many messages an inbox holds before senders wait.
const INBOX_CAPACITY: usize = 4096;

/// The endpoint table of one [`MemoryNetwork`](super::MemoryNetwork).
#[derive(Debug, Default)]
pub(super) struct Endpoints {
    /// The port of the last endpoint handed out.
    last_port: u32,
    /// The inboxes of the bound endpoints.
    bound: BTreeMap<String, mpsc::Sender<Incoming>>,
}

/// The in-process [`RpcTransport`]: one per container, created by
/// [`MemoryNetwork::rpc`](super::MemoryNetwork::rpc).
///
/// `bind` hands out `mock://127.0.0.1:<n>` with `n` = 1, 2, … per network, as lymph's
/// `MockServiceNetwork` does; `send` puts the frames into the inbox of the container bound at the
/// destination, stamped with this transport's endpoint. Frames are passed as they are, so the
/// messages still go through the codec on both sides.
pub struct MemoryRpc {
    endpoints: Arc<Mutex<Endpoints>>,
    endpoint: Mutex<Option<String>>,
}

impl fmt::Debug for MemoryRpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRpc").field("endpoint", &self.endpoint()).finish_non_exhaustive()
    }
}

impl MemoryRpc {
    pub(super) fn new(endpoints: Arc<Mutex<Endpoints>>) -> Self {
        Self { endpoints, endpoint: Mutex::new(None) }
    }

    /// The endpoint this transport is bound to, if it is bound.
    pub fn endpoint(&self) -> Option<String> {
        self.endpoint.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn unbind(&self) {
        let endpoint = self.endpoint.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(endpoint) = endpoint {
            self.endpoints.lock().unwrap_or_else(PoisonError::into_inner).bound.remove(&endpoint);
        }
    }
}

impl RpcTransport for MemoryRpc {
    fn bind(&self) -> BoxFuture<'_, Result<(String, Inbox)>> {
        Box::pin(async move {
            let mut own = self.endpoint.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(endpoint) = own.as_ref() {
                return Err(Error::Config(format!("this transport is bound to {endpoint} already")));
            }
            let mut endpoints = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
            endpoints.last_port += 1;
            let endpoint = format!("mock://127.0.0.1:{}", endpoints.last_port);
            let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
            endpoints.bound.insert(endpoint.clone(), tx);
            *own = Some(endpoint.clone());
            Ok((endpoint, rx.into()))
        })
    }

    fn send<'a>(&'a self, endpoint: &'a str, frames: Frames) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let source =
                self.endpoint().ok_or_else(|| Error::transport("cannot send before the transport is bound"))?;
            let inbox = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner).bound.get(endpoint).cloned();
            let inbox =
                inbox.ok_or_else(|| Error::not_sent(format!("no container is bound at endpoint {endpoint}")))?;
            inbox
                .send(Incoming { source, frames })
                .await
                .map_err(|_| Error::not_sent(format!("the container at endpoint {endpoint} is gone")))
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.unbind() })
    }
}

impl Drop for MemoryRpc {
    fn drop(&mut self) {
        self.unbind();
    }
}
