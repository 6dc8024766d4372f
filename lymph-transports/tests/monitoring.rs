//! `MetricsPublisher` on loopback: lymph's `stats` messages on a SUB socket, decoded by an
//! independent msgpack reader, in the legacy raw encoding, ending with the container.
#![cfg(feature = "zmq")]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lymph_core::memory::MemoryNetwork;
use lymph_core::{Container, Value};
use lymph_transports::{MetricsPublisher, ZmqRpc};
use tokio::time::timeout;
use zeromq::prelude::*;
use zeromq::{SubSocket, ZmqMessage};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(5);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn subscribe(endpoint: &str) -> Result<SubSocket> {
    let mut socket = SubSocket::new();
    socket.subscribe("").await?;
    socket.connect(endpoint).await?;
    Ok(socket)
}

async fn next(socket: &mut SubSocket) -> Result<ZmqMessage> {
    Ok(timeout(WAIT, socket.recv()).await.map_err(|_| "no stats message within 5 s")??)
}

/// The value of the series entry `name` whose tag `key` is `value`.
fn entry<'a>(series: &'a [rmpv::Value], name: &str, key: &str, value: &str) -> Option<&'a rmpv::Value> {
    series.iter().find_map(|entry| {
        let parts = entry.as_array()?;
        let tags = parts.get(2)?.as_map()?;
        let tagged = tags.iter().any(|(k, v)| k.as_str() == Some(key) && v.as_str() == Some(value));
        (parts.first()?.as_str() == Some(name) && tagged).then(|| &parts[1])
    })
}

/// The markers of every value in `bytes`, one msgpack value, in order; fails on anything
/// msgpack-python 0.4 without `use_bin_type` never writes (str8, bin).
fn legacy_markers(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    fn len(bytes: &[u8], at: usize, width: usize) -> std::result::Result<usize, String> {
        let field = bytes.get(at..at + width).ok_or("truncated")?;
        Ok(field.iter().fold(0, |n, b| n << 8 | usize::from(*b)))
    }
    let mut markers = Vec::new();
    let (mut at, mut values) = (0, 1usize);
    while values > 0 {
        let marker = *bytes.get(at).ok_or("truncated")?;
        markers.push(marker);
        values -= 1;
        at += 1;
        match marker {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => {}
            0x80..=0x8f => values += 2 * usize::from(marker & 0x0f),
            0x90..=0x9f => values += usize::from(marker & 0x0f),
            0xa0..=0xbf => at += usize::from(marker & 0x1f),
            0xcc | 0xd0 => at += 1,
            0xcd | 0xd1 => at += 2,
            0xca | 0xce | 0xd2 => at += 4,
            0xcb | 0xcf | 0xd3 => at += 8,
            0xda => at += 2 + len(bytes, at, 2)?,
            0xdb => at += 4 + len(bytes, at, 4)?,
            0xdc => (values, at) = (values + len(bytes, at, 2)?, at + 2),
            0xdd => (values, at) = (values + len(bytes, at, 4)?, at + 4),
            0xde => (values, at) = (values + 2 * len(bytes, at, 2)?, at + 2),
            0xdf => (values, at) = (values + 2 * len(bytes, at, 4)?, at + 4),
            other => return Err(format!("marker {other:#04x} at byte {}", at - 1)),
        }
    }
    if at == bytes.len() { Ok(markers) } else { Err(format!("{} trailing bytes", bytes.len() - at)) }
}

