//! `ZmqRpc` on loopback: lymph's frames, identities, reconnects and errors.
#![cfg(feature = "zmq")]

use std::time::Duration;

use bytes::Bytes;
use lymph_core::RpcTransport;
use lymph_core::rpc::{Frames, Inbox, Incoming};
use lymph_transports::{ZmqConfig, ZmqRpc};
use tokio::time::timeout;
use zeromq::prelude::*;
use zeromq::{RouterSocket, SocketOptions, ZmqMessage};

const WAIT: Duration = Duration::from_secs(5);

fn frames(words: &[&str]) -> Frames {
    words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
}

async fn next(inbox: &mut Inbox) -> Incoming {
    timeout(WAIT, inbox.recv()).await.expect("a message within 5 s").expect("the inbox is open")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn frames_travel_between_two_transports_with_the_sender_as_source() {
    let a = ZmqRpc::default();
    let b = ZmqRpc::default();
    let (a_endpoint, mut a_inbox) = a.bind().await.unwrap();
    let (b_endpoint, mut b_inbox) = b.bind().await.unwrap();
    assert!(a_endpoint.starts_with("tcp://127.0.0.1:"), "{a_endpoint}");
    let port: u16 = a_endpoint.rsplit(':').next().unwrap().parse().unwrap();
    assert!(port >= 35536, "lymph's port range: {port}");

    a.send(&b_endpoint, frames(&["id1", "REQ", "echo.upper", "h", "b"])).await.unwrap();
    let got = next(&mut b_inbox).await;
    assert_eq!(got.source, a_endpoint);
    assert_eq!(got.frames, frames(&["id1", "REQ", "echo.upper", "h", "b"]));

    // The reply goes back over b's own connection to a's bound socket.
    b.send(&got.source, frames(&["id2", "REP", "id1", "h", "b"])).await.unwrap();
    let reply = next(&mut a_inbox).await;
    assert_eq!(reply.source, b_endpoint);
    assert_eq!(reply.frames[2], Bytes::from_static(b"id1"));
}

#[tokio::test]
async fn a_fixed_port_is_used_and_binding_it_twice_fails() {
    let port = free_port();
    let a = ZmqRpc::new(ZmqConfig::new().with_port(Some(port)));
    let (endpoint, _inbox) = a.bind().await.unwrap();
    assert_eq!(endpoint, format!("tcp://127.0.0.1:{port}"));
    assert!(a.bind().await.is_err(), "a transport binds once");
    let b = ZmqRpc::new(ZmqConfig::new().with_port(Some(port)));
    let error = b.bind().await.unwrap_err().to_string();
    assert!(error.contains(&endpoint), "{error}");
}

#[tokio::test]
async fn sending_to_nobody_is_an_error_not_a_silent_loss() {
    let a = ZmqRpc::new(ZmqConfig::new().with_connect_timeout(Duration::from_millis(300)));
    a.bind().await.unwrap();
    let nobody = format!("tcp://127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let error = a.send(&nobody, frames(&["x", "REQ", "s", "h", "b"])).await.unwrap_err().to_string();
    assert!(error.contains(&nobody), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // Within the pause after a failure, the next send fails at once.
    let started = std::time::Instant::now();
    assert!(a.send(&nobody, frames(&["x", "REQ", "s", "h", "b"])).await.is_err());
    assert!(started.elapsed() < Duration::from_millis(100), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_restarted_peer_on_the_same_endpoint_is_reached_again() {
    let port = free_port();
    let a = ZmqRpc::default();
    a.bind().await.unwrap();
    let b = ZmqRpc::new(ZmqConfig::new().with_port(Some(port)));
    let (b_endpoint, mut b_inbox) = b.bind().await.unwrap();
    a.send(&b_endpoint, frames(&["1", "REQ", "s", "h", "b"])).await.unwrap();
    assert_eq!(next(&mut b_inbox).await.frames[0], Bytes::from_static(b"1"));

    b.close().await;
    drop(b);
    drop(b_inbox);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = ZmqRpc::new(ZmqConfig::new().with_port(Some(port)).with_retry_after(Duration::ZERO));
    let (_, mut b_inbox) = b.bind().await.unwrap();

    // Every message either arrives or its send fails; after the restart they arrive again.
    let mut delivered = Vec::new();
    for i in 0..20 {
        let id = format!("m{i}");
        if a.send(&b_endpoint, frames(&[&id, "REQ", "s", "h", "b"])).await.is_ok() {
            delivered.push(id);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(delivered.len() >= 18, "sends after the restart: {delivered:?}");
    for id in &delivered {
        assert_eq!(next(&mut b_inbox).await.frames[0], Bytes::copy_from_slice(id.as_bytes()));
    }
}

/// A peer written directly on the `zeromq` crate the way Python lymph uses libzmq: a bound
/// ROUTER and a connected ROUTER, both with the endpoint as identity.
#[tokio::test]
async fn a_lymph_style_raw_peer_talks_to_the_transport() {
    let rpc = ZmqRpc::default();
    let (endpoint, mut inbox) = rpc.bind().await.unwrap();

    let port = free_port();
    let raw_endpoint = format!("tcp://127.0.0.1:{port}");
    let options = || {
        let mut options = SocketOptions::default();
        options.peer_identity(raw_endpoint.parse().unwrap());
        options
    };
    let mut raw_recv = RouterSocket::with_options(options());
    raw_recv.bind(&raw_endpoint).await.unwrap();
    let mut raw_send = RouterSocket::with_options(options());
    raw_send.connect(&endpoint).await.unwrap();

    let mut message = ZmqMessage::from(endpoint.clone());
    for frame in ["abc", "REQ", "echo.upper", "\u{80}", "\u{81}"] {
        message.push_back(Bytes::copy_from_slice(frame.as_bytes()));
    }
    raw_send.send(message).await.unwrap();
    let got = next(&mut inbox).await;
    assert_eq!(got.source, raw_endpoint);
    assert_eq!(got.frames.len(), 5);

    rpc.send(&raw_endpoint, frames(&["def", "REP", "abc", "h", "b"])).await.unwrap();
    let reply = timeout(WAIT, raw_recv.recv()).await.unwrap().unwrap().into_vec();
    assert_eq!(reply[0], Bytes::copy_from_slice(endpoint.as_bytes()), "the identity frame is the sender's endpoint");
    assert_eq!(&reply[1..], &frames(&["def", "REP", "abc", "h", "b"])[..]);
}

#[tokio::test]
async fn a_sender_whose_identity_is_not_utf8_is_dropped_and_the_next_message_arrives() {
    let rpc = ZmqRpc::default();
    let (endpoint, mut inbox) = rpc.bind().await.unwrap();
    let mut options = SocketOptions::default();
    options.peer_identity(vec![0xff, 0xfe, 0x01].try_into().unwrap());
    let mut bad = RouterSocket::with_options(options);
    bad.connect(&endpoint).await.unwrap();
    let mut message = ZmqMessage::from(endpoint.clone());
    message.push_back(Bytes::from_static(b"bad"));
    bad.send(message).await.unwrap();

    let good = ZmqRpc::default();
    let (good_endpoint, _) = good.bind().await.unwrap();
    good.send(&endpoint, frames(&["ok"])).await.unwrap();
    let got = next(&mut inbox).await;
    assert_eq!(got.source, good_endpoint);
    assert_eq!(got.frames, frames(&["ok"]));
}

#[tokio::test]
async fn the_log_stream_sends_lymphs_three_frames() {
    use lymph_transports::LogPublisher;
    use zeromq::SubSocket;

    let publisher = LogPublisher::bind("127.0.0.1", None).await.unwrap();
    assert!(publisher.endpoint().starts_with("tcp://127.0.0.1:"), "{}", publisher.endpoint());
    let mut subscriber = SubSocket::new();
    subscriber.subscribe("").await.unwrap();
    subscriber.connect(publisher.endpoint()).await.unwrap();
    // PUB drops what is sent before the subscription arrives: publish until a record comes.
    let received = timeout(WAIT, async {
        loop {
            publisher.publish("WARNING", "disk almost full".to_owned());
            if let Ok(Ok(message)) = timeout(Duration::from_millis(50), subscriber.recv()).await {
                break message.into_vec();
            }
        }
    })
    .await
    .expect("a record within 5 s");
    assert_eq!(received.len(), 3);
    assert_eq!(&received[0][..], b"WARNING");
    assert_eq!(&received[1][..], publisher.endpoint().as_bytes());
    assert_eq!(&received[2][..], b"disk almost full");
}

/// A ZMTP 3.0 greeting with the NULL mechanism, as any ZeroMQ peer sends it first.
fn greeting() -> Vec<u8> {
    let mut greeting = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0];
    greeting.extend_from_slice(b"NULL");
    greeting.resize(64, 0);
    greeting
}

/// A frame header (message, or command when `command`) declaring a body of `len` bytes.
fn long_frame_header(len: u64, command: bool) -> Vec<u8> {
    let mut header = vec![if command { 0x06 } else { 0x02 }];
    header.extend_from_slice(&len.to_be_bytes());
    header
}

/// A READY command with a socket type and identity, which ends the handshake.
fn ready(identity: &str) -> Vec<u8> {
    let mut body = vec![5];
    body.extend_from_slice(b"READY");
    for (name, value) in [("Socket-Type", "ROUTER"), ("Identity", identity)] {
        body.push(u8::try_from(name.len()).unwrap());
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(&u32::try_from(value.len()).unwrap().to_be_bytes());
        body.extend_from_slice(value.as_bytes());
    }
    let mut frame = vec![0x04, u8::try_from(body.len()).unwrap()];
    frame.extend_from_slice(&body);
    frame
}

/// Connects to `endpoint` and sends `bytes`; returns whether the peer closed the connection
/// within 5 s.
async fn send_raw(endpoint: &str, bytes: &[u8]) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(endpoint.trim_start_matches("tcp://")).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut buffer = [0u8; 4096];
    let closed = timeout(WAIT, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    closed.await.is_ok()
}

/// Reads `inbox` all the time, as a container does (the socket reads its connections only while
/// its inbox is read), and hands over what arrives.
fn drain(mut inbox: Inbox) -> tokio::sync::mpsc::UnboundedReceiver<Incoming> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(incoming) = inbox.recv().await {
            if sender.send(incoming).is_err() {
                return;
            }
        }
    });
    receiver
}

type Drained = tokio::sync::mpsc::UnboundedReceiver<Incoming>;

async fn next_drained(inbox: &mut Drained) -> Incoming {
    timeout(WAIT, inbox.recv()).await.expect("a message within 5 s").expect("the inbox is open")
}

/// The transport at `endpoint` still gets what `peer` sends it.
async fn still_serves(peer: &ZmqRpc, endpoint: &str, inbox: &mut Drained) {
    peer.send(endpoint, frames(&["ok", "REQ", "echo.echo", "h", "b"])).await.unwrap();
    assert_eq!(next_drained(inbox).await.frames[0], Bytes::from_static(b"ok"));
}

#[tokio::test]
async fn a_frame_declaring_a_terabyte_closes_only_its_connection() {
    let a = ZmqRpc::default();
    let (endpoint, inbox) = a.bind().await.unwrap();
    let mut inbox = drain(inbox);
    let peer = ZmqRpc::default();
    peer.bind().await.unwrap();
    still_serves(&peer, &endpoint, &mut inbox).await;
    // 73 bytes: a greeting and a frame header declaring 1 TiB, before the handshake's READY.
    let mut before = greeting();
    before.extend(long_frame_header(1 << 40, false));
    assert_eq!(before.len(), 73);
    assert!(send_raw(&endpoint, &before).await, "the connection was not closed");
    // The same after the handshake, as a command and as a message, and u64::MAX.
    for (len, command) in [(1 << 40, false), (1 << 40, true), (u64::MAX, false)] {
        let mut after = greeting();
        after.extend(ready("tcp://127.0.0.1:1"));
        after.extend(long_frame_header(len, command));
        assert!(send_raw(&endpoint, &after).await, "the connection was not closed ({len}, {command})");
    }
    still_serves(&peer, &endpoint, &mut inbox).await;
    // Those closed after the handshake are counted and logged (one before it fails the
    // handshake, which the socket reports on its own).
    assert!(a.refused_connections() >= 3, "{} connections counted as refused", a.refused_connections());
}

#[tokio::test]
async fn the_message_size_limit_counts_every_frame_of_a_message() {
    let limit = 4096;
    let a = ZmqRpc::new(ZmqConfig::new().with_max_message_size(limit));
    let (endpoint, inbox) = a.bind().await.unwrap();
    let mut inbox = drain(inbox);
    let peer = ZmqRpc::default();
    peer.bind().await.unwrap();
    // Within the limit (each frame counts 64 bytes beyond its body): delivered.
    let big = "x".repeat(3000);
    peer.send(&endpoint, frames(&["id", "REQ", "s", "h", &big])).await.unwrap();
    assert_eq!(next_drained(&mut inbox).await.frames[4].len(), 3000);
    // Past it: the connection is dropped, nothing is delivered, and the peer reconnects.
    let bigger = "x".repeat(limit);
    peer.send(&endpoint, frames(&["too-big", "REQ", "s", "h", &bigger])).await.unwrap();
    // A stream of empty frames is bounded by the same limit.
    let mut empties = greeting();
    empties.extend(ready("tcp://127.0.0.1:2"));
    for _ in 0..100 {
        empties.extend([0x01, 0x00]);
    }
    assert!(send_raw(&endpoint, &empties).await, "100 empty frames of one message were accepted");
    let mut delivered = None;
    for _ in 0..20 {
        if peer.send(&endpoint, frames(&["after", "REQ", "s", "h", "b"])).await.is_ok()
            && let Ok(Some(incoming)) = timeout(Duration::from_millis(500), inbox.recv()).await
        {
            delivered = Some(incoming);
            break;
        }
    }
    let delivered = delivered.expect("the peer got through again");
    assert_eq!(delivered.frames[0], Bytes::from_static(b"after"), "the oversized message was delivered");
}

#[tokio::test]
async fn a_peer_that_answers_with_a_terabyte_frame_only_loses_its_connection() {
    // A "peer" that accepts a connection, completes the handshake and answers with a frame
    // header declaring 1 TiB: the sending side is protected as the bound side is.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil = format!("tcp://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut reply = greeting();
        reply.extend(ready("evil"));
        reply.extend(long_frame_header(1 << 40, false));
        stream.write_all(&reply).await.unwrap();
        let mut buffer = [0u8; 4096];
        while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
    });
    let a = ZmqRpc::default();
    let (endpoint, inbox) = a.bind().await.unwrap();
    let mut inbox = drain(inbox);
    let _ = a.send(&evil, frames(&["id", "REQ", "s", "h", "b"])).await;
    timeout(WAIT, server).await.expect("the connection to the bad peer was closed").unwrap();
    let peer = ZmqRpc::default();
    peer.bind().await.unwrap();
    still_serves(&peer, &endpoint, &mut inbox).await;
}

/// A `lymph.ping` request from `id`, as a container sends it.
fn ping_frames(id: usize) -> Frames {
    let ping = lymph_core::Message {
        id: format!("{id:032x}"),
        kind: lymph_core::MessageKind::Req,
        subject: "lymph.ping".to_owned(),
        headers: lymph_core::Headers::rpc(None, Some("trace")),
        body: Bytes::from(lymph_core::Value::map([("payload", "")]).to_msgpack()),
    };
    ping.to_frames()
}

/// Callers that are gone (their ports refuse connections, and ZeroMQ retries until its 1 s connect
/// timeout) delay no heartbeat from a container to a live peer.
#[tokio::test]
async fn callers_that_are_gone_delay_no_heartbeat_to_a_live_peer() {
    let network = lymph_core::memory::MemoryNetwork::new();
    let server = lymph_core::Container::builder().network(&network).rpc(ZmqRpc::default()).start().await.unwrap();
    let live = ZmqRpc::default();
    let (live_endpoint, live_inbox) = live.bind().await.unwrap();
    live.send(server.endpoint(), ping_frames(0)).await.unwrap();
    let callers = 20;
    for i in 1..=callers {
        let caller = ZmqRpc::default();
        let (_endpoint, _inbox) = caller.bind().await.unwrap();
        caller.send(server.endpoint(), ping_frames(i)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        caller.close().await;
    }
    let mut inbox = drain(live_inbox);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while inbox.try_recv().is_ok() {}
    let window = Duration::from_secs(4);
    let until = tokio::time::Instant::now() + window;
    let mut pings = 0;
    while let Ok(Some(incoming)) = tokio::time::timeout_at(until, inbox.recv()).await {
        if incoming.source == server.endpoint() && incoming.frames.get(2).is_some_and(|s| s.as_ref() == b"lymph.ping") {
            pings += 1;
        }
    }
    eprintln!("{pings} pings to the live peer {live_endpoint} in {window:?} beside {callers} callers that are gone");
    assert!(pings >= 3, "a ping a second: {pings} in {window:?}");
    server.stop().await;
}

/// A "peer" on loopback that completes the handshake, announcing its endpoint as its identity
/// (what lymph's messages are addressed to), and then never reads: its endpoint, and its
/// connection once accepted, kept open by whoever holds it.
async fn deaf_peer() -> (String, tokio::sync::oneshot::Receiver<tokio::net::TcpStream>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    let identity = endpoint.clone();
    let (accepted, held) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut reply = greeting();
        reply.extend(ready(&identity));
        stream.write_all(&reply).await.unwrap();
        let _ = accepted.send(stream);
    });
    (endpoint, held)
}

