//! The RPC seam: endpoint-addressed multipart messages between containers.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::sync::mpsc;

use crate::Result;

/// The frames of one message, in lymph's order: `[id, type, subject, headers, body]`.
pub type Frames = Vec<Bytes>;

/// The largest message an RPC connection may bring by default: 64 MiB, room for lymph's real
/// traffic (the largest bodies lymph services exchange are a few MiB) and far below what would
/// hurt a process. The ZeroMQ transport and the simulated one both close a connection that sends
/// more, before reading it.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// A message that arrived on a container's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The sender's endpoint, which is also where replies go.
    pub source: String,
    /// The frames as they arrived; the container checks their count and content.
    pub frames: Frames,
}

/// The messages arriving at a bound endpoint, in arrival order; it ends when the endpoint closes.
///
/// A backend fills it through a channel ([`Inbox::from`] a receiver) or hands the container a
/// stream that reads its socket directly ([`Inbox::from_stream`]), which saves a task switch per
/// message.
pub struct Inbox {
    source: Source,
}

enum Source {
    Channel(mpsc::Receiver<Incoming>),
    Stream(BoxStream<'static, Incoming>),
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.source {
            Source::Channel(_) => "channel",
            Source::Stream(_) => "stream",
        };
        f.debug_struct("Inbox").field("source", &kind).finish()
    }
}

impl Inbox {
    /// An inbox that reads `stream`; the stream is polled by the container's receiving task.
    pub fn from_stream(stream: impl Stream<Item = Incoming> + Send + 'static) -> Self {
        Self { source: Source::Stream(stream.boxed()) }
    }

    /// The next message, or `None` once the endpoint is closed.
    pub async fn recv(&mut self) -> Option<Incoming> {
        match &mut self.source {
            Source::Channel(rx) => rx.recv().await,
            Source::Stream(stream) => stream.next().await,
        }
    }
}

impl From<mpsc::Receiver<Incoming>> for Inbox {
    fn from(rx: mpsc::Receiver<Incoming>) -> Self {
        Self { source: Source::Channel(rx) }
    }
}

/// A request a container sent as a client, as [`RpcTransport::gave_up`] reports it.
///
/// It borrows from the container's own state, so reporting one costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientRequest<'a> {
    /// The request's message id, which its replies carry as their subject.
    pub id: &'a str,
    /// The request's subject, e.g. `echo.upper`.
    pub subject: &'a str,
    /// The trace id in the request's headers.
    pub trace_id: &'a str,
    /// The endpoint the request was sent to.
    pub endpoint: &'a str,
}

/// Moves multipart messages between container endpoints.
///
/// This is lymph's RPC transport reduced to what the container needs. One value serves one
/// container: [`bind`](RpcTransport::bind) is called once when the container starts and gives the
/// container its endpoint, which is both the address peers send requests to and the reply address
/// it puts on its own requests. [`send`](RpcTransport::send) delivers frames to another endpoint,
/// stamped with this container's endpoint as their source.
///
/// A transport does not interpret frames: the container encodes and decodes them with the codec,
/// so every backend carries the exact bytes of lymph 0.15. Delivery is at most once: a transport
/// may lose a message (a peer that is gone, a partition), and the container's timeouts and
/// heartbeats deal with that. It should return an error from `send` when it knows the message
/// cannot be delivered.
///
/// Backends: [`MemoryRpc`](crate::memory::MemoryRpc) (in-process, `mock://` endpoints), the
/// simulated `SimRpc` of `lymph-testing`, and ZeroMQ in `lymph-transports`.
pub trait RpcTransport: Send + Sync + fmt::Debug {
    /// Binds this container's endpoint and returns it with the inbox of arriving messages.
    ///
    /// # Errors
    ///
    /// When the endpoint cannot be bound, or when this transport was bound already.
    fn bind(&self) -> BoxFuture<'_, Result<(String, Inbox)>>;

    /// Sends `frames` to the container bound at `endpoint`.
    ///
    /// # Errors
    ///
    /// When the transport knows the message cannot be delivered, e.g. no container is bound at
    /// `endpoint` or the connection to it failed. When the message certainly did not leave (the
    /// endpoint does not parse, the connection was refused), the error should be
    /// [`Error::not_sent`](crate::Error::not_sent): a request failing so is tried on another
    /// instance of its service, which is only safe when no handler can have seen it.
    ///
    /// A send to a peer that cannot be reached should end within a bounded time (a connect
    /// timeout): the container waits for it, although a slow one delays no other peer's heartbeats.
    fn send<'a>(&'a self, endpoint: &'a str, frames: Frames) -> BoxFuture<'a, Result<()>>;

    /// Told by the container when it forgets the peer at `endpoint` (one that is not a registered
    /// instance and was silent for long, see
    /// [`ConnectionConfig`](crate::ConnectionConfig)): a transport that keeps a connection or
    /// other state per peer may release it; a later send connects afresh. It must not block.
    ///
    /// The default does nothing.
    fn disconnect(&self, endpoint: &str) {
        let _ = endpoint;
    }

    /// Releases the endpoint: peers can no longer reach it and the inbox ends.
    fn close(&self) -> BoxFuture<'_, ()>;

    /// Told by the container when it stops waiting for a reply to `request`, one it sent through
    /// this transport, because `waited` passed without one: its caller gets
    /// [`Error::Timeout`](crate::Error::Timeout). A reply that still arrives afterwards reaches no
    /// caller, although its handler ran.
    ///
    /// It is called at most once per request, and only when the request timed out: not when a
    /// reply came, when [`send`](RpcTransport::send) failed, or when the caller dropped the
    /// request's future. It runs in the task that made the request and must not block.
    ///
    /// The default does nothing: only a transport that records its traffic, such as the simulated
    /// one, has a use for it. A transport that wraps another should pass the call on.
    fn gave_up(&self, request: &ClientRequest<'_>, waited: Duration) {
        let _ = (request, waited);
    }
}