#[tokio::test]
async fn the_containers_metrics_arrive_as_lymphs_stats_messages() -> Result {
    let network = MemoryNetwork::new();
    let publisher = MetricsPublisher::bind("127.0.0.1", None).await?;
    let endpoint = publisher.endpoint().to_owned();
    assert!(endpoint.starts_with("tcp://127.0.0.1:") && !endpoint.ends_with(":0"), "{endpoint}");
    let server = Container::builder()
        .network(&network)
        .rpc(ZmqRpc::default())
        .monitoring_endpoint(endpoint.clone())
        .start()
        .await?;
    let client = Container::builder().network(&network).rpc(ZmqRpc::default()).start().await?;
    let lymph = client.proxy(server.endpoint()).namespace("lymph");
    for _ in 0..3 {
        let _: Value = lymph.call("status", &Value::Map(Vec::new())).await?;
    }

    let mut subscriber = subscribe(&endpoint).await?;
    let pushing = tokio::spawn(publisher.run(server.clone(), Duration::from_millis(100)));
    let message = next(&mut subscriber).await?;
    let frames: Vec<&[u8]> = message.iter().map(|frame| frame.as_ref()).collect();
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0], b"stats");
    let body = frames[1];

    let stats = rmpv::decode::read_value(&mut &body[..])?;
    let map = stats.as_map().ok_or("stats is a map")?;
    let keys: Vec<_> = map.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, [Some("time"), Some("series")], "lymph's key order");
    let time = map[0].1.as_f64().ok_or("time is a float")?;
    assert!(matches!(map[0].1, rmpv::Value::F64(_)), "time is a float64");
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    assert!((now - time).abs() < 30.0, "time {time} is the unix time, now {now}");
    let series = map[1].1.as_array().ok_or("series is an array")?;
    assert_eq!(entry(series, "rpc", "subject", "lymph.status").and_then(rmpv::Value::as_u64), Some(3), "{series:?}");
    let tagged = entry(series, "rpc", "identity", server.identity()).ok_or("entries carry the identity tag")?;
    assert_eq!(tagged.as_u64(), Some(3));

    // Old raw strings only: the 32-character identity is raw16, never str8, and nothing is bin.
    let markers = legacy_markers(body)?;
    assert!(markers.iter().all(|m| ![0xd9, 0xc4, 0xc5, 0xc6].contains(m)), "{markers:02x?}");
    let mut raw16 = vec![0xda, 0x00, 0x20];
    raw16.extend_from_slice(server.identity().as_bytes());
    assert!(body.windows(raw16.len()).any(|w| w == raw16), "the identity tag is raw16");
    assert_eq!(body, lymph_core::codec::to_legacy_msgpack(&Value::from_msgpack(body)?), "re-encodes the same");

    // Later messages follow the counters.
    let _: Value = lymph.call("status", &Value::Map(Vec::new())).await?;
    let counted = async {
        loop {
            let message = next(&mut subscriber).await?;
            let stats = rmpv::decode::read_value(&mut &message.get(1).ok_or("two frames")?[..])?;
            let series = stats.as_map().and_then(|m| m[1].1.as_array()).ok_or("series")?;
            if entry(series, "rpc", "subject", "lymph.status").and_then(rmpv::Value::as_u64) == Some(4) {
                return Ok::<_, Box<dyn std::error::Error>>(());
            }
        }
    };
    timeout(WAIT, counted).await??;

    // The stream ends with the container.
    server.stop().await;
    timeout(WAIT, pushing).await.map_err(|_| "the publisher outlived its container")??;
    client.stop().await;
    Ok(())
}

#[tokio::test]
async fn nothing_is_pushed_before_the_first_interval_and_the_run_ends_with_the_container() -> Result {
    let network = MemoryNetwork::new();
    let publisher = MetricsPublisher::bind("127.0.0.1", None).await?;
    let mut subscriber = subscribe(publisher.endpoint()).await?;
    let container = Container::builder().network(&network).start().await?;
    let pushing = tokio::spawn(publisher.run(container.clone(), Duration::from_secs(3600)));
    assert!(timeout(Duration::from_millis(300), subscriber.recv()).await.is_err(), "lymph waits an interval first");
    assert!(!pushing.is_finished());
    container.stop().await;
    timeout(WAIT, pushing).await.map_err(|_| "the publisher outlived its container")??;
    Ok(())
}

#[tokio::test]
async fn a_wanted_endpoint_is_bound_and_a_taken_one_is_an_error() -> Result {
    let wanted = format!("tcp://127.0.0.1:{}", free_port());
    let mut publisher = MetricsPublisher::bind("0.0.0.0", Some(&wanted)).await?;
    assert_eq!(publisher.endpoint(), wanted);
    let error = MetricsPublisher::bind("127.0.0.1", Some(&wanted)).await.unwrap_err().to_string();
    assert!(error.contains(&wanted), "{error}");

    // One message on demand, with the series given.
    let mut subscriber = subscribe(&wanted).await?;
    let series = Value::Array(vec![Value::Array(vec![Value::from("x"), Value::Int(1), Value::Map(Vec::new())])]);
    let message = timeout(WAIT, async {
        loop {
            // A subscription takes a moment to reach the publisher; until then, messages are dropped.
            publisher.publish(series.clone()).await?;
            if let Ok(message) = timeout(Duration::from_millis(100), subscriber.recv()).await {
                return Ok::<_, Box<dyn std::error::Error>>(message?);
            }
        }
    })
    .await??;
    let stats = Value::from_msgpack(message.get(1).ok_or("two frames")?)?;
    assert_eq!(stats.get("series"), Some(&series));
    Ok(())
}
