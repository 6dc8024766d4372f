//! RPC over ZeroMQ, as lymph 0.15's `ZmqRPCServer`.
//!
//! On the wire this is lymph's transport exactly: ROUTER sockets whose identity is the
//! container's endpoint string, a bound socket that receives `[source, id, type, subject,
//! headers, body]`, and outgoing connections that address each message to the peer's endpoint.
//!
//! Inside, the sending side differs from lymph in one way that no peer can see: instead of one
//! ROUTER connected to every peer, each peer gets a ROUTER of its own (same identity, same ZMTP
//! handshake, one TCP connection per peer and direction as in lymph). The `zeromq` crate neither
//! reconnects a ROUTER after its peer restarts nor lets one connect proceed while another is
//! waiting, so one socket per peer is what lets a dead or restarted peer be detected (the
//! connection's end is watched), reconnected on the next send, and kept from delaying traffic
//! to every other peer.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use lymph_core::rpc::{Frames, Inbox, Incoming, RpcTransport};
use lymph_core::{Error, Latch, Result};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zeromq::prelude::*;
use zeromq::{RouterSendHalf, RouterSocket, SocketEvent, SocketOptions, ZmqError, ZmqMessage};

/// The range lymph draws a random port from when none is configured.
const PORT_RANGE: std::ops::Range<u16> = 35536..65535;
/// How many random ports to try before giving up.
const BIND_ATTEMPTS: usize = 20;
/// How long a peer that connects may take to complete the ZMTP handshake before its connection
/// is closed, by default: 30 s, libzmq's `ZMQ_HANDSHAKE_IVL`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How many messages the socket holds for one peer before a send waits (the socket's own
/// queue, `ZMQ_SNDHWM` in libzmq); what waits beyond it is counted against
/// [`ZmqConfig::with_max_queued_bytes`].
const SEND_QUEUE_MESSAGES: usize = 64;
/// The tracing target of this transport.
const TARGET: &str = "lymph::zmq";
pub use lymph_core::rpc::DEFAULT_MAX_MESSAGE_SIZE;
/// How long an outgoing connection to a peer may go unused before it is closed: 60 s. A
/// registered peer gets a heartbeat every second; a caller that has gone (a `lymph request` run
/// that exited) is forgotten after this long.
pub const DEFAULT_IDLE_PEER_TIMEOUT: Duration = Duration::from_secs(60);
/// The default bound on the bytes waiting to be written to one peer: 16 MiB.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;
/// The default bound on the bytes waiting to be written to all peers together: 256 MiB.
pub const DEFAULT_MAX_QUEUED_BYTES_TOTAL: usize = 256 * 1024 * 1024;

/// Where and how a [`ZmqRpc`] binds and connects.
#[derive(Debug, Clone)]
pub struct ZmqConfig {
    ip: String,
    port: Option<u16>,
    connect_timeout: Duration,
    retry_after: Duration,
    max_message_size: usize,
    max_queued_bytes: usize,
    max_queued_bytes_total: usize,
    idle_peer_timeout: Duration,
    handshake_timeout: Duration,
}

