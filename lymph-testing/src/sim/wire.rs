//! What the simulated backends share: framing, connections as tasks, the session client driver.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use turmoil::net::TcpStream;
use turmoil::net::tcp::OwnedReadHalf;

use lymph_core::Latch;

use super::SimHost;
use super::{HEARTBEAT_INTERVAL, RECONNECT_BACKOFF, SESSION_TIMEOUT};
use crate::timeline::Entry;

/// The largest message of the session protocols: 128 MiB, RabbitMQ's default largest message
/// (`max_message_size`), so the simulated broker carries what the real one does.
pub(crate) const MAX_LEN: usize = 128 << 20;

/// Aborts a task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Bytes that serialize as msgpack bin.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Blob(pub(crate) Vec<u8>);

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Blob(out))
            }
        }
        deserializer.deserialize_bytes(V)
    }
}

/// Encodes a session protocol message: u32 big-endian length, then msgpack (maps with names).
pub(crate) fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let body = rmp_serde::to_vec_named(message).expect("protocol messages always serialize");
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads a u32 big-endian; `None` at a clean end of stream.
pub(crate) async fn read_u32(r: &mut OwnedReadHalf) -> io::Result<Option<u32>> {
    let mut buf = [0u8; 4];
    match r.read_exact(&mut buf).await {
        Ok(_) => Ok(Some(u32::from_be_bytes(buf))),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads `len` bytes, refusing more than [`MAX_LEN`].
pub(crate) async fn read_bytes(r: &mut OwnedReadHalf, len: u32) -> io::Result<Vec<u8>> {
    let len = len as usize;
    if len > MAX_LEN {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("length {len} exceeds {MAX_LEN}")));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Reads one session protocol message; `None` at a clean end of stream.
pub(crate) fn read_serde<T: DeserializeOwned + Send + 'static>(
    r: &mut OwnedReadHalf,
) -> BoxFuture<'_, io::Result<Option<T>>> {
    Box::pin(async move {
        let Some(len) = read_u32(r).await? else { return Ok(None) };
        let body = read_bytes(r, len).await?;
        rmp_serde::from_slice(&body).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    })
}

/// A connection run by two tasks: a reader that decodes messages into `rx` and a writer that
/// writes what is sent to `tx`. Dropping it stops both and closes the connection.
#[derive(Debug)]
pub(crate) struct Link<In> {
    pub(crate) rx: mpsc::UnboundedReceiver<In>,
    pub(crate) tx: mpsc::UnboundedSender<Vec<u8>>,
    _reader: AbortOnDrop,
    _writer: AbortOnDrop,
}

