//! The contract of [`RpcTransport`](lymph_core::rpc::RpcTransport): what lymph's ZeroMQ
//! ROUTER-to-ROUTER transport over TCP does, and every backend must do too.
//!
//! The checks pin what lymph 0.15's `ZmqRPCServer` gets from ZeroMQ and TCP: multipart messages
//! arrive whole, stamped with the sender's identity (its endpoint), in the order one peer sent
//! them; TCP retransmits, so a slow or partitioned link delays messages and loses none, and the
//! connection lives on (lymph sets no ZeroMQ heartbeat); a peer that is gone makes sends fail
//! rather than vanish. Sources: the ZeroMQ guide (chapter 3, "ROUTER socket", identities;
//! chapter 2, "Messaging Patterns": messages are delivered whole), RFC 9293 (TCP's reliable,
//! ordered delivery and retransmission), and lymph 0.15's `lymph.core.connection`.
//!
//! Backends: [`embedded`] (the in-process [`MemoryNetwork`](lymph_core::memory::MemoryNetwork)),
//! [`simulated`] (the simulated transport in a turmoil world) and, with `real-infra`, `real`
//! (`ZmqRpc` on loopback, each link through a fault proxy).

use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use lymph_core::Error;
use lymph_core::rpc::{Frames, Incoming};

use super::{Check, Faults, check, ensure};

pub mod embedded;
#[cfg(feature = "real-infra")]
pub mod real;
pub mod simulated;

/// A bound transport made by an [`RpcHarness`].
#[derive(Debug)]
pub struct Peer {
    /// 0 for the first peer a harness made, 1 for the next, and so on.
    pub index: usize,
    /// The endpoint it is bound to, which is also the source of what it sends.
    pub endpoint: String,
    /// What arrives at it.
    pub inbox: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Incoming>>,
}

impl Peer {
    /// A peer whose transport is bound at `endpoint`: what arrives at `inbox` is read all the
    /// time, as a container does, and handed to the checks.
    pub fn reading(index: usize, endpoint: String, mut inbox: lymph_core::rpc::Inbox) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(incoming) = inbox.recv().await {
                if tx.send(incoming).is_err() {
                    return;
                }
            }
        });
        Self { index, endpoint, inbox: tokio::sync::Mutex::new(rx) }
    }
}

/// What the RPC checks need of a backend.
///
/// The fault methods are only called when [`Faults::lacks`] says the backend has that fault.
pub trait RpcHarness: Faults {
    /// A new transport, bound.
    fn peer(&self) -> LocalBoxFuture<'_, Result<Peer, Error>>;

    /// `from` sends `frames` to `to`.
    fn send<'a>(&'a self, from: &'a Peer, to: &'a Peer, frames: Frames) -> LocalBoxFuture<'a, Result<(), Error>>;

    /// `from` sends `frames` to an endpoint no one is bound to.
    fn send_to_nobody<'a>(&'a self, from: &'a Peer, frames: Frames) -> LocalBoxFuture<'a, Result<(), Error>>;

    /// `peer`'s process dies: its connections drop.
    fn crash<'a>(&'a self, peer: &'a Peer) -> LocalBoxFuture<'a, ()>;

    /// Cuts the link between `a` and `b` both ways for `duration`, then heals it.
    fn cut<'a>(&'a self, a: &'a Peer, b: &'a Peer, duration: Duration) -> LocalBoxFuture<'a, ()>;

    /// Every byte between `a` and `b` takes `latency` longer from now on (zero: back to normal).
    fn set_latency<'a>(&'a self, a: &'a Peer, b: &'a Peer, latency: Duration) -> LocalBoxFuture<'a, ()>;
}

type H = dyn RpcHarness;

/// Every check of the RPC contract.
pub fn checks() -> &'static [Check<H>] {
    CHECKS
}