impl Default for ZmqConfig {
    fn default() -> Self {
        Self {
            ip: "127.0.0.1".to_owned(),
            port: None,
            connect_timeout: Duration::from_secs(1),
            retry_after: Duration::from_millis(500),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_queued_bytes_total: DEFAULT_MAX_QUEUED_BYTES_TOTAL,
            idle_peer_timeout: DEFAULT_IDLE_PEER_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl ZmqConfig {
    /// Binds on `127.0.0.1` at a random port in lymph's range (35536–65535).
    pub fn new() -> Self {
        Self::default()
    }

    /// The IP address to bind and to put in the endpoint; peers must be able to connect to it
    /// (lymph's `container.ip`, `--ip`).
    pub fn with_ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = ip.into();
        self
    }

    /// A fixed port (lymph's `container.port`, `--port`); `None` draws a random free one.
    pub fn with_port(mut self, port: Option<u16>) -> Self {
        self.port = port;
        self
    }

    /// How long a connection to a peer may take before sending to it fails (default 1 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// After a failed connection, sends to that peer fail at once for this long before the next
    /// attempt (default 500 ms), so a dead peer costs one timeout, not one per message.
    pub fn with_retry_after(mut self, pause: Duration) -> Self {
        self.retry_after = pause;
        self
    }

    /// The largest message a peer may send on any connection, incoming or outgoing (default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`], 64 MiB; each frame counts 64 bytes beyond its body). A
    /// frame whose declared length would pass it is refused as its header arrives, before any
    /// memory is reserved for it: that connection is closed and logged, the service goes on.
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The most bytes that may wait to be written to one peer (default
    /// [`DEFAULT_MAX_QUEUED_BYTES`], 16 MiB), as ZeroMQ's send high-water mark: a peer that does
    /// not read what it is sent (its TCP window stays shut) holds at most this much of the
    /// service's memory. A message that would pass it is not sent: the send fails with a
    /// transport error that [`Error::is_not_sent`] recognises, and is counted
    /// ([`ZmqRpc::dropped`]). A message is always accepted when nothing waits for that peer,
    /// however large.
    pub fn with_max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes;
        self
    }

    /// The most bytes that may wait to be written to all peers together (default
    /// [`DEFAULT_MAX_QUEUED_BYTES_TOTAL`], 256 MiB), so many peers that do not read hold no more
    /// than this between them. Past it a message is not sent, as past
    /// [`with_max_queued_bytes`](Self::with_max_queued_bytes), unless nothing waits at all.
    pub fn with_max_queued_bytes_total(mut self, bytes: usize) -> Self {
        self.max_queued_bytes_total = bytes;
        self
    }

    /// How long an outgoing connection may go unused before it is closed (default
    /// [`DEFAULT_IDLE_PEER_TIMEOUT`], 60 s), so callers that have gone cost nothing for long.
    /// A later send to that peer connects again.
    pub fn with_idle_peer_timeout(mut self, timeout: Duration) -> Self {
        self.idle_peer_timeout = timeout;
        self
    }

    /// How long a peer that connects may take to complete the ZMTP handshake before its
    /// connection is closed (default [`DEFAULT_HANDSHAKE_TIMEOUT`], 30 s, as libzmq's
    /// `ZMQ_HANDSHAKE_IVL`): a peer that connects and sends nothing holds one of the service's
    /// file descriptors for at most this long.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

/// lymph's ZeroMQ RPC transport: one per container.
///
/// [`bind`](RpcTransport::bind) binds a ROUTER socket at `tcp://<ip>:<port>` with the endpoint as
/// its identity; [`send`](RpcTransport::send) connects to the destination endpoint on first use
/// and sends the frames, addressed to it, from a socket with the same identity, so the peer
/// replies to this endpoint. A send returns an error when the peer cannot be connected or its
/// connection is gone; it never drops a message without saying so, short of a peer that dies
/// after accepting it.
///
/// Frames arriving with an identity that is not UTF-8 are logged and dropped; everything else
/// goes to the container, which checks the frame count and content.
pub struct ZmqRpc {
    config: ZmqConfig,
    state: Arc<Mutex<Option<Bound>>>,
    /// Messages not sent because their peer had too much waiting.
    dropped: AtomicU64,
    /// Endpoints reached at another address (see [`ZmqRpc::route`]).
    routes: Mutex<HashMap<String, String>>,
    /// Incoming connections closed for what they sent.
    refused: Arc<AtomicU64>,
    /// The bytes of the sends in progress to every peer.
    queued_total: AtomicUsize,
}

struct Bound {
    endpoint: String,
    /// Ends the inbox stream, which owns the bound socket; dropping it unbinds.
    closed: Latch,
    peers: HashMap<String, Arc<Peer>>,
}

impl fmt::Debug for ZmqRpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZmqRpc").field("config", &self.config).field("endpoint", &self.endpoint()).finish()
    }
}

impl ZmqRpc {
    /// A transport that binds as `config` says.
    pub fn new(config: ZmqConfig) -> Self {
        Self {
            config,
            state: Arc::new(Mutex::new(None)),
            dropped: AtomicU64::new(0),
            routes: Mutex::default(),
            refused: Arc::default(),
            queued_total: AtomicUsize::new(0),
        }
    }