impl<In: Send + 'static> Link<In> {
    /// Runs `stream`, decoding with `read`; `peer` names the other side in warnings. Both tasks
    /// end, closing the connection, when `down` fires (see [`SimHost::power_off`](super::SimHost::power_off)).
    pub(crate) fn new<F>(stream: TcpStream, peer: String, read: F, down: Latch) -> Self
    where
        F: for<'r> Fn(&'r mut OwnedReadHalf) -> BoxFuture<'r, io::Result<Option<In>>> + Send + 'static,
    {
        let (mut reader, mut writer) = stream.into_split();
        let (in_tx, rx) = mpsc::unbounded_channel();
        let (tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let reader_down = down.clone();
        let reader = tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    biased;
                    () = reader_down.wait() => break,
                    message = read(&mut reader) => message,
                };
                match message {
                    Ok(Some(message)) => {
                        if in_tx.send(message).is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        if error.kind() == io::ErrorKind::InvalidData {
                            tracing::warn!(%peer, %error, "malformed message, closing the connection");
                        } else {
                            tracing::debug!(%peer, %error, "connection failed");
                        }
                        break;
                    }
                }
            }
        });
        let writer_down = down;
        let writer = tokio::spawn(async move {
            loop {
                let bytes = tokio::select! {
                    biased;
                    () = writer_down.wait() => break,
                    bytes = out_rx.recv() => bytes,
                };
                let Some(bytes) = bytes else { break };
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        Self { rx, tx, _reader: AbortOnDrop(reader), _writer: AbortOnDrop(writer) }
    }

    /// Queues `bytes` for writing; false when the connection is gone.
    pub(crate) fn send(&self, bytes: Vec<u8>) -> bool {
        self.tx.send(bytes).is_ok()
    }
}

/// Heartbeat bookkeeping of one connection: when the peer was last heard, and a tick every
/// [`HEARTBEAT_INTERVAL`] to ping it and to notice silence.
#[derive(Debug)]
pub(crate) struct Liveness {
    last_rx: Instant,
    tick: tokio::time::Interval,
    /// How long the peer may stay silent.
    silence: Duration,
    /// Whether silence is noticed the moment it has lasted `silence`, rather than at the next tick.
    exact: bool,
}

impl Liveness {
    /// Starts counting now; silence longer than [`SESSION_TIMEOUT`] is noticed at the next tick.
    pub(crate) fn new() -> Self {
        let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { last_rx: Instant::now(), tick, silence: SESSION_TIMEOUT, exact: false }
    }

    /// Starts counting now; pings every `ping`, and notices silence as soon as it has lasted
    /// `silence`.
    pub(crate) fn exact(silence: Duration, ping: Duration) -> Self {
        let mut tick = tokio::time::interval(ping);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { last_rx: Instant::now(), tick, silence, exact: true }
    }

    /// Something arrived from the peer.
    pub(crate) fn heard(&mut self) {
        self.last_rx = Instant::now();
    }

    /// Waits for the next tick (time to ping) or, when exact, for the end of the allowed silence;
    /// true when the peer has been silent for too long, so the connection is to be dropped.
    pub(crate) async fn tick(&mut self) -> bool {
        if self.exact {
            let deadline = self.last_rx + self.silence;
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(deadline) => true,
                _ = self.tick.tick() => false,
            }
        } else {
            self.tick.tick().await;
            self.last_rx.elapsed() > self.silence
        }
    }
}

/// Splits `"host:port"`.
pub(crate) fn split_addr(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

/// The sending side of a session client's current connection.
#[derive(Debug, Clone)]
pub(crate) struct Out(mpsc::UnboundedSender<Vec<u8>>);

impl Out {
    /// The sending side of `link`.
    pub(crate) fn of<In>(link: &Link<In>) -> Self {
        Out(link.tx.clone())
    }

    /// Sends a protocol message; false when the connection is gone.
    pub(crate) fn send<T: Serialize>(&self, message: &T) -> bool {
        self.0.send(encode(message)).is_ok()
    }
}

/// The protocol-specific part of a session client (registry or broker).
pub(crate) trait Session: Send + 'static {
    /// A call from the API.
    type Command: Send + 'static;
    /// A message from the server.
    type In: DeserializeOwned + Send + 'static;
    /// The server's name in the timeline (`registry`, `broker`).
    const NAME: &'static str;

    /// The encoded ping message.
    fn ping() -> Vec<u8>;
    /// How the client notices that its connection is dead (default: [`Liveness::new`]).
    fn liveness() -> Liveness {
        Liveness::new()
    }
    /// A connection is up: the first thing sent on it (default: nothing). Until
    /// [`ready`](Session::ready) says so, commands wait and [`connected`](Session::connected) is
    /// not called.
    fn opened(&mut self, _out: &Out) {}
    /// Whether the current connection is ready for commands (default: as soon as it is up).
    fn ready(&self) -> bool {
        true
    }
    /// The connection is ready: replay the session state onto it.
    fn connected(&mut self, out: &Out);
    /// A command: handle it on `out` when connected, or give it back to be queued until then.
    fn command(&mut self, command: Self::Command, out: Option<&Out>) -> Option<Self::Command>;
    /// A message from the server.
    fn message(&mut self, message: Self::In, out: &Out);
    /// The connection is gone: fail (or keep for the next connection) what was in flight.
    fn disconnected(&mut self);
    /// Whether the session is saying goodbye: it keeps running, once its commands have ended,
    /// until [`done`](Session::done) (default: never).
    fn closing(&self) -> bool {
        false
    }
    /// Whether the session has finished: the driver returns (default: never).
    fn done(&self) -> bool {
        false
    }
}