const CHECKS: &[Check<H>] = &[
    check!(
        messages_arrive_whole_with_the_sender_as_source,
        "a ROUTER socket receives a multipart message whole, prefixed with the sender's identity \
         (ZeroMQ guide, chapter 3); lymph's identity is the sender's endpoint",
        []
    ),
    check!(
        messages_from_one_peer_arrive_in_the_order_sent,
        "one peer's messages travel on one TCP connection, delivered in order (RFC 9293)",
        []
    ),
    check!(
        a_message_of_tens_of_mib_arrives_whole,
        "ZeroMQ carries a message of any size its peer accepts; lymph-rs's transports accept 64 MiB \
         (`ZmqConfig::with_max_message_size`), so a 20 MiB reply travels as a small one does",
        []
    ),
    check!(
        sending_to_an_endpoint_no_one_binds_fails,
        "a connect to a port nobody listens on is refused, and lymph-rs's transport says so \
         instead of queueing the message for ever as a bare ZeroMQ socket would",
        []
    ),
    check!(
        a_slow_link_delivers_late_and_loses_nothing,
        "TCP delivers what a slow link carries, late; lymph sets no ZeroMQ heartbeat, so the \
         connection is kept however long it waits (RFC 9293, retransmission)",
        [Slow]
    ),
    check!(
        a_partition_delays_messages_and_loses_none,
        "TCP retransmits through a partition shorter than its retransmission timeout: what was \
         sent during it arrives when it heals, in order, on the same connection (RFC 9293)",
        [Cut]
    ),
    check!(
        sends_to_a_crashed_peer_fail,
        "when a peer's process dies its connections end (the kernel closes them) and sends to \
         it fail instead of vanishing",
        [Crash]
    ),
];

/// How long a check waits for what must arrive.
const WAIT: Duration = Duration::from_secs(10);