#[tokio::test]
async fn a_peer_that_never_reads_holds_at_most_the_queue_bound() {
    // A "peer" that completes the handshake and then never reads: what is sent to it fills the
    // kernel's buffers, then waits in the service, up to the bound; the rest is not sent.
    const LIMIT: usize = 1 << 20;
    const MESSAGE: usize = 64 << 10;
    const MESSAGES: usize = 600;
    let (deaf, held) = deaf_peer().await;
    let rpc = std::sync::Arc::new(ZmqRpc::new(ZmqConfig::new().with_max_queued_bytes(LIMIT)));
    let (endpoint, inbox) = rpc.bind().await.unwrap();
    let mut inbox = drain(inbox);
    let body = Bytes::from(vec![b'x'; MESSAGE]);
    let mut sends = tokio::task::JoinSet::new();
    for id in 0..MESSAGES {
        let (rpc, deaf, body) = (rpc.clone(), deaf.clone(), body.clone());
        sends.spawn(async move {
            let frames =
                vec![Bytes::from(id.to_string()), Bytes::from_static(b"REP"), Bytes::new(), Bytes::new(), body];
            timeout(Duration::from_secs(2), rpc.send(&deaf, frames)).await
        });
    }
    let _stream = held.await.unwrap();
    let (mut refused, mut waiting) = (0, 0);
    while let Some(outcome) = sends.join_next().await {
        match outcome.unwrap() {
            Ok(Err(error)) if error.is_not_sent() => refused += 1,
            Ok(Err(error)) => panic!("a send failed otherwise: {error}"),
            Ok(Ok(())) => {}
            Err(_) => waiting += 1,
        }
    }
    // What the kernel's buffers could not take: at most the bound waited, the rest was refused.
    assert!(waiting * MESSAGE <= LIMIT + MESSAGE, "{waiting} sends of {MESSAGE} bytes waited");
    assert!(refused > MESSAGES / 2, "only {refused} of {MESSAGES} sends were refused");
    assert_eq!(usize::try_from(rpc.dropped()).unwrap(), refused);
    assert_eq!(rpc.queued_bytes(&deaf), 0, "cancelled sends give their bytes back");
    // The service still serves everyone else.
    let peer = ZmqRpc::default();
    peer.bind().await.unwrap();
    still_serves(&peer, &endpoint, &mut inbox).await;
}