/// Runs a session client until its command channel closes (and the session is not saying
/// goodbye), the session is done, or `me` is powered off: connect, serve, reconnect.
pub(crate) async fn drive<S: Session>(
    mut session: S,
    (host, port): (String, u16),
    me: SimHost,
    mut commands: mpsc::UnboundedReceiver<S::Command>,
) {
    let timeline = me.timeline().clone();
    let me_name = me.name().to_owned();
    let mut queued: VecDeque<S::Command> = VecDeque::new();
    let mut connects = 0u64;
    // Whether commands can still arrive.
    let mut open = true;
    loop {
        if me.is_down() || session.done() {
            return;
        }
        let connected = tokio::time::timeout(SESSION_TIMEOUT, TcpStream::connect((host.as_str(), port))).await;
        match connected {
            Ok(Ok(stream)) => {
                connects += 1;
                let detail = format!("{host}:{port} (connection {connects})");
                timeline.record(Entry::now(&me_name, "connect", S::NAME).detail(detail));
                let mut link = Link::new(stream, format!("{host}:{port}"), read_serde::<S::In>, me.down());
                let out = Out(link.tx.clone());
                session.opened(&out);
                let mut ready = false;
                let mut liveness = S::liveness();
                let reason = loop {
                    if !ready && session.ready() {
                        ready = true;
                        session.connected(&out);
                        while let Some(command) = queued.pop_front() {
                            if let Some(command) = session.command(command, Some(&out)) {
                                queued.push_front(command);
                                break;
                            }
                        }
                    }
                    if session.done() {
                        return;
                    }
                    tokio::select! {
                        biased;
                        message = link.rx.recv() => match message {
                            Some(message) => {
                                liveness.heard();
                                session.message(message, &out);
                            }
                            None => break "connection closed",
                        },
                        command = commands.recv(), if open => match command {
                            Some(command) if ready => {
                                if let Some(command) = session.command(command, Some(&out)) {
                                    queued.push_back(command);
                                }
                            }
                            Some(command) => queued.push_back(command),
                            None => {
                                open = false;
                                if !session.closing() {
                                    return;
                                }
                            }
                        },
                        silent = liveness.tick() => {
                            if silent {
                                break "session timed out";
                            }
                            if !link.send(S::ping()) {
                                break "connection closed";
                            }
                        }
                    }
                };
                drop(link);
                session.disconnected();
                timeline.record(Entry::now(&me_name, "disconnect", S::NAME).detail(reason));
            }
            Ok(Err(error)) => tracing::debug!(%host, port, %error, "connect failed"),
            Err(_) => tracing::debug!(%host, port, "connect timed out"),
        }
        let backoff = tokio::time::sleep(RECONNECT_BACKOFF);
        tokio::pin!(backoff);
        loop {
            if session.done() {
                return;
            }
            tokio::select! {
                biased;
                command = commands.recv(), if open => match command {
                    Some(command) => {
                        if let Some(command) = session.command(command, None) {
                            queued.push_back(command);
                        }
                    }
                    None => {
                        open = false;
                        if !session.closing() {
                            return;
                        }
                    }
                },
                () = &mut backoff => break,
            }
        }
    }
}

/// Waits for the answer of a call, at most `timeout`.
pub(crate) async fn answer<T>(
    rx: tokio::sync::oneshot::Receiver<lymph_core::Result<T>>,
    timeout: Duration,
    what: &str,
) -> lymph_core::Result<T> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(lymph_core::Error::transport(format!("{what}: the session task is gone"))),
        Err(_) => Err(lymph_core::Error::transport(format!("{what}: no answer within {timeout:?}"))),
    }
}
