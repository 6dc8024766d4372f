//! The simulated RPC transport: framed multipart messages over turmoil TCP.
//!
//! # Wire format
//!
//! A message is a u32 big-endian length of the rest, a u32 big-endian frame count, then each frame
//! as a u32 big-endian length and its bytes (at most 64 frames, at most 64 MiB in all, as the ZeroMQ transport), so a
//! message is read in two reads and its frames share one buffer. A connection carries messages one way, from the
//! connecting side to the listening side, as ZeroMQ's ROUTER-to-ROUTER pattern does: replies
//! travel on the replier's own connection to the requester's endpoint. The first message on a
//! connection is a hello: one frame, the sender's endpoint `tcp://<host>:<port>`. A message with
//! no frames is a keepalive: the connecting side sends one every
//! [`HEARTBEAT_INTERVAL`](super::HEARTBEAT_INTERVAL) and the listening side answers it. A
//! connection that stays silent for [`SESSION_TIMEOUT`](super::SESSION_TIMEOUT) after its link
//! dropped segments for good ([`World::partition_oneway`](crate::World::partition_oneway)) is
//! dropped and the next send connects afresh, since such a connection may have stalled for good.
//! A connection whose link was partitioned, lossy or slowed holds what it carries, as TCP does,
//! and is kept however long it stays silent: its messages arrive late, never lost.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use lymph_core::rpc::{ClientRequest, DEFAULT_MAX_MESSAGE_SIZE, Frames, Inbox, Incoming, RpcTransport};
use lymph_core::{Error, Result};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use turmoil::net::tcp::OwnedReadHalf;
use turmoil::net::{TcpListener, TcpStream};

use super::SESSION_TIMEOUT;

use super::SimHost;
use super::wire::{self, AbortOnDrop, Link, Liveness};
use super::{FaultAction, MessageFaults};
use crate::record::Recorder;
use crate::timeline::Direction;

/// The most frames a message may have.
const MAX_FRAMES: u32 = 64;
/// How many messages an inbox holds before the connections feeding it wait.
const INBOX_CAPACITY: usize = 4096;

fn encode_frames(frames: &[Bytes]) -> Vec<u8> {
    let body = 4 + frames.iter().map(|f| 4 + f.len()).sum::<usize>();
    let mut out = Vec::with_capacity(4 + body);
    out.extend_from_slice(&u32::try_from(body).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(frames.len()).unwrap_or(u32::MAX).to_be_bytes());
    for frame in frames {
        out.extend_from_slice(&u32::try_from(frame.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(frame);
    }
    out
}

/// Splits a message body (frame count, then length-prefixed frames) into frames that share its
/// buffer.
fn decode_frames(body: Bytes) -> io::Result<Frames> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let u32_at = |at: usize| -> io::Result<u32> {
        body.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| invalid(format!("message truncated at byte {at} of {}", body.len())))
    };
    let count = u32_at(0)?;
    if count > MAX_FRAMES {
        return Err(invalid(format!("{count} frames exceed {MAX_FRAMES}")));
    }
    let mut frames = Vec::with_capacity(count as usize);
    let mut at = 4;
    for _ in 0..count {
        let len = u32_at(at)? as usize;
        at += 4;
        if len > body.len() - at {
            return Err(invalid(format!("a frame of {len} bytes overruns the message ({} left)", body.len() - at)));
        }
        frames.push(body.slice(at..at + len));
        at += len;
    }
    if at != body.len() {
        return Err(invalid(format!("{} bytes after the last frame", body.len() - at)));
    }
    Ok(frames)
}

fn read_frames(r: &mut OwnedReadHalf) -> BoxFuture<'_, io::Result<Option<Frames>>> {
    Box::pin(async move {
        let Some(len) = wire::read_u32(r).await? else { return Ok(None) };
        // The ZeroMQ transport's default limit: a larger message closes its connection, as there.
        if len as usize > DEFAULT_MAX_MESSAGE_SIZE {
            let what = format!("a message of {len} bytes exceeds {DEFAULT_MAX_MESSAGE_SIZE}");
            return Err(io::Error::new(io::ErrorKind::InvalidData, what));
        }
        decode_frames(Bytes::from(wire::read_bytes(r, len).await?)).map(Some)
    })
}

