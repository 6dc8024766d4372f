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
