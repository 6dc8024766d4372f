//! Real-transport throughput: lymph RPC over ZeroMQ against the raw `zeromq` crate, and events
//! through RabbitMQ.
//!
//! ```text
//! cargo run --release -p lymph --features app --example bench_real [calls] [events]
//! ```
//!
//! Prints, for one run: sequential RPC calls/s with p50/p99 latency and calls/s with 50 in
//! flight, Rust client → Rust echo over ZeroMQ; the same for a raw `zeromq` ROUTER round trip in
//! lymph's wire shape (the baseline); events emitted/s and received/s through RabbitMQ on
//! `127.0.0.1:5672` (`scripts/infra.sh up`; the event part is skipped when RabbitMQ is not
//! reachable). Client and server share one process and, by default, one multi-thread tokio
//! runtime; `LYMPH_BENCH_RUNTIME=current_thread` runs everything on one thread instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use lymph::memory::{MemoryEvents, MemoryRegistry};
use lymph::transports::{AmqpConfig, AmqpEvents, ZmqRpc};
use lymph::{Container, Event, Result};
use zeromq::prelude::*;
use zeromq::{RouterSocket, SocketOptions, ZmqMessage};

const IN_FLIGHT: usize = 50;

#[derive(Debug, Default)]
struct Echo;

#[lymph::interface(name = "echo")]
impl Echo {
    /// Returns `text`.
    #[rpc]
    async fn echo(&self, text: String) -> Result<String> {
        Ok(text)
    }
}

/// Counts the events it receives.
#[derive(Debug, Clone, Default)]
struct Counter {
    received: Arc<AtomicUsize>,
}

#[lymph::interface(name = "counter")]
impl Counter {
    /// Counts one event.
    #[event("bench.tick")]
    async fn on_tick(&self, _event: Event) -> Result<()> {
        self.received.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

struct Figures {
    sequential: f64,
    p50: Duration,
    p99: Duration,
    concurrent: f64,
}

impl Figures {
    fn print(&self, what: &str) {
        println!(
            "{what:<24} sequential {:>7.0} calls/s  p50 {:>6.1} µs  p99 {:>6.1} µs   {IN_FLIGHT} in flight {:>7.0} calls/s",
            self.sequential,
            self.p50.as_secs_f64() * 1e6,
            self.p99.as_secs_f64() * 1e6,
            self.concurrent
        );
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

async fn lymph_rpc(calls: usize) -> Result<Figures> {
    let registry = MemoryRegistry::new();
    let events = MemoryEvents::new();
    let service = Container::builder()
        .rpc(ZmqRpc::default())
        .registry(registry.clone())
        .events(events.clone())
        .interface(Echo)
        .start()
        .await?;
    let client = Container::builder().rpc(ZmqRpc::default()).registry(registry).events(events).start().await?;
    let echo: EchoClient = client.client();
    for _ in 0..1_000 {
        echo.echo("warm".to_owned()).await?;
    }

    let mut latencies = histogram();
    let started = Instant::now();
    for _ in 0..calls {
        let call = Instant::now();
        echo.echo("hello".to_owned()).await?;
        latencies.record(call.elapsed().as_nanos() as u64).ok();
    }
    let sequential = calls as f64 / started.elapsed().as_secs_f64();

    let per_task = calls / IN_FLIGHT;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let echo = echo.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                echo.echo("hello".to_owned()).await?;
            }
            Ok::<(), lymph::Error>(())
        }));
    }
    for task in tasks {
        task.await.map_err(lymph::Error::transport)??;
    }
    let concurrent = (per_task * IN_FLIGHT) as f64 / started.elapsed().as_secs_f64();
    client.stop().await;
    service.stop().await;
    Ok(Figures {
        sequential,
        p50: Duration::from_nanos(latencies.value_at_quantile(0.5)),
        p99: Duration::from_nanos(latencies.value_at_quantile(0.99)),
        concurrent,
    })
}

fn request() -> ZmqMessage {
    let mut message = ZmqMessage::from(Bytes::from_static(b"0123456789abcdef0123456789abcdef"));
    for frame in [&b"REQ"[..], b"echo.echo", b"\x82\xa7version\xc0\xa8trace_id\xc0", b"\x81\xa4text\xa5hello"] {
        message.push_back(Bytes::from_static(frame));
    }
    message
}

fn addressed(to: &str, mut message: ZmqMessage) -> ZmqMessage {
    message.push_front(Bytes::copy_from_slice(to.as_bytes()));
    message
}

fn router(identity: &str) -> RouterSocket {
    let mut options = SocketOptions::default();
    options.peer_identity(identity.parse().expect("a valid identity"));
    RouterSocket::with_options(options)
}

async fn bound_router() -> std::result::Result<(String, RouterSocket), Box<dyn std::error::Error>> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let mut socket = router(&endpoint);
    socket.bind(&endpoint).await?;
    Ok((endpoint, socket))
}

