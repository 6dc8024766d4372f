//! A container's log stream, as lymph 0.15 publishes it: a ZeroMQ PUB socket, registered as the
//! instance's `log_endpoint`, sending each record as `[levelname, log_endpoint, message]`.

use std::fmt;

use lymph_core::{Error, Result};
use tokio::sync::mpsc;
use zeromq::prelude::*;
use zeromq::{PubSocket, SocketOptions, ZmqMessage};

/// The largest message a subscriber may send to a PUB socket: its subscriptions are topic
/// prefixes, a few bytes each; more closes its connection before memory is reserved for it.
const MAX_SUBSCRIBER_MESSAGE: usize = 64 * 1024;

/// How many records wait for the socket before new ones are dropped (a log stream never slows
/// the service down).
const BACKLOG: usize = 4096;

/// Binds a PUB socket at `endpoint`, or at a port the system picks on `ip` when it is `None`;
/// returns it with the endpoint it is bound to. `what` names the stream in the error.
pub(crate) async fn bind_pub(ip: &str, endpoint: Option<&str>, what: &str) -> Result<(PubSocket, String)> {
    let mut options = SocketOptions::default();
    options.max_message_size(MAX_SUBSCRIBER_MESSAGE);
    let mut socket = PubSocket::with_options(options);
    let wanted = endpoint.map_or_else(|| format!("tcp://{ip}:0"), str::to_owned);
    let bound =
        socket.bind(&wanted).await.map_err(|e| Error::transport(format!("cannot bind {what} at {wanted}: {e}")))?;
    let endpoint = bound.to_string();
    Ok((socket, endpoint))
}

/// The publishing end of a log stream: cheap to clone, never blocks.
#[derive(Clone)]
pub struct LogPublisher {
    endpoint: String,
    records: mpsc::Sender<(&'static str, String)>,
}

impl fmt::Debug for LogPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogPublisher").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl LogPublisher {
    /// Binds the PUB socket at `endpoint` (lymph's `container.log_endpoint`), or at a random
    /// port on `ip` when it is `None`, and starts publishing on the current runtime.
    ///
    /// # Errors
    ///
    /// When the socket cannot be bound.
    pub async fn bind(ip: &str, endpoint: Option<&str>) -> Result<Self> {
        let (mut socket, endpoint) = bind_pub(ip, endpoint, "the log stream").await?;
        let (records, mut pending) = mpsc::channel::<(&'static str, String)>(BACKLOG);
        let own = endpoint.clone();
        tokio::spawn(async move {
            while let Some((level, message)) = pending.recv().await {
                let mut frames = ZmqMessage::from(level);
                frames.push_back(own.clone().into());
                frames.push_back(message.into());
                if socket.send(frames).await.is_err() {
                    break;
                }
            }
        });
        Ok(Self { endpoint, records })
    }

    /// The endpoint subscribers connect to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Publishes one record under lymph's level name (`DEBUG`, `INFO`, `WARNING`, `ERROR`,
    /// `CRITICAL`); dropped when the stream is backed up or closed.
    pub fn publish(&self, level: &'static str, message: String) {
        let _ = self.records.try_send((level, message));
    }
}