#[derive(Debug)]
struct Connection {
    id: u64,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    _task: AbortOnDrop,
}

#[derive(Debug, Default)]
struct State {
    bound: bool,
    accept: Option<AbortOnDrop>,
    /// One outgoing connection per destination endpoint.
    connections: BTreeMap<String, Connection>,
    last_connection: u64,
}

/// The simulated [`RpcTransport`]: endpoint `tcp://<host>:<port>` on turmoil TCP.
///
/// It keeps one outgoing connection per destination, connecting lazily and once more when
/// writing fails, and accepts connections from peers on its port. A connection to a crashed peer
/// is noticed when it closes. Across a partition, a lossy or a slow link nothing is lost:
/// messages arrive late, when the link lets them through; only a one-way partition, which drops,
/// ends a connection by its keepalives stopping (see the module docs).
/// Every message sent and received is recorded on the timeline (kind and subject from the
/// frames, trace id from the headers), and so is every request its container gave up waiting for
/// (a `timeout` entry, see [`RpcTransport::gave_up`]).
pub struct SimRpc {
    inner: Arc<Inner>,
}

struct Inner {
    host: SimHost,
    endpoint: String,
    port: u16,
    recorder: Recorder,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for SimRpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimRpc").field("endpoint", &self.inner.endpoint).finish_non_exhaustive()
    }
}

