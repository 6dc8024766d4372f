//! Real-transport throughput: lymph RPC over ZeroMQ against the raw `zeromq` crate, and events
//! through RabbitMQ.
//!
//! ```text
//! cargo run --release -p lymph --features app --example bench_real [calls] [events]
//! ```
//!
//! Prints, for one run: sequential RPC calls/s with p50/p99 latency and calls/s with 50 in
//! flight, Rust client → Rust echo over ZeroMQ; the same for a raw `zeromq` ROUTER round trip (the
//! baseline); events emitted/s and received/s through RabbitMQ on `127.0.0.1:5672`
//! (`scripts/infra.sh up`; the event part is skipped when RabbitMQ is not reachable).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use lymph::memory::{MemoryEvents, MemoryRegistry};
use lymph::transports::{AmqpConfig, AmqpEvents, ZmqRpc};
use lymph::{Container, Event, Result};
use zeromq::prelude::*;
use zeromq::{DealerSocket, RouterSocket, ZmqMessage};

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

/// The same shape of traffic on the bare `zeromq` crate: five frames out, five back, echoed by a
/// ROUTER, with no codec, dispatch or correlation.
async fn raw_zeromq(calls: usize) -> std::result::Result<Figures, Box<dyn std::error::Error>> {
    let mut server = RouterSocket::new();
    let endpoint = server.bind("tcp://127.0.0.1:0").await?.to_string();
    tokio::spawn(async move {
        while let Ok(message) = server.recv().await {
            if server.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut dealer = DealerSocket::new();
    dealer.connect(&endpoint).await?;
    let request = || {
        let mut message = ZmqMessage::from(Bytes::from_static(b"0123456789abcdef0123456789abcdef"));
        for frame in [&b"REQ"[..], b"echo.echo", b"\x82\xa7version\xc0\xa8trace_id\xc0", b"\x81\xa4text\xa5hello"] {
            message.push_back(Bytes::from_static(frame));
        }
        message
    };
    for _ in 0..1_000 {
        dealer.send(request()).await?;
        dealer.recv().await?;
    }

    let mut latencies = histogram();
    let started = Instant::now();
    for _ in 0..calls {
        let call = Instant::now();
        dealer.send(request()).await?;
        dealer.recv().await?;
        latencies.record(call.elapsed().as_nanos() as u64).ok();
    }
    let sequential = calls as f64 / started.elapsed().as_secs_f64();

    // A window of 50 requests in flight.
    let started = Instant::now();
    for _ in 0..IN_FLIGHT {
        dealer.send(request()).await?;
    }
    for sent in IN_FLIGHT..calls + IN_FLIGHT {
        dealer.recv().await?;
        if sent < calls {
            dealer.send(request()).await?;
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

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(50_000);
    let events: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(50_000);
    println!("{calls} calls, {events} events, on {} cores", std::thread::available_parallelism()?);

    let raw = raw_zeromq(calls).await?;
    raw.print("raw zeromq ROUTER");
    let lymph = lymph_rpc(calls).await?;
    lymph.print("lymph rpc over ZeroMQ");
    println!(
        "lymph / raw: sequential {:.2}x, {IN_FLIGHT} in flight {:.2}x",
        lymph.sequential / raw.sequential,
        lymph.concurrent / raw.concurrent
    );
    match rabbitmq_events(events).await {
        Ok((emitted, received)) => {
            println!("lymph events over RabbitMQ  emitted {emitted:>7.0} events/s  received {received:>7.0} events/s")
        }
        Err(error) => println!("events skipped: {error}"),
    }
    Ok(())
}