    /// Connects to the peer `endpoint` at `address` (`tcp://host:port`) instead: messages are
    /// still addressed to `endpoint`, the peer's identity, but travel over a connection to
    /// `address`, such as a TCP proxy in front of the peer. Takes effect on the next connection
    /// to that peer; the current one, if any, is closed.
    pub fn route(&self, endpoint: &str, address: &str) {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner).insert(endpoint.to_owned(), address.to_owned());
        self.disconnect(endpoint);
    }

    /// How many messages were not sent because their peer had
    /// [`max_queued_bytes`](ZmqConfig::with_max_queued_bytes) waiting already.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// How many incoming connections were closed for what they sent: a frame over
    /// [`max_message_size`](ZmqConfig::with_max_message_size), framing that is not ZMTP. Each is
    /// also a warning in the log.
    pub fn refused_connections(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The bytes waiting to be written to the peer at `endpoint` now.
    pub fn queued_bytes(&self, endpoint: &str) -> usize {
        let state = self.lock();
        let peer = state.as_ref().and_then(|bound| bound.peers.get(endpoint));
        peer.map_or(0, |peer| peer.queued.load(Ordering::Relaxed))
    }

    /// The endpoint this transport is bound to, if it is bound.
    pub fn endpoint(&self) -> Option<String> {
        self.lock().as_ref().map(|bound| bound.endpoint.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Bound>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The endpoints this transport holds an outgoing connection state for.
    pub fn peers(&self) -> Vec<String> {
        let mut peers: Vec<String> =
            self.lock().as_ref().map(|bound| bound.peers.keys().cloned().collect()).unwrap_or_default();
        peers.sort();
        peers
    }

    /// The connection state of the peer at `endpoint`, created on first use.
    fn peer(&self, endpoint: &str) -> Result<Arc<Peer>> {
        let mut state = self.lock();
        let bound = state.as_mut().ok_or_else(|| Error::transport("cannot send before the transport is bound"))?;
        if let Some(peer) = bound.peers.get(endpoint) {
            peer.used();
            return Ok(peer.clone());
        }
        let address = self.routes.lock().unwrap_or_else(PoisonError::into_inner).get(endpoint).cloned();
        let peer = Arc::new(Peer::new(&bound.endpoint, endpoint, address.as_deref().unwrap_or(endpoint)));
        bound.peers.insert(endpoint.to_owned(), peer.clone());
        Ok(peer)
    }
}

impl Default for ZmqRpc {
    fn default() -> Self {
        Self::new(ZmqConfig::default())
    }
}

fn socket_options(identity: &str, config: &ZmqConfig) -> Result<SocketOptions> {
    let identity = identity.parse().map_err(|e: ZmqError| Error::transport(format!("bad identity {identity}: {e}")))?;
    let mut options = SocketOptions::default();
    options
        .peer_identity(identity)
        .connect_timeout(config.connect_timeout)
        .max_message_size(config.max_message_size)
        .handshake_timeout(config.handshake_timeout)
        .send_queue_capacity(SEND_QUEUE_MESSAGES);
    Ok(options)
}

async fn bind_router(config: &ZmqConfig) -> Result<(String, RouterSocket)> {
    let ports: Vec<u16> = match config.port {
        Some(port) => vec![port],
        None => (0..BIND_ATTEMPTS).map(|_| rand::random_range(PORT_RANGE)).collect(),
    };
    let mut last_error = None;
    for port in ports {
        let endpoint = format!("tcp://{}:{port}", config.ip);
        let mut socket = RouterSocket::with_options(socket_options(&endpoint, config)?);
        match socket.bind(&endpoint).await {
            Ok(_) => return Ok((endpoint, socket)),
            Err(error) => last_error = Some(format!("{endpoint}: {error}")),
        }
    }
    let detail = last_error.unwrap_or_default();
    Err(Error::transport(io::Error::new(io::ErrorKind::AddrInUse, format!("cannot bind the RPC endpoint ({detail})"))))
}

/// The messages arriving at the bound socket, read by the container's receiving task itself.
///
/// Frames whose sender identity is not UTF-8 are logged and skipped; a connection the socket
/// drops for what it sent (a frame over the size limit, bad framing) is logged and counted in
/// `refused`; the stream ends when the socket fails or the transport closes.
fn receive(
    mut socket: RouterSocket,
    closed: Latch,
    refused: Arc<AtomicU64>,
) -> impl futures::Stream<Item = Incoming> + Send {
    let monitor = socket.monitor();
    futures::stream::unfold(
        (socket, closed, Some(monitor), refused),
        |(mut socket, closed, mut monitor, refused)| async move {
            loop {
                let event = async {
                    match monitor.as_mut() {
                        Some(events) => events.next().await,
                        None => std::future::pending().await,
                    }
                };
                let message = tokio::select! {
                    biased;
                    () = closed.wait() => return None,
                    event = event => {
                        match event {
                            Some(SocketEvent::ReceiveFailed(peer, reason)) => {
                                let refused_so_far = refused.fetch_add(1, Ordering::Relaxed) + 1;
                                let peer = String::from_utf8_lossy(&Bytes::from(peer)).into_owned();
                                tracing::warn!(target: TARGET, peer, reason, refused = refused_so_far, "closed a connection for what it sent");
                            }
                            Some(_) => {}
                            None => monitor = None,
                        }
                        continue;
                    }
                    message = socket.recv() => message,
                };
                let message = match message {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(target: TARGET, %error, "the RPC socket stopped receiving");
                        return None;
                    }
                };
                let mut frames = message.into_vec();
                if frames.is_empty() {
                    continue;
                }
                let identity = frames.remove(0);
                let Ok(source) = String::from_utf8(identity.to_vec()) else {
                    tracing::warn!(target: TARGET, identity = ?identity, "bad message format: the sender's identity is not UTF-8");
                    continue;
                };
                return Some((Incoming { source, frames }, (socket, closed, monitor, refused)));
            }
        },
    )
}

impl RpcTransport for ZmqRpc {
    fn bind(&self) -> BoxFuture<'_, Result<(String, Inbox)>> {
        Box::pin(async move {
            if let Some(endpoint) = self.endpoint() {
                return Err(Error::Config(format!("this transport is bound to {endpoint} already")));
            }
            let (endpoint, socket) = bind_router(&self.config).await?;
            let closed = Latch::new();
            let inbox = Inbox::from_stream(receive(socket, closed.clone(), self.refused.clone()));
            tracing::debug!(target: TARGET, endpoint, "bound");
            let mut state = self.lock();
            if let Some(bound) = state.as_ref() {
                return Err(Error::Config(format!("this transport is bound to {} already", bound.endpoint)));
            }
            *state = Some(Bound { endpoint: endpoint.clone(), closed: closed.clone(), peers: HashMap::new() });
            drop(state);
            tokio::spawn(forget_idle_peers(Arc::downgrade(&self.state), closed, self.config.idle_peer_timeout));
            Ok((endpoint, inbox))
        })
    }

    fn send<'a>(&'a self, endpoint: &'a str, frames: Frames) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let peer = self.peer(endpoint)?;
            let size: usize = frames.iter().map(Bytes::len).sum();
            let queued = peer.queue(size, self.config.max_queued_bytes).and_then(|queued| {
                queue_on(&self.queued_total, size, self.config.max_queued_bytes_total).map(|total| (queued, total))
            });
            let Some(_queued) = queued else {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let waiting = peer.queued.load(Ordering::Relaxed);
                // The first drop of a run is a warning; the rest are counted.
                if !peer.stalled.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: TARGET, peer = endpoint, waiting, dropped, "the peer does not read what it is sent; messages to it are dropped");
                }
                let total = self.queued_total.load(Ordering::Relaxed);
                return Err(Error::not_sent(format!(
                    "not sent to {endpoint}: {waiting} bytes wait to be written to it and {total} to all peers (the \
                     limits are {} and {})",
                    self.config.max_queued_bytes, self.config.max_queued_bytes_total
                )));
            };
            peer.send(&self.config, frames).await
        })
    }

    fn disconnect(&self, endpoint: &str) {
        // The connection closes once the sends still using it have ended (see `Link`'s `Drop`).
        let removed = self.lock().as_mut().and_then(|bound| bound.peers.remove(endpoint));
        if removed.is_some() {
            tracing::debug!(target: TARGET, peer = endpoint, "forgotten");
        }
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let bound = self.lock().take();
            if let Some(bound) = bound {
                bound.closed.set();
                for peer in bound.peers.values() {
                    peer.close().await;
                }
                tracing::debug!(target: TARGET, endpoint = bound.endpoint, "closed");
            }
        })
    }
}