#[tokio::test]
async fn connections_to_peers_unused_for_the_idle_timeout_are_closed() {
    let (b, mut b_inbox) = {
        let b = ZmqRpc::default();
        let (endpoint, inbox) = b.bind().await.unwrap();
        ((b, endpoint), drain(inbox))
    };
    let a = ZmqRpc::new(ZmqConfig::new().with_idle_peer_timeout(Duration::from_millis(200)));
    a.bind().await.unwrap();
    a.send(&b.1, frames(&["1", "REQ", "s", "h", "b"])).await.unwrap();
    next_drained(&mut b_inbox).await;
    assert_eq!(a.peers(), std::slice::from_ref(&b.1));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(a.peers().is_empty(), "the idle connection is still there: {:?}", a.peers());
    // A later send connects again.
    a.send(&b.1, frames(&["2", "REQ", "s", "h", "b"])).await.unwrap();
    assert_eq!(next_drained(&mut b_inbox).await.frames[0], Bytes::from_static(b"2"));
}

#[tokio::test]
async fn a_routed_peer_is_reached_through_another_address_under_its_own_identity() {
    // A plain TCP relay in front of b: a's messages to b's endpoint travel through it.
    let (b, mut b_inbox) = {
        let b = ZmqRpc::default();
        let (endpoint, inbox) = b.bind().await.unwrap();
        ((b, endpoint), drain(inbox))
    };
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let target = b.1.trim_start_matches("tcp://").to_owned();
    let relayed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = relayed.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = relay.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut outbound = tokio::net::TcpStream::connect(&target).await.unwrap();
            tokio::spawn(async move { tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await });
        }
    });
    let a = ZmqRpc::default();
    let (a_endpoint, _a_inbox) = a.bind().await.unwrap();
    a.route(&b.1, &format!("tcp://{relay_addr}"));
    a.send(&b.1, frames(&["via", "REQ", "s", "h", "b"])).await.unwrap();
    let incoming = next_drained(&mut b_inbox).await;
    assert_eq!(incoming.source, a_endpoint);
    assert_eq!(incoming.frames[0], Bytes::from_static(b"via"));
    assert_eq!(relayed.load(std::sync::atomic::Ordering::SeqCst), 1, "the connection went through the relay");
}