impl SimRpc {
    /// A transport for `host` that will listen on `port`; its endpoint is `tcp://<host>:<port>`.
    /// The message faults of `host` apply to what it sends.
    pub fn new(host: &SimHost, port: u16) -> Self {
        let inner = Inner {
            host: host.clone(),
            endpoint: format!("tcp://{}:{port}", host.name()),
            port,
            recorder: Recorder::new(host.name(), host.timeline().clone(), None),
            state: Arc::default(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The endpoint, `tcp://<host>:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn existing(&self, to: &str) -> Option<mpsc::UnboundedSender<Vec<u8>>> {
        self.state().connections.get(to).filter(|c| !c.tx.is_closed()).map(|c| c.tx.clone())
    }

    async fn connect(&self, to: &str) -> Result<mpsc::UnboundedSender<Vec<u8>>> {
        let (host, port) = to
            .strip_prefix("tcp://")
            .and_then(wire::split_addr)
            .ok_or_else(|| Error::not_sent(format!("{to:?} is not a tcp://host:port endpoint")))?;
        if self.host.is_down() {
            return Err(Error::transport(format!("cannot connect to {to}: this host is down")));
        }
        let stream = match tokio::time::timeout(SESSION_TIMEOUT, TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(Error::not_sent(format!("cannot connect to {to}: {error}"))),
            Err(_) => return Err(Error::not_sent(format!("cannot connect to {to}: timed out"))),
        };
        let link = Link::new(stream, to.to_owned(), read_frames, self.host.down());
        link.send(encode_frames(&[Bytes::from(self.endpoint.clone())]));
        let tx = link.tx.clone();
        let mut state = self.state();
        if let Some(existing) = state.connections.get(to).filter(|c| !c.tx.is_closed()) {
            // Another send connected meanwhile: use its connection, so nothing queued on it is lost.
            return Ok(existing.tx.clone());
        }
        state.last_connection += 1;
        let id = state.last_connection;
        let cut = Cut::new(&self.host, &host);
        let task = tokio::spawn(run_outgoing(link, Arc::downgrade(&self.state), to.to_owned(), id, cut));
        state.connections.insert(to.to_owned(), Connection { id, tx: tx.clone(), _task: AbortOnDrop(task) });
        Ok(tx)
    }

    fn forget(&self, to: &str) {
        self.state().connections.remove(to);
    }

    fn shut(&self) {
        let mut state = self.state();
        state.accept = None;
        state.connections.clear();
    }

    /// Writes `bytes` to `endpoint`, connecting (once more, if the connection failed) as needed.
    async fn deliver(&self, endpoint: &str, bytes: Vec<u8>, subject: &str) -> Result<()> {
        let mut last_error = None;
        for _ in 0..2 {
            let tx = match self.existing(endpoint) {
                Some(tx) => tx,
                None => match self.connect(endpoint).await {
                    Ok(tx) => tx,
                    Err(error) => {
                        last_error = Some(error);
                        break;
                    }
                },
            };
            if tx.send(bytes.clone()).is_ok() {
                return Ok(());
            }
            self.forget(endpoint);
        }
        // Nothing was queued on a connection: the message certainly did not leave.
        let error = last_error.unwrap_or_else(|| Error::not_sent(format!("the connection to {endpoint} failed")));
        self.recorder.note("drop", subject, format!("-> {endpoint}: {error}"));
        Err(error)
    }
}

/// Whether the link under a connection dropped segments for good (a one-way partition) since the
/// connection was made. turmoil does not retransmit what it drops: such a connection may stall
/// for good, so silence on it means it is broken. Any other link (partitioned, lossy or slowed)
/// holds what it carries, and a real TCP connection does not give up on it: it delivers late.
/// Only silence after a drop ends a connection.
struct Cut {
    faults: MessageFaults,
    hosts: (String, String),
    at_connect: u64,
}

impl Cut {
    fn new(host: &SimHost, peer: &str) -> Self {
        let faults = host.faults().clone();
        let at_connect = faults.cuts(host.name(), peer);
        Self { faults, hosts: (host.name().to_owned(), peer.to_owned()), at_connect }
    }

    fn happened(&self) -> bool {
        self.faults.cuts(&self.hosts.0, &self.hosts.1) != self.at_connect
    }
}

/// Keeps an outgoing connection alive and notices when it is dead.
async fn run_outgoing(mut link: Link<Frames>, state: Weak<Mutex<State>>, to: String, id: u64, cut: Cut) {
    let mut liveness = Liveness::new();
    loop {
        tokio::select! {
            biased;
            message = link.rx.recv() => match message {
                Some(_) => liveness.heard(),
                None => break,
            },
            silent = liveness.tick() => {
                if silent && cut.happened() {
                    tracing::debug!(%to, "rpc connection silent since its link was cut, dropping it");
                    break;
                }
                if !link.send(encode_frames(&[])) {
                    break;
                }
            }
        }
    }
    drop(link);
    if let Some(state) = state.upgrade() {
        let removed = {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            match state.connections.get(&to) {
                Some(c) if c.id == id => state.connections.remove(&to),
                _ => None,
            }
        };
        // Dropping it aborts this task, which is finishing anyway.
        drop(removed);
    }
}

/// Serves one accepted connection: hello, then messages into the inbox.
async fn serve_incoming(
    stream: TcpStream,
    peer: String,
    inbox: mpsc::Sender<Incoming>,
    recorder: Recorder,
    host: SimHost,
) {
    let down = host.down();
    let mut link = Link::new(stream, peer.clone(), read_frames, down.clone());
    let source = match tokio::time::timeout(SESSION_TIMEOUT, link.rx.recv()).await {
        Ok(Some(hello)) => match hello.as_slice() {
            [endpoint] => match std::str::from_utf8(endpoint) {
                Ok(endpoint) => endpoint.to_owned(),
                Err(_) => {
                    tracing::warn!(%peer, "hello is not utf-8, closing the connection");
                    return;
                }
            },
            _ => {
                tracing::warn!(%peer, frames = hello.len(), "bad hello, closing the connection");
                return;
            }
        },
        _ => return,
    };
    let peer_host = source.strip_prefix("tcp://").and_then(wire::split_addr).map(|(host, _)| host).unwrap_or_default();
    let cut = Cut::new(&host, &peer_host);
    let mut liveness = Liveness::new();
    loop {
        tokio::select! {
            biased;
            message = link.rx.recv() => match message {
                Some(frames) => {
                    liveness.heard();
                    if frames.is_empty() {
                        link.send(encode_frames(&[]));
                        continue;
                    }
                    recorder.record(&frames, Direction::Received, format!("<- {source}"));
                    if inbox.send(Incoming { source: source.clone(), frames }).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            silent = liveness.tick() => {
                if silent && cut.happened() {
                    tracing::debug!(%peer, "incoming rpc connection silent since its link was cut, dropping it");
                    break;
                }
            }
        }
    }
}

impl RpcTransport for SimRpc {
    fn bind(&self) -> BoxFuture<'_, Result<(String, Inbox)>> {
        Box::pin(async move {
            if self.inner.state().bound {
                return Err(Error::Config(format!("this transport is bound to {} already", self.inner.endpoint)));
            }
            let listener = TcpListener::bind(("0.0.0.0", self.inner.port))
                .await
                .map_err(|e| Error::transport(format!("cannot bind port {}: {e}", self.inner.port)))?;
            let (tx, inbox) = mpsc::channel(INBOX_CAPACITY);
            let recorder = self.inner.recorder.clone();
            let host = self.inner.host.clone();
            let accept = tokio::spawn(async move {
                let mut connections = JoinSet::new();
                loop {
                    match listener.accept().await {
                        Ok((stream, peer)) => {
                            while connections.try_join_next().is_some() {}
                            connections.spawn(serve_incoming(
                                stream,
                                peer.to_string(),
                                tx.clone(),
                                recorder.clone(),
                                host.clone(),
                            ));
                        }
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            break;
                        }
                    }
                }
            });
            let mut state = self.inner.state();
            if state.bound {
                return Err(Error::Config(format!("this transport is bound to {} already", self.inner.endpoint)));
            }
            state.bound = true;
            state.accept = Some(AbortOnDrop(accept));
            Ok((self.inner.endpoint.clone(), inbox.into()))
        })
    }

    fn send<'a>(&'a self, endpoint: &'a str, frames: Frames) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let inner = &self.inner;
            if !inner.state().bound {
                return Err(Error::transport("cannot send before the transport is bound"));
            }
            let (kind, subject) = inner.recorder.record(&frames, Direction::Sent, format!("-> {endpoint}"));
            let bytes = encode_frames(&frames);
            match inner.host.faults().take(&kind, &subject) {
                None => inner.deliver(endpoint, bytes, &subject).await,
                Some(FaultAction::Drop) => {
                    inner.recorder.note("drop", &subject, format!("{kind} -> {endpoint}: dropped by a message fault"));
                    Ok(())
                }
                Some(FaultAction::Duplicate) => {
                    inner.recorder.note("duplicate", &subject, format!("{kind} -> {endpoint}: sent twice"));
                    inner.deliver(endpoint, bytes.clone(), &subject).await?;
                    inner.deliver(endpoint, bytes, &subject).await
                }
                Some(FaultAction::Delay(delay)) => {
                    inner.recorder.note("delay", &subject, format!("{kind} -> {endpoint}: {delay:?} late"));
                    let (inner, endpoint) = (Arc::clone(inner), endpoint.to_owned());
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = inner.deliver(&endpoint, bytes, &subject).await;
                    });
                    Ok(())
                }
            }
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.inner.shut() })
    }

    fn gave_up(&self, request: &ClientRequest<'_>, waited: Duration) {
        self.inner.recorder.gave_up(request, waited);
    }
}

impl Drop for SimRpc {
    fn drop(&mut self) {
        self.inner.shut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(frames: &[&[u8]]) -> Bytes {
        let frames: Vec<Bytes> = frames.iter().map(|f| Bytes::copy_from_slice(f)).collect();
        let encoded = encode_frames(&frames);
        let len = u32::from_be_bytes([encoded[0], encoded[1], encoded[2], encoded[3]]) as usize;
        assert_eq!(len, encoded.len() - 4);
        Bytes::from(encoded).slice(4..)
    }

    #[test]
    fn frames_round_trip() {
        let frames = decode_frames(body(&[b"id", b"REQ", b"", b"\x80"])).unwrap();
        assert_eq!(frames, vec![&b"id"[..], b"REQ", b"", b"\x80"]);
        assert!(decode_frames(body(&[])).unwrap().is_empty());
    }

    #[test]
    fn malformed_messages_are_errors() {
        let good = body(&[b"abc", b"de"]);
        for cut in 0..good.len() {
            let error = decode_frames(good.slice(..cut)).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "cut at {cut}");
        }
        let mut trailing = good.to_vec();
        trailing.push(0);
        assert!(decode_frames(Bytes::from(trailing)).unwrap_err().to_string().contains("after the last frame"));
        let mut overrun = good.to_vec();
        overrun[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_frames(Bytes::from(overrun)).unwrap_err().to_string().contains("overruns"));
        let many = Bytes::from((MAX_FRAMES + 1).to_be_bytes().to_vec());
        assert!(decode_frames(many).unwrap_err().to_string().contains("exceed"));
    }
}