impl Drop for ZmqRpc {
    fn drop(&mut self) {
        if let Some(bound) = self.lock().take() {
            bound.closed.set();
            for peer in bound.peers.values() {
                if let Ok(mut link) = peer.link.try_lock() {
                    link.disconnect();
                }
            }
        }
    }
}

/// Closes the outgoing connections unused for `timeout`, checking every quarter of it, until
/// the transport closes.
async fn forget_idle_peers(state: std::sync::Weak<Mutex<Option<Bound>>>, closed: Latch, timeout: Duration) {
    let every = (timeout / 4).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            biased;
            () = closed.wait() => return,
            () = tokio::time::sleep(every) => {}
        }
        let Some(state) = state.upgrade() else { return };
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(bound) = state.as_mut() else { return };
        bound.peers.retain(|endpoint, peer| {
            let idle = peer.idle() >= timeout && peer.queued.load(Ordering::Relaxed) == 0;
            if idle {
                tracing::debug!(target: TARGET, peer = endpoint, "idle, forgotten");
            }
            !idle
        });
    }
}

/// The outgoing connection to one peer endpoint.
struct Peer {
    /// This transport's endpoint, the identity of the connection.
    own: String,
    endpoint: String,
    /// Where to connect: the endpoint, unless [`ZmqRpc::route`] says otherwise.
    address: String,
    identity: Bytes,
    link: tokio::sync::Mutex<Link>,
    /// The bytes of the sends in progress to this peer.
    queued: AtomicUsize,
    /// Whether a message to this peer was dropped since its queue was last empty.
    stalled: std::sync::atomic::AtomicBool,
    /// When a send to this peer last began.
    last_used: Mutex<Instant>,
}