#[tokio::test]
async fn a_connection_that_never_completes_the_handshake_is_closed() {
    let rpc = ZmqRpc::new(ZmqConfig::new().with_handshake_timeout(Duration::from_millis(300)));
    let (endpoint, inbox) = rpc.bind().await.unwrap();
    let mut inbox = drain(inbox);
    let started = std::time::Instant::now();
    // Connects and sends nothing, then a half greeting: both are closed by the service.
    assert!(send_raw(&endpoint, &[]).await, "a silent connection was kept");
    assert!(send_raw(&endpoint, &greeting()[..10]).await, "a connection stuck in its greeting was kept");
    assert!(started.elapsed() < Duration::from_secs(4), "closing took {:?}", started.elapsed());
    let peer = ZmqRpc::default();
    peer.bind().await.unwrap();
    still_serves(&peer, &endpoint, &mut inbox).await;
}

#[tokio::test]
async fn peers_that_never_read_hold_at_most_the_total_bound_between_them() {
    // Three peers that never read, each under its own bound, all three over the total one.
    const MESSAGE: usize = 64 << 10;
    let rpc = std::sync::Arc::new(ZmqRpc::new(
        ZmqConfig::new().with_max_queued_bytes(usize::MAX).with_max_queued_bytes_total(1 << 20),
    ));
    rpc.bind().await.unwrap();
    let mut streams = Vec::new();
    let mut deaf = Vec::new();
    for _ in 0..3 {
        let (endpoint, held) = deaf_peer().await;
        deaf.push(endpoint);
        streams.push(held);
    }
    let body = Bytes::from(vec![b'x'; MESSAGE]);
    let mut sends = tokio::task::JoinSet::new();
    for id in 0..1500 {
        let (rpc, to, body) = (rpc.clone(), deaf[id % 3].clone(), body.clone());
        sends.spawn(async move {
            let frames =
                vec![Bytes::from(id.to_string()), Bytes::from_static(b"REP"), Bytes::new(), Bytes::new(), body];
            timeout(Duration::from_secs(2), rpc.send(&to, frames)).await
        });
    }
    let mut held = Vec::new();
    for stream in streams {
        held.push(stream.await.unwrap());
    }
    let (mut refused, mut waiting) = (0, 0);
    while let Some(outcome) = sends.join_next().await {
        match outcome.unwrap() {
            Ok(Err(error)) if error.is_not_sent() => refused += 1,
            Ok(Err(error)) => panic!("a send failed otherwise: {error}"),
            Ok(Ok(())) => {}
            Err(_) => waiting += 1,
        }
    }
    // The kernel's buffers take what they can of each peer's messages; of the rest, at most
    // 1 MiB in all waited in the service, and the others were refused.
    assert!(waiting * MESSAGE <= (1 << 20) + MESSAGE, "{waiting} sends of {MESSAGE} bytes waited");
    assert!(refused > 0, "no send was refused");
    assert_eq!(usize::try_from(rpc.dropped()).unwrap(), refused);
    drop(held);
}
