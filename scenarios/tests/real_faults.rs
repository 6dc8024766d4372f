//! Faults on real infrastructure: broker and registry restarts, a killed instance, malformed
//! frames from a raw socket.
//!
//! Needs ZooKeeper and RabbitMQ on loopback, started by `scripts/infra.sh up` or any other way:
//! RabbitMQ restarts with `rabbitmqctl stop_app` / `start_app` on whatever node serves it
//! ([`Real::restart_rabbitmq`]); ZooKeeper with `LYMPH_TEST_ZOOKEEPER_RESTART` for a server
//! `scripts/infra.sh up` did not start ([`Real::restart_zookeeper`]). A restart disturbs
//! everything that uses the servers, so these tests run one at a time, in a test binary of their
//! own.
#![cfg(feature = "real-infra")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use lymph::testing::{Cluster, Real, eventually};
use lymph::{Container, Value};
use scenarios::echo::{Echo, EchoClient};
use scenarios::listener::Listener;
use zeromq::prelude::*;
use zeromq::{RouterSocket, SocketOptions, ZmqMessage};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

async fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// Keeps trying `call` until it succeeds or `within` passes.
async fn until_ok<T, F, Fut>(what: &str, within: Duration, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = lymph::Result<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() > deadline => return Err(format!("{what}: still failing: {error}").into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flow_again_after_a_rabbitmq_restart() -> Result {
    let _one = exclusive().await;
    let cluster = Real::new()?;
    let outcome = async {
        let talk = scenarios::talk::start(&cluster).await?;
        let echo: EchoClient = talk.client.client();
        assert_eq!(echo.upper("before".to_owned()).await?, "BEFORE");
        let listener = talk.listener.clone();
        eventually("the event before the restart", Duration::from_secs(10), || listener.received().len() == 1).await?;

        Real::restart_rabbitmq()?;
        // Emits fail while the containers reconnect, and an emit confirmed before the listener
        // has declared its queue again is lost (lymph's queues are not durable). Once every
        // container is back, events flow: keep emitting until one arrives.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let text = format!("after-{attempt}");
            let _ = echo.upper(text.clone()).await;
            let listener = talk.listener.clone();
            let expected = Value::from(text.as_str());
            let arrived = eventually("", Duration::from_millis(500), || {
                listener.received().iter().any(|e| e.get("text") == Some(&expected))
            })
            .await;
            if arrived.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("no event arrived within 60 s of the restart ({attempt} emitted)").into());
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    cluster.shutdown().await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_reappears_after_a_zookeeper_restart() -> Result {
    let _one = exclusive().await;
    let cluster = Real::new()?;
    let outcome = async {
        let echo = Echo::default();
        let factory = echo.clone();
        cluster.start("echo", Box::new(move || Container::builder().interface(factory.clone()))).await?;
        let client = cluster.client().await?;
        assert_eq!(client.client::<EchoClient>().echo("before".to_owned()).await?, "before");

        Real::restart_zookeeper()?;
        // A client that starts after the restart finds the instance in the registry again.
        let fresh = until_ok("a client after the restart", Duration::from_secs(30), || cluster.client()).await?;
        let fresh_echo: EchoClient = fresh.client();
        let reply = until_ok("a call through the registry after the restart", Duration::from_secs(30), || {
            fresh_echo.echo("after".to_owned())
        })
        .await?;
        assert_eq!(reply, "after");
        assert!(echo.served() >= 2);
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    cluster.shutdown().await;
    outcome
}

/// A `scenarios instance` process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config_for(cluster: &Real, dir: &Path) -> Result<PathBuf> {
    let path = dir.join("echo.yml");
    let (hosts, chroot) = cluster.zookeeper().split_once('/').ok_or("the cluster's hosts have a chroot")?;
    std::fs::write(
        &path,
        format!(
            "container:\n  ip: 127.0.0.1\n  registry:\n    class: lymph.discovery.zookeeper:ZookeeperServiceRegistry\n    \
             zkclient:\n      class: kazoo.client:KazooClient\n      hosts: {hosts}/{chroot}\n  events:\n    \
             class: lymph.events.kombu:KombuEventSystem\n    hostname: {}\ninterfaces:\n  echo:\n    class: echo:Echo\n",
            cluster.amqp()
        ),
    )?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_move_to_the_other_instance_when_one_is_killed() -> Result {
    let _one = exclusive().await;
    let cluster = Real::new()?;
    let dir = std::env::temp_dir().join(format!("lymph-kill-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir)?;
    let config = config_for(&cluster, &dir)?;
    let spawn = || -> Result<Process> {
        let child = Command::new(env!("CARGO_BIN_EXE_scenarios"))
            .args(["instance", "-c"])
            .arg(&config)
            .args(["--loglevel", "WARNING"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Process(child))
    };
    let mut first = spawn()?;
    let _second = spawn()?;
    let outcome = async {
        let client = cluster.client().await?;
        let endpoints = {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let served: Vec<String> = served_by(&client, 10).await;
                let mut distinct = served.clone();
                distinct.sort();
                distinct.dedup();
                if distinct.len() == 2 {
                    break distinct;
                }
                if Instant::now() > deadline {
                    return Err(format!("two instances never both answered: {served:?}").into());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        first.0.kill()?;
        first.0.wait()?;
        // Calls after the kill: a few may fail until the dead instance is unresponsive, then the
        // survivor takes them all.
        let mut failures = 0;
        let mut last = Vec::new();
        for _ in 0..50 {
            match client.proxy("echo").namespace("lymph").call::<Value, _>("status", &Value::Map(Vec::new())).await {
                Ok(status) => last.push(status.get("endpoint").and_then(Value::as_str).unwrap_or_default().to_owned()),
                Err(_) => failures += 1,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(failures <= 10, "{failures} of 50 calls failed after the kill");
        let tail: Vec<&String> = last.iter().rev().take(20).collect();
        assert!(tail.windows(2).all(|w| w[0] == w[1]), "the last calls went to more than one instance: {tail:?}");
        assert!(endpoints.contains(tail[0]), "{tail:?} not in {endpoints:?}");
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// The endpoints that answered `n` calls of `lymph.status` on `echo` instances.
async fn served_by(client: &Container, n: usize) -> Vec<String> {
    let mut endpoints = Vec::new();
    for _ in 0..n {
        if let Ok(status) =
            client.proxy("echo").namespace("lymph").call::<Value, _>("status", &Value::Map(Vec::new())).await
        {
            endpoints.push(status.get("endpoint").and_then(Value::as_str).unwrap_or_default().to_owned());
        }
    }
    endpoints
}

fn message(frames: &[&[u8]]) -> ZmqMessage {
    let mut message = ZmqMessage::from(Bytes::copy_from_slice(frames[0]));
    for frame in &frames[1..] {
        message.push_back(Bytes::copy_from_slice(frame));
    }
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_dropped_and_the_service_keeps_answering() -> Result {
    let _one = exclusive().await;
    let cluster = Real::new()?;
    let outcome = async {
        cluster.start("echo", Box::new(|| Container::builder().interface(Echo::default()))).await?;
        let service = cluster.container("echo").ok_or("the echo container")?;
        let target = service.endpoint().to_owned();

        // A raw peer, lymph-style: bound ROUTER to receive replies, connected ROUTER to send.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let own = format!("tcp://127.0.0.1:{port}");
        let options = || {
            let mut options = SocketOptions::default();
            options.peer_identity(own.parse().expect("a valid identity"));
            options
        };
        let mut inbox = RouterSocket::with_options(options());
        inbox.bind(&own).await?;
        let mut raw = RouterSocket::with_options(options());
        raw.connect(&target).await?;

        let t = target.as_bytes();
        let headers = Value::map([("version", Value::Nil), ("trace_id", Value::Nil)]).to_msgpack();
        let body = Value::map([("text", "hi")]).to_msgpack();
        let garbage: Vec<Vec<&[u8]>> = vec![
            vec![t, b"only", b"three"],
            vec![t, b"id", b"REQ", b"echo.upper", b"\xc1", &body],
            vec![t, b"id", b"REQ", b"echo.upper", &headers, b"\x81\xa4te"],
            vec![t, b"\xff\xfe", b"REQ", b"echo.upper", &headers, &body],
            vec![t, b"id", b"REQ", b"echo.\xff", &headers, &body],
            vec![t, b"id", b"BOGUS", b"echo.upper", &headers, &body],
            vec![t, b"id", b"REQ", b"echo.upper", &headers, &body, b"extra"],
        ];
        for frames in &garbage {
            raw.send(message(frames)).await?;
        }
        // A well-formed request on the same connection is answered, to the raw peer's endpoint.
        raw.send(message(&[t, b"good-id", b"REQ", b"echo.upper", &headers, &body])).await?;
        let reply = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await??.into_vec();
        assert_eq!(reply.len(), 6, "{reply:?}");
        assert_eq!(&reply[2][..], b"REP");
        assert_eq!(&reply[3][..], b"good-id");
        assert_eq!(Value::from_msgpack(&reply[5])?, Value::from("HI"));

        let client = cluster.client().await?;
        assert_eq!(client.client::<EchoClient>().upper("still".to_owned()).await?, "STILL");
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    cluster.shutdown().await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_started_late_gets_what_its_queue_kept() -> Result {
    let _one = exclusive().await;
    let cluster = Real::new()?;
    let outcome = async {
        // The queue exists once a listener subscribed; it keeps events while no listener runs.
        let listener = Listener::default();
        let factory = listener.clone();
        cluster.start("listener", Box::new(move || Container::builder().interface(factory.clone()))).await?;
        cluster.stop("listener").await?;
        cluster.start("echo", Box::new(|| Container::builder().interface(Echo::default()))).await?;
        let client = cluster.client().await?;
        client.client::<EchoClient>().upper("kept".to_owned()).await?;
        let late = Listener::default();
        let factory = late.clone();
        cluster.start("listener-2", Box::new(move || Container::builder().interface(factory.clone()))).await?;
        eventually("the kept event reaches the late listener", Duration::from_secs(10), || {
            late.received().iter().any(|e| e.get("text") == Some(&Value::from("kept")))
        })
        .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    cluster.shutdown().await;
    outcome
}

/// A partition between two instances holds their calls, as on a real network: a call from the
/// gateway to the cut-off order instances gets no answer while it lasts, and the gateway's calls
/// go through again once it heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_between_instances_holds_their_calls() -> Result {
    let _one = exclusive().await;
    let cluster = Real::new()?;
    let outcome = async {
        scenarios::food::start(&cluster, &scenarios::food::Store::default()).await?;
        let client = cluster.client().await?;
        let order = serde_json::json!({ "customer": "c", "dish": "pho" });
        let place = || async {
            client.proxy("gateway").timeout(Duration::from_secs(2)).call::<String, _>("place_order", &order).await
        };
        until_ok("an order before the partition", Duration::from_secs(20), place).await?;
        for instance in ["order-1", "order-2"] {
            cluster.partition("gateway", instance)?;
        }
        let during = place().await;
        assert!(during.is_err(), "an order was placed across the partition: {during:?}");
        for instance in ["order-1", "order-2"] {
            cluster.repair("gateway", instance)?;
        }
        until_ok("an order after the partition healed", Duration::from_secs(20), place).await?;
        let refused = cluster.partition("gateway", "nobody").expect_err("no instance named nobody");
        assert!(refused.to_string().contains("nobody"), "{refused}");
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    cluster.shutdown().await;
    outcome
}
