//! Simulator speed: simulated RPC round trips per wall-clock second through lymph-rs, the same
//! for a bare turmoil TCP echo in the same run, and the wall time of one simulated hour of an
//! idle 10-service cluster with heartbeats.
//!
//! `cargo run --release -p scenarios --example sim_bench [round-trips] [calls|idle]`
//!
//! With `calls` or `idle`, only that half runs (for profiling one of them).

use std::time::{Duration, Instant};

use lymph::Container;
use lymph::testing::{Runner, World};
use scenarios::echo::{Echo, EchoClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Wall time and this thread's CPU time (user and system, from `/proc/thread-self/stat`, in
/// clock ticks of 10 ms) since it started: on a busy machine the CPU time is the steadier figure.
struct Stopwatch {
    wall: Instant,
    cpu: Duration,
}

impl Stopwatch {
    fn start() -> Self {
        Self { wall: Instant::now(), cpu: thread_cpu() }
    }

    /// (wall, cpu) elapsed.
    fn elapsed(&self) -> (Duration, Duration) {
        (self.wall.elapsed(), thread_cpu().saturating_sub(self.cpu))
    }
}

fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name and state.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Rates per wall second and per CPU second.
fn rates(n: usize, (wall, cpu): (Duration, Duration)) -> (f64, f64) {
    (n as f64 / wall.as_secs_f64(), n as f64 / cpu.as_secs_f64().max(0.01))
}

/// Message latencies of both round-trip measurements (as in the stack's reference figures).
const MIN_LATENCY: Duration = Duration::from_micros(50);
const MAX_LATENCY: Duration = Duration::from_micros(200);

/// Round trips of 64 bytes over one turmoil TCP connection, with `idle` more hosts that only
/// sleep (as the registry and broker hosts of a lymph world do between sessions' heartbeats);
/// returns round trips per wall and per CPU second.
fn bare_turmoil(round_trips: usize, idle: usize) -> (f64, f64) {
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
    for i in 0..idle {
        sim.host(format!("idle-{i}"), || async {
            std::future::pending::<()>().await;
            Ok(())
        });
    }
    sim.client("client", async move {
        let mut stream = turmoil::net::TcpStream::connect(("server", 9000)).await?;
        let mut buf = [7u8; 64];
        for _ in 0..round_trips {
            stream.write_all(&buf).await?;
            stream.read_exact(&mut buf).await?;
        }
        Ok(())
    });
    let watch = Stopwatch::start();
    sim.run().expect("the bare simulation runs");
    rates(round_trips, watch.elapsed())
}

/// Sequential `echo.echo` calls from a client to one echo instance, through the simulated
/// registry and RPC transport; returns calls per wall and per CPU second (set-up excluded).
fn lymph_calls(round_trips: usize) -> (f64, f64) {
    let runner = Runner::new("sim_bench::lymph_calls", "scenarios", "sim_bench")
        .duration(Duration::from_secs(86_400))
        .latency(MIN_LATENCY, MAX_LATENCY);
    let elapsed = std::rc::Rc::new(std::cell::Cell::new((Duration::ZERO, Duration::ZERO)));
    let measured = elapsed.clone();
    let report = runner.run_seed(1, &move |world: World| {
        let measured = measured.clone();
        async move {
            world.start("echo-1", || Container::builder().interface(Echo::default())).await?;
            let client = world.client().await?;
            let echo: EchoClient = client.client();
            echo.echo("warm".to_owned()).await?;
            let watch = Stopwatch::start();
            for _ in 0..round_trips {
                echo.echo("hello".to_owned()).await?;
            }
            measured.set(watch.elapsed());
            Ok::<(), Box<dyn std::error::Error>>(())
        }
    });
    report.outcome.expect("the lymph simulation runs");
    rates(round_trips, elapsed.get())
}

/// The floor of [`idle_hour`]: as many bare turmoil hosts as its world has (ten services, the
/// client, the registry, the broker), all sleeping, for one simulated hour; returns the wall and
/// CPU time.
fn bare_idle_hour(tick: Duration) -> (Duration, Duration) {
    let mut sim =
        turmoil::Builder::new().rng_seed(1).simulation_duration(Duration::from_secs(3_700)).tick_duration(tick).build();
    for i in 0..12 {
        sim.host(format!("idle-{i}"), || async {
            std::future::pending::<()>().await;
            Ok(())
        });
    }
    sim.client("client", async {
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        Ok(())
    });
    let watch = Stopwatch::start();
    sim.run().expect("the bare idle simulation runs");
    watch.elapsed()
}

/// Ten services, each called once so that client and services heartbeat each other, then one
/// idle simulated hour; returns the wall and CPU time of the whole run.
fn idle_hour(tick: Duration) -> (Duration, Duration) {
    let runner =
        Runner::new("sim_bench::idle_hour", "scenarios", "sim_bench").duration(Duration::from_secs(3_700)).tick(tick);
    let watch = Stopwatch::start();
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
    watch.elapsed()
}

fn main() {
    let round_trips: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let only = std::env::args().nth(2);
    if only.as_deref() != Some("idle") {
        let (bare, bare_cpu) = bare_turmoil(round_trips, 0);
        let (bare_4, bare_4_cpu) = bare_turmoil(round_trips, 2);
        let (lymph, lymph_cpu) = lymph_calls(round_trips);
        println!("round trips/s, per wall second and per CPU second:");
        println!("  bare turmoil tcp echo, 2 hosts:    {bare:>8.0} wall  {bare_cpu:>8.0} cpu");
        println!("  bare turmoil tcp echo, 4 hosts:    {bare_4:>8.0} wall  {bare_4_cpu:>8.0} cpu  (2 of them idle)");
        println!(
            "  lymph-rs echo.echo, 4 hosts:       {lymph:>8.0} wall  {lymph_cpu:>8.0} cpu  (client, echo, registry, broker)"
        );
        println!(
            "  lymph-rs cost: {:.1}x bare 2 hosts, {:.1}x bare 4 hosts (wall); {:.1}x, {:.1}x (cpu)",
            bare / lymph,
            bare_4 / lymph,
            bare_cpu / lymph_cpu,
            bare_4_cpu / lymph_cpu
        );
    }
    if only.as_deref() == Some("calls") {
        return;
    }
    for tick in [Duration::from_millis(10), Duration::from_millis(50)] {
        let (bare_wall, bare_cpu) = bare_idle_hour(tick);
        let (wall, cpu) = idle_hour(tick);
        println!("1 simulated hour, tick {tick:?}:");
        println!(
            "  bare turmoil, 13 sleeping hosts:                 {:>5.1} s wall  {:>5.1} s cpu",
            bare_wall.as_secs_f64(),
            bare_cpu.as_secs_f64()
        );
        println!(
            "  idle lymph-rs cluster, 10 services, heartbeats:  {:>5.1} s wall  {:>5.1} s cpu",
            wall.as_secs_f64(),
            cpu.as_secs_f64()
        );
    }
}
