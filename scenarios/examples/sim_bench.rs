//! Simulator speed: simulated RPC round trips per wall-clock second through lymph-rs, the same
//! for a bare turmoil TCP echo in the same run, and the wall time of one simulated hour of an
//! idle 10-service cluster with heartbeats.
//!
//! `cargo run --release -p scenarios --example sim_bench [round-trips]`

use std::time::{Duration, Instant};

use lymph::Container;
use lymph::testing::{Runner, World};
use scenarios::echo::{Echo, EchoClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Message latencies of both round-trip measurements (as in the stack's reference figures).
const MIN_LATENCY: Duration = Duration::from_micros(50);
const MAX_LATENCY: Duration = Duration::from_micros(200);

/// Round trips of 64 bytes over one turmoil TCP connection; returns round trips per wall second.
fn bare_turmoil(round_trips: usize) -> f64 {
    let mut sim = turmoil::Builder::new()
        .rng_seed(1)
        .simulation_duration(Duration::from_secs(86_400))
        .min_message_latency(MIN_LATENCY)
        .max_message_latency(MAX_LATENCY)
        .build();
    sim.host("server", || async {
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", 9000)).await?;
        loop {
            let (mut stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while stream.read_exact(&mut buf).await.is_ok() {
                    if stream.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    sim.client("client", async move {
        let mut stream = turmoil::net::TcpStream::connect(("server", 9000)).await?;
        let mut buf = [7u8; 64];
        for _ in 0..round_trips {
            stream.write_all(&buf).await?;
            stream.read_exact(&mut buf).await?;
        }
        Ok(())
    });
    let started = Instant::now();
    sim.run().expect("the bare simulation runs");
    round_trips as f64 / started.elapsed().as_secs_f64()
}

/// Sequential `echo.echo` calls from a client to one echo instance, through the simulated
/// registry and RPC transport; returns calls per wall second (set-up excluded).
fn lymph_calls(round_trips: usize) -> f64 {
    let runner = Runner::new("sim_bench::lymph_calls", "scenarios", "sim_bench")
        .duration(Duration::from_secs(86_400))
        .latency(MIN_LATENCY, MAX_LATENCY);
    let elapsed = std::rc::Rc::new(std::cell::Cell::new(Duration::ZERO));
    let measured = elapsed.clone();
    let report = runner.run_seed(1, &move |world: World| {
        let measured = measured.clone();
        async move {
            world.start("echo-1", || Container::builder().interface(Echo::default())).await?;
            let client = world.client().await?;
            let echo: EchoClient = client.client();
            echo.echo("warm".to_owned()).await?;
            let started = Instant::now();
            for _ in 0..round_trips {
                echo.echo("hello".to_owned()).await?;
            }
            measured.set(started.elapsed());
            Ok::<(), Box<dyn std::error::Error>>(())
        }
    });
    report.outcome.expect("the lymph simulation runs");
    round_trips as f64 / elapsed.get().as_secs_f64()
}

/// Ten services, each called once so that client and services heartbeat each other, then one
/// idle simulated hour; returns the wall time of the whole run.
fn idle_hour(tick: Duration) -> Duration {
    let runner =
        Runner::new("sim_bench::idle_hour", "scenarios", "sim_bench").duration(Duration::from_secs(3_700)).tick(tick);
    let started = Instant::now();
    let report = runner.run_seed(1, &|world: World| async move {
        for i in 0..10 {
            world.start(&format!("svc-{i}"), || Container::builder().interface(Echo::default())).await?;
        }
        let client = world.client().await?;
        let echo: EchoClient = client.client();
        for _ in 0..30 {
            echo.echo("hello".to_owned()).await?;
        }
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    report.outcome.expect("the idle simulation runs");
    started.elapsed()
}

fn main() {
    let round_trips: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let bare = bare_turmoil(round_trips);
    let lymph = lymph_calls(round_trips);
    println!("bare turmoil tcp echo: {bare:>9.0} round trips/s (wall)");
    println!("lymph-rs echo.echo:    {lymph:>9.0} round trips/s (wall), {:.1}x the bare cost", bare / lymph);
    for tick in [Duration::from_millis(10), Duration::from_millis(50)] {
        let wall = idle_hour(tick);
        println!("idle 10-service cluster, 1 simulated hour, tick {tick:?}: {:.1} s wall", wall.as_secs_f64());
    }
}