/// Counts `size` more bytes on `counter`, unless that would pass `limit` while something is
/// counted already; false when it would.
fn reserve(counter: &AtomicUsize, size: usize, limit: usize) -> bool {
    let mut waiting = counter.load(Ordering::Relaxed);
    loop {
        if waiting > 0 && waiting.saturating_add(size) > limit {
            return false;
        }
        match counter.compare_exchange_weak(waiting, waiting + size, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => waiting = now,
        }
    }
}

/// Counts `size` more bytes on `counter` as [`reserve`] does; the share is given back when the
/// returned guard drops.
fn queue_on(counter: &AtomicUsize, size: usize, limit: usize) -> Option<Share<'_>> {
    // Built only once reserved: its drop gives the bytes back.
    if reserve(counter, size, limit) { Some(Share { counter, size }) } else { None }
}

/// A send's share of all peers' queued bytes.
struct Share<'a> {
    counter: &'a AtomicUsize,
    size: usize,
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.size, Ordering::Relaxed);
    }
}

/// A send's share of its peer's queued bytes, given back when the send ends or is cancelled.
struct Queued<'a> {
    peer: &'a Peer,
    size: usize,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.peer.queued.fetch_sub(self.size, Ordering::Relaxed) == self.size {
            self.peer.stalled.store(false, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct Link {
    /// The sending half of the connected socket, if connected.
    sender: Option<RouterSendHalf>,
    /// Counts connections, so a watcher only clears the connection it watches.
    generation: u64,
    /// Watches the connection's end.
    watcher: Option<JoinHandle<()>>,
    /// When the last connection attempt failed, and why.
    failed: Option<(Instant, String)>,
}

impl Drop for Link {
    /// A forgotten peer's connection closes with its last handle.
    fn drop(&mut self) {
        self.disconnect();
    }
}

impl Link {
    fn disconnect(&mut self) {
        self.sender = None;
        if let Some(watcher) = self.watcher.take() {
            watcher.abort();
        }
    }
}

impl Peer {
    fn new(own: &str, endpoint: &str, address: &str) -> Self {
        Self {
            own: own.to_owned(),
            endpoint: endpoint.to_owned(),
            address: address.to_owned(),
            identity: Bytes::copy_from_slice(endpoint.as_bytes()),
            link: tokio::sync::Mutex::new(Link::default()),
            queued: AtomicUsize::new(0),
            stalled: std::sync::atomic::AtomicBool::new(false),
            last_used: Mutex::new(Instant::now()),
        }
    }

    fn used(&self) {
        *self.last_used.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn idle(&self) -> Duration {
        self.last_used.lock().unwrap_or_else(PoisonError::into_inner).elapsed()
    }

    /// Counts `size` more bytes waiting for this peer, unless that would pass `limit` while
    /// something waits already.
    fn queue(&self, size: usize, limit: usize) -> Option<Queued<'_>> {
        // Built only once reserved: its drop gives the bytes back.
        if reserve(&self.queued, size, limit) { Some(Queued { peer: self, size }) } else { None }
    }

    async fn close(&self) {
        self.link.lock().await.disconnect();
    }

    async fn send(self: &Arc<Self>, config: &ZmqConfig, frames: Frames) -> Result<()> {
        let mut message = ZmqMessage::from(self.identity.clone());
        for frame in frames {
            message.push_back(frame);
        }
        let (mut sender, generation) = self.connected(config).await?;
        if let Err(error) = sender.send(message).await {
            // The connection broke before its end was noticed: the caller learns that this message
            // did not go, and the next send connects again.
            self.forget(generation).await;
            return Err(Error::transport(format!("cannot send to {}: {error}", self.endpoint)));
        }
        Ok(())
    }

    /// Drops the connection `generation`, unless it was replaced already.
    async fn forget(&self, generation: u64) {
        let mut link = self.link.lock().await;
        if link.generation == generation {
            link.disconnect();
        }
    }

    /// The connected socket's sending half, connecting first if needed.
    async fn connected(self: &Arc<Self>, config: &ZmqConfig) -> Result<(RouterSendHalf, u64)> {
        let mut link = self.link.lock().await;
        if let Some(sender) = &link.sender {
            return Ok((sender.clone(), link.generation));
        }
        if let Some((at, reason)) = &link.failed
            && at.elapsed() < config.retry_after
        {
            return Err(Error::not_sent(format!("cannot connect to {}: {reason}", self.endpoint)));
        }
        let mut socket = RouterSocket::with_options(socket_options(&self.own, config)?);
        let mut monitor = socket.monitor();
        if let Err(error) = socket.connect(&self.address).await {
            let reason = error.to_string();
            link.failed = Some((Instant::now(), reason.clone()));
            // Nothing went: the endpoint does not parse, or no connection could be made.
            return Err(Error::not_sent(format!("cannot connect to {}: {reason}", self.endpoint)));
        }
        link.failed = None;
        link.generation += 1;
        let generation = link.generation;
        let (sender, mut receiver) = socket.split();
        let peer = Arc::downgrade(self);
        // Nothing is ever sent back on this connection; reading it is how its end is noticed.
        link.watcher = Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    event = monitor.next() => match event {
                        Some(SocketEvent::Disconnected(_)) | None => break,
                        Some(_) => {}
                    },
                    message = receiver.recv() => match message {
                        Ok(message) => tracing::debug!(target: TARGET, frames = message.len(), "unexpected message on an outgoing connection"),
                        Err(_) => break,
                    },
                }
            }
            if let Some(peer) = peer.upgrade() {
                let mut link = peer.link.lock().await;
                if link.generation == generation {
                    tracing::debug!(target: TARGET, peer = peer.endpoint, "disconnected");
                    link.sender = None;
                    link.watcher = None;
                }
            }
        }));
        link.sender = Some(sender.clone());
        Ok((sender, generation))
    }
}