fn failed(what: &str) -> impl Fn(Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn frames(words: &[&str]) -> Frames {
    words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
}

/// The next message at `peer`, within `wait`.
async fn next(peer: &Peer, wait: Duration, what: &str) -> Result<Incoming, String> {
    let mut inbox = peer.inbox.lock().await;
    match tokio::time::timeout(wait, inbox.recv()).await {
        Ok(Some(incoming)) => Ok(incoming),
        Ok(None) => Err(format!("{what}: the inbox closed")),
        Err(_) => Err(format!("{what}: nothing arrived within {wait:?}")),
    }
}

fn first_frame(incoming: &Incoming) -> String {
    incoming.frames.first().map(|f| String::from_utf8_lossy(f).into_owned()).unwrap_or_default()
}

async fn two_peers(h: &H) -> Result<(Peer, Peer), String> {
    Ok((h.peer().await.map_err(failed("a peer"))?, h.peer().await.map_err(failed("a peer"))?))
}

async fn messages_arrive_whole_with_the_sender_as_source(h: &H) -> Result<(), String> {
    let (a, b) = two_peers(h).await?;
    let sent = vec![
        Bytes::from_static(b"id-1"),
        Bytes::from_static(b"REQ"),
        Bytes::from_static(b"echo.upper"),
        Bytes::new(),
        Bytes::from(vec![0xc0; 100_000]),
    ];
    h.send(&a, &b, sent.clone()).await.map_err(failed("send"))?;
    let incoming = next(&b, WAIT, "the message").await?;
    ensure!(
        incoming.source == a.endpoint,
        "the source is {:?}, not the sender's endpoint {:?}",
        incoming.source,
        a.endpoint
    );
    ensure!(incoming.frames == sent, "{} frames arrived, not the 5 sent as they were", incoming.frames.len());
    Ok(())
}

async fn messages_from_one_peer_arrive_in_the_order_sent(h: &H) -> Result<(), String> {
    let (a, b) = two_peers(h).await?;
    for n in 0..200 {
        h.send(&a, &b, frames(&[&n.to_string()])).await.map_err(failed("send"))?;
    }
    for n in 0..200 {
        let got = first_frame(&next(&b, WAIT, "the next message").await?);
        ensure!(got == n.to_string(), "message {got} arrived where {n} was expected");
    }
    Ok(())
}

async fn a_message_of_tens_of_mib_arrives_whole(h: &H) -> Result<(), String> {
    let (a, b) = two_peers(h).await?;
    let body: Bytes = (0..20 << 20).map(|i: u32| (i % 251) as u8).collect::<Vec<u8>>().into();
    let sent = vec![Bytes::from_static(b"big"), Bytes::from_static(b"REP"), Bytes::new(), Bytes::new(), body.clone()];
    h.send(&a, &b, sent).await.map_err(failed("send 20 MiB"))?;
    let incoming = next(&b, WAIT, "the 20 MiB message").await?;
    ensure!(incoming.frames.len() == 5, "{} frames arrived", incoming.frames.len());
    ensure!(incoming.frames[4] == body, "the body arrived changed ({} bytes)", incoming.frames[4].len());
    Ok(())
}

async fn sending_to_an_endpoint_no_one_binds_fails(h: &H) -> Result<(), String> {
    let a = h.peer().await.map_err(failed("a peer"))?;
    match h.send_to_nobody(&a, frames(&["lost?"])).await {
        Err(_) => Ok(()),
        Ok(()) => Err("a send to an endpoint no one binds succeeded".to_owned()),
    }
}

async fn a_slow_link_delivers_late_and_loses_nothing(h: &H) -> Result<(), String> {
    let (a, b) = two_peers(h).await?;
    h.send(&a, &b, frames(&["warm"])).await.map_err(failed("send"))?;
    next(&b, WAIT, "the message before the link slowed").await?;
    let latency = Duration::from_secs(3);
    h.set_latency(&a, &b, latency).await;
    let sent = tokio::time::Instant::now();
    for word in ["one", "two", "three"] {
        h.send(&a, &b, frames(&[word])).await.map_err(failed("send on the slow link"))?;
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(first_frame(&next(&b, WAIT + latency, "a message on the slow link").await?));
    }
    let waited = sent.elapsed();
    h.set_latency(&a, &b, Duration::ZERO).await;
    ensure!(got == ["one", "two", "three"], "the slow link delivered {got:?}");
    ensure!(waited >= latency, "messages on a link of {latency:?} arrived after {waited:?}");
    Ok(())
}

async fn a_partition_delays_messages_and_loses_none(h: &H) -> Result<(), String> {
    let (a, b) = two_peers(h).await?;
    h.send(&a, &b, frames(&["before"])).await.map_err(failed("send"))?;
    next(&b, WAIT, "the message before the partition").await?;
    let cut = h.cut(&a, &b, Duration::from_secs(3));
    let during = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for word in ["one", "two"] {
            h.send(&a, &b, frames(&[word])).await.map_err(failed("send into the partition"))?;
        }
        let early = next(&b, Duration::from_secs(1), "").await;
        ensure!(early.is_err(), "a message crossed the partition: {:?}", early.map(|i| first_frame(&i)));
        Ok::<(), String>(())
    };
    let ((), during) = tokio::join!(cut, during);
    during?;
    let got = [
        first_frame(&next(&b, WAIT, "the first held message").await?),
        first_frame(&next(&b, WAIT, "the second").await?),
    ];
    ensure!(got == ["one", "two"], "after the partition healed the peer got {got:?}");
    Ok(())
}

async fn sends_to_a_crashed_peer_fail(h: &H) -> Result<(), String> {
    let (a, b) = two_peers(h).await?;
    h.send(&a, &b, frames(&["alive"])).await.map_err(failed("send"))?;
    next(&b, WAIT, "the message before the crash").await?;
    h.crash(&b).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if h.send(&a, &b, frames(&["anyone?"])).await.is_err() {
            return Ok(());
        }
        ensure!(tokio::time::Instant::now() < deadline, "sends to the crashed peer still succeed after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
