//! The events contract on RabbitMQ: each client an [`AmqpEvents`] behind a [`FaultProxy`] of its
//! own, each check in a virtual host of its own.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use lymph_core::Error;
use lymph_transports::{AmqpConfig, AmqpEvents};

use super::{Client, EventsHarness, checks};
use crate::contract::{Fault, Faults, Report};
use crate::real::{FaultProxy, infra};

/// Clients of the RabbitMQ at `LYMPH_TEST_AMQP` (default `amqp://guest:guest@127.0.0.1:5672`),
/// in a virtual host of their own, deleted when the harness is dropped.
#[derive(Debug)]
pub struct RealEvents {
    user: String,
    server: String,
    vhost: String,
    clients: RefCell<Vec<(Arc<AmqpEvents>, FaultProxy)>>,
}

impl RealEvents {
    /// A harness with a fresh virtual host on the local RabbitMQ.
    ///
    /// # Errors
    ///
    /// When the virtual host cannot be made (`rabbitmqctl` cannot reach the node).
    pub fn new() -> Result<Self, Error> {
        let url = std::env::var("LYMPH_TEST_AMQP").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672".to_owned());
        let (user, server) = url.rsplit_once('@').map_or(("amqp://", url.as_str()), |(u, s)| (u, s));
        let vhost = format!("lymph-contract-{:016x}", rand::random::<u64>());
        infra::rabbitmqctl(&["add_vhost", &vhost])?;
        infra::rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"])?;
        Ok(Self { user: user.to_owned(), server: server.to_owned(), vhost, clients: RefCell::default() })
    }

    fn proxy(&self, client: &Client) -> std::cell::Ref<'_, FaultProxy> {
        std::cell::Ref::map(self.clients.borrow(), |clients| &clients[client.index].1)
    }
}

impl Drop for RealEvents {
    fn drop(&mut self) {
        if let Err(error) = infra::rabbitmqctl(&["delete_vhost", &self.vhost]) {
            tracing::warn!(%error, "could not delete the contract's virtual host");
        }
    }
}

impl Faults for RealEvents {
    fn lacks(&self, _: Fault) -> Option<&'static str> {
        None
    }
}

impl EventsHarness for RealEvents {
    fn client(&self) -> LocalBoxFuture<'_, Result<Client, Error>> {
        Box::pin(async move {
            let proxy = FaultProxy::start(&self.server).await.map_err(|e| Error::transport(e.to_string()))?;
            let separator = if self.user.ends_with("//") { "" } else { "@" };
            let url = format!("{}{separator}{}/{}", self.user, proxy.addr(), self.vhost);
            let events = Arc::new(AmqpEvents::connect(AmqpConfig::new(url)).await?);
            let mut clients = self.clients.borrow_mut();
            clients.push((events.clone(), proxy));
            Ok(Client { index: clients.len() - 1, events })
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

    fn restart_server(&self) -> LocalBoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let restarted = tokio::task::spawn_blocking(infra::restart_rabbitmq).await;
            match restarted {
                Ok(result) => result.map_err(|e| format!("restarting RabbitMQ: {e}")),
                Err(e) => Err(format!("restarting RabbitMQ: {e}")),
            }
        })
    }
}

/// Runs every check on the local RabbitMQ, each with a virtual host and clients of its own: the
/// checks that need no server restart all at once, then the others one by one (a restart
/// disturbs every user of the server).
pub fn run() -> Report {
    crate::contract::run_real("real (RabbitMQ)", checks(), || -> Result<Box<dyn EventsHarness>, Error> {
        Ok(Box::new(RealEvents::new()?))
    })
}