/// The baseline: lymph's wire shape on the bare `zeromq` crate. Each side binds a ROUTER and
/// sends from a connected ROUTER, both with the endpoint as identity; the server echoes every
/// request over its own connection, as lymph replies. Six frames each way, no codec, dispatch or
/// correlation.
async fn raw_zeromq(calls: usize) -> std::result::Result<Figures, Box<dyn std::error::Error>> {
    let (server_endpoint, mut server_inbox) = bound_router().await?;
    let (client_endpoint, mut client_inbox) = bound_router().await?;
    let mut server_out = router(&server_endpoint);
    server_out.connect(&client_endpoint).await?;
    tokio::spawn(async move {
        // Frame 0 is the sender's identity, which is where the reply goes.
        while let Ok(message) = server_inbox.recv().await {
            if server_out.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut client_out = router(&client_endpoint);
    client_out.connect(&server_endpoint).await?;
    for _ in 0..1_000 {
        client_out.send(addressed(&server_endpoint, request())).await?;
        client_inbox.recv().await?;
    }

    let mut latencies = histogram();
    let started = Instant::now();
    for _ in 0..calls {
        let call = Instant::now();
        client_out.send(addressed(&server_endpoint, request())).await?;
        client_inbox.recv().await?;
        latencies.record(call.elapsed().as_nanos() as u64).ok();
    }
    let sequential = calls as f64 / started.elapsed().as_secs_f64();

    // A window of 50 requests in flight.
    let started = Instant::now();
    for _ in 0..IN_FLIGHT {
        client_out.send(addressed(&server_endpoint, request())).await?;
    }
    for sent in IN_FLIGHT..calls + IN_FLIGHT {
        client_inbox.recv().await?;
        if sent < calls {
            client_out.send(addressed(&server_endpoint, request())).await?;
        }
    }
    let concurrent = calls as f64 / started.elapsed().as_secs_f64();
    Ok(Figures {
        sequential,
        p50: Duration::from_nanos(latencies.value_at_quantile(0.5)),
        p99: Duration::from_nanos(latencies.value_at_quantile(0.99)),
        concurrent,
    })
}

async fn rabbitmq_events(count: usize) -> Result<(f64, f64)> {
    let url = std::env::var("LYMPH_BENCH_AMQP").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let counter = Counter::default();
    let consumer = Container::builder()
        .rpc(ZmqRpc::default())
        .registry(MemoryRegistry::new())
        .events(AmqpEvents::connect(AmqpConfig::new(url.clone())).await?)
        .interface(counter.clone())
        .register(false)
        .start()
        .await?;
    let producer = Container::builder()
        .rpc(ZmqRpc::default())
        .registry(MemoryRegistry::new())
        .events(AmqpEvents::connect(AmqpConfig::new(url)).await?)
        .start()
        .await?;

    let started = Instant::now();
    let per_task = count / IN_FLIGHT;
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let producer = producer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                producer.emit("bench.tick", i).await?;
            }
            Ok::<(), lymph::Error>(())
        }));
    }
    for task in tasks {
        task.await.map_err(lymph::Error::transport)??;
    }
    let emitted = per_task * IN_FLIGHT;
    let emit_rate = emitted as f64 / started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    while counter.received.load(Ordering::Relaxed) < emitted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let received = counter.received.load(Ordering::Relaxed);
    let receive_rate = received as f64 / started.elapsed().as_secs_f64();
    if received < emitted {
        println!("only {received} of {emitted} events arrived within 60 s");
    }
    producer.stop().await;
    consumer.stop().await;
    Ok((emit_rate, receive_rate))
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(50_000);
    let events: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(50_000);
    let current_thread = std::env::var("LYMPH_BENCH_RUNTIME").is_ok_and(|r| r == "current_thread");
    let runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()?
    };
    println!(
        "{calls} calls, {events} events, {} cores, tokio {} runtime",
        std::thread::available_parallelism()?,
        if current_thread { "current-thread" } else { "multi-thread" }
    );
    runtime.block_on(run(calls, events))
}

async fn run(calls: usize, events: usize) -> std::result::Result<(), Box<dyn std::error::Error>> {
    // LYMPH_BENCH_PARTS=raw,lymph,events (the default) picks what runs, e.g. for `perf stat`.
    let parts = std::env::var("LYMPH_BENCH_PARTS").unwrap_or_else(|_| "raw,lymph,events".to_owned());
    let raw = if parts.contains("raw") { Some(raw_zeromq(calls).await?) } else { None };
    if let Some(raw) = &raw {
        raw.print("raw zeromq ROUTER pairs");
    }
    let lymph = if parts.contains("lymph") { Some(lymph_rpc(calls).await?) } else { None };
    if let Some(lymph) = &lymph {
        lymph.print("lymph rpc over ZeroMQ");
    }
    if let (Some(raw), Some(lymph)) = (&raw, &lymph) {
        println!(
            "lymph / raw: sequential {:.2}x, {IN_FLIGHT} in flight {:.2}x",
            lymph.sequential / raw.sequential,
            lymph.concurrent / raw.concurrent
        );
    }
    if !parts.contains("events") {
        return Ok(());
    }
    match rabbitmq_events(events).await {
        Ok((emitted, received)) => {
            println!("lymph events over RabbitMQ  emitted {emitted:>7.0} events/s  received {received:>7.0} events/s")
        }
        Err(error) => println!("events skipped: {error}"),
    }
    Ok(())
}
