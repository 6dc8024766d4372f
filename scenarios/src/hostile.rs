//! Hostile input: what a peer on the network may send a running lymph-rs service, sent to it.
//!
//! [`run`] attacks the endpoints of one running instance on loopback, bounded in count
//! ([`Budget::rounds`]) and time ([`Budget::time`]), and returns a [`Report`]: the inputs sent per
//! family, the probes and their latencies, the metrics series counted by `lymph.get_metrics`,
//! and the instance's resident memory before, at its peak and after, when its pid is known.
//! Between two families, and at the end, a normal `echo.upper` call through a lymph client (a
//! probe) must be answered. The guarantee this pins: nothing a peer sends takes the service down,
//! and its memory stays bounded.
//!
//! The families, each run once per round:
//!
//! - `zmtp`: raw TCP to the RPC endpoint: frame headers declaring 1 TiB (and `u64::MAX`) before
//!   and after the handshake, as a message and as a command; a frame just over the 64 MiB limit
//!   and a message of two real 33 MiB frames; 2 MB of empty frames with MORE set that never end
//!   the message; random bytes, alone and after a greeting or a whole handshake; truncated and
//!   invalid greetings (signature, version, mechanism); READY commands with a wrong socket type,
//!   no socket type, a 300-byte identity or properties longer than the command; connections that
//!   open and vanish, and connections left half-open until the family ends.
//! - `rpc`: lymph messages from ZeroMQ ROUTER sockets with an identity, as lymph sends them:
//!   1 to 12 frames but 5, random bytes and random msgpack as headers and body, arguments of the
//!   wrong type, invalid UTF-8 in every text frame and in msgpack strings, values nested 100 000
//!   deep, containers and strings declaring 4 G entries in a few bytes, many made-up subjects
//!   (and versions), replies nobody asked for, and requests from many distinct source endpoints
//!   that cannot be reached back (refused ports, endpoints that do not parse, other transports).
//! - `readers`: peers that complete the handshake and never read: the service's replies to them
//!   (`echo.echo` with a 256 KiB text) fill the TCP buffers and its send queue, up to its bound.
//! - `amqp`: with [`Target::amqp`], events published to the `lymph` exchange with the routing
//!   keys of [`Target::event_types`]: random bytes, empty, truncated and nested msgpack, maps
//!   that are not events, and well-formed events of many made-up types.
//!
//! The metrics check: every round makes up new subjects and event types, so when the series
//! `lymph.get_metrics` returns after the last round outnumber those after the first, made-up
//! names add series ([`Report::problems`]).
//!
//! # Figures
//!
//! 2026-12-04, a 2-core machine shared with other builds, debug build, one `scenarios instance`
//! with the echo and listener interfaces on the local ZooKeeper and RabbitMQ, `scenarios hostile
//! --endpoint tcp://127.0.0.1:PORT --pid PID --amqp URL --rounds 40 --seconds 300`: 40 rounds in
//! 156.7 s, 54 720 inputs (zmtp 7 320 connections, 2.9 GB, 1 078 closed by the service at once;
//! rpc 22 680 messages; readers 12 000 requests for 3.1 GB of replies never read; amqp 12 720
//! events), 201 of 201 probes answered (median 2.8 ms, slowest 16.3 ms), 81 metrics series after
//! the first round and at the end, RSS 39.6 MiB cold before, 129.5 MiB at the peak, 72.5 MiB
//! after; 20 more rounds on the same process left it at 70.0 MiB (what the allocator keeps of
//! the peak, not growth).

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use lymph::Value;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeromq::prelude::*;
use zeromq::{RouterSocket, SocketOptions, ZmqMessage};

/// The service under attack.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its RPC endpoint, `tcp://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Its process id, to read its resident memory from `/proc/<pid>/status`.
    pub pid: Option<u32>,
    /// The AMQP URL (with its virtual host) of the broker it consumes from; `None` skips `amqp`.
    pub amqp: Option<String>,
    /// The event types it subscribes to, the routing keys of the `amqp` family.
    pub event_types: Vec<String>,
}

impl Target {
    /// The service at `endpoint`, no pid, no broker; the event types of the talk's listener
    /// (`uppercase_transform_finished`, and `interop.hostile` for its `interop.#`).
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            pid: None,
            amqp: None,
            event_types: vec![crate::echo::UPPERCASED.to_owned(), "interop.hostile".to_owned()],
        }
    }
}

/// How much to send.
#[derive(Debug, Clone)]
pub struct Budget {
    /// How many times every family runs (each round makes up new names).
    pub rounds: u32,
    /// When to stop: no family starts, and no loop goes on, past this much time.
    pub time: Duration,
    /// How long to wait, after the last attacking connection closed, before the last RSS reading.
    pub settle: Duration,
    /// The seed of the random inputs.
    pub seed: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self { rounds: 2, time: Duration::from_secs(30), settle: Duration::from_secs(2), seed: 0 }
    }
}

/// What one family sent.
#[derive(Debug, Clone, Default)]
pub struct Family {
    /// The family's name: `zmtp`, `rpc`, `readers` or `amqp`.
    pub name: &'static str,
    /// The inputs sent: connections, messages or events.
    pub inputs: u64,
    /// The bytes sent.
    pub bytes: u64,
    /// Raw connections the service closed within a second of a bad input (`zmtp`).
    pub closed_by_service: u64,
    /// The time spent on it, all rounds together.
    pub elapsed: Duration,
}

/// One probe: a normal `echo.upper` call.
#[derive(Debug, Clone)]
pub struct Probe {
    /// What it followed, e.g. `round 1 zmtp`.
    pub after: String,
    /// How long the answer took, or why there was none.
    pub outcome: Result<Duration, String>,
}

/// What [`run`] sent and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The families, in the order they first ran.
    pub families: Vec<Family>,
    /// Every probe, in order.
    pub probes: Vec<Probe>,
    /// The service's resident memory before the first input, in KiB.
    pub rss_before_kib: Option<u64>,
    /// The largest reading between families, in KiB.
    pub rss_peak_kib: Option<u64>,
    /// After every attacking connection closed and [`Budget::settle`], in KiB.
    pub rss_after_kib: Option<u64>,
    /// `lymph.get_metrics` series before the first input.
    pub series_before: Option<usize>,
    /// The series after the first round.
    pub series_after_first_round: Option<usize>,
    /// The series at the end.
    pub series_after: Option<usize>,
    /// Rounds completed.
    pub rounds: u32,
    /// Whether the time budget ended the run early.
    pub out_of_time: bool,
    /// Whether the process was gone at some reading (only with a pid).
    pub exited: bool,
    /// The seed of the random inputs.
    pub seed: u64,
    /// What went wrong on the attacking side without ending the run (the broker was restarted).
    pub notes: Vec<String>,
    /// The whole run.
    pub elapsed: Duration,
}

impl Report {
    /// The inputs of every family.
    pub fn inputs(&self) -> u64 {
        self.families.iter().map(|family| family.inputs).sum()
    }

    /// Whether every probe was answered.
    pub fn probes_answered(&self) -> bool {
        self.probes.iter().all(|probe| probe.outcome.is_ok())
    }

    /// The slowest answered probe.
    pub fn slowest_probe(&self) -> Option<Duration> {
        self.probes.iter().filter_map(|probe| probe.outcome.as_ref().ok()).max().copied()
    }

    /// What broke the guarantee: an exit, a probe not answered (or slower than `max_latency`),
    /// metrics series that grew with made-up names. Memory is judged by the caller, who knows
    /// what to compare (see [`Report::rss_growth`]).
    pub fn problems(&self, max_latency: Duration) -> Vec<String> {
        let mut problems = Vec::new();
        if self.exited {
            problems.push("the process exited".to_owned());
        }
        for probe in &self.probes {
            match &probe.outcome {
                Err(error) => problems.push(format!("the probe after {} was not answered: {error}", probe.after)),
                Ok(latency) if *latency > max_latency => {
                    problems.push(format!("the probe after {} took {latency:?}", probe.after));
                }
                Ok(_) => {}
            }
        }
        if let (Some(first), Some(last)) = (self.series_after_first_round, self.series_after)
            && last > first
        {
            problems
                .push(format!("made-up names added metrics series: {first} after the first round, {last} at the end"));
        }
        problems
    }

    /// RSS after over RSS before, e.g. `1.05` for 5 % more.
    pub fn rss_growth(&self) -> Option<f64> {
        let (before, after) = (self.rss_before_kib?, self.rss_after_kib?);
        #[allow(clippy::cast_precision_loss)]
        Some(after as f64 / before.max(1) as f64)
    }

    fn family(&mut self, name: &'static str) -> &mut Family {
        if let Some(at) = self.families.iter().position(|family| family.name == name) {
            return &mut self.families[at];
        }
        self.families.push(Family { name, ..Family::default() });
        self.families.last_mut().expect("just pushed")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kib =
            |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0));
        let count = |value: Option<usize>| value.map_or_else(|| "-".to_owned(), |n| n.to_string());
        writeln!(
            f,
            "{} rounds in {:.1} s (seed {}){}",
            self.rounds,
            self.elapsed.as_secs_f64(),
            self.seed,
            if self.out_of_time { ", stopped by the time budget" } else { "" }
        )?;
        writeln!(f, "family    inputs        bytes  closed by service   time")?;
        for family in &self.families {
            writeln!(
                f,
                "{:<8} {:>7} {:>12} {:>18} {:>6.1} s",
                family.name,
                family.inputs,
                family.bytes,
                family.closed_by_service,
                family.elapsed.as_secs_f64()
            )?;
        }
        writeln!(f, "total    {:>7}", self.inputs())?;
        let answered: Vec<Duration> = self.probes.iter().filter_map(|p| p.outcome.as_ref().ok().copied()).collect();
        let mut sorted = answered.clone();
        sorted.sort();
        let median = sorted.get(sorted.len() / 2).map_or_else(|| "-".to_owned(), |d| format!("{d:.1?}"));
        let slowest = sorted.last().map_or_else(|| "-".to_owned(), |d| format!("{d:.1?}"));
        writeln!(
            f,
            "probes: {} of {} answered, median {median}, slowest {slowest}",
            answered.len(),
            self.probes.len()
        )?;
        for probe in self.probes.iter().filter(|probe| probe.outcome.is_err()) {
            writeln!(f, "  NOT ANSWERED after {}: {}", probe.after, probe.outcome.as_ref().unwrap_err())?;
        }
        writeln!(
            f,
            "rss: before {}, peak {}, after {}{}",
            kib(self.rss_before_kib),
            kib(self.rss_peak_kib),
            kib(self.rss_after_kib),
            self.rss_growth().map_or_else(String::new, |g| format!(" ({:+.1} %)", (g - 1.0) * 100.0))
        )?;
        writeln!(
            f,
            "metrics series: before {}, after the first round {}, at the end {}",
            count(self.series_before),
            count(self.series_after_first_round),
            count(self.series_after)
        )?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        if self.exited {
            writeln!(f, "THE PROCESS EXITED")?;
        }
        Ok(())
    }
}

/// The resident memory of process `pid` in KiB (`VmRSS` in `/proc/<pid>/status`), `None` when it
/// is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Attacks `target` as the module docs say, within `budget`, and reports.
///
/// # Errors
///
/// Only when the attack cannot begin: the probing client does not start, or the first probe
/// is not answered (nothing to attack). What the service does under attack is in the report.
pub async fn run(target: &Target, budget: &Budget) -> anyhow::Result<Report> {
    let started = Instant::now();
    let deadline = started + budget.time;
    let mut attack = Attack {
        target: target.clone(),
        rng: StdRng::seed_from_u64(budget.seed),
        deadline,
        report: Report { seed: budget.seed, ..Report::default() },
        round: 0,
        probe: Prober::start(&target.endpoint).await?,
    };
    attack.probe.upper().await.with_context(|| format!("no answer from {} before the attack", target.endpoint))?;
    // Twice: the first call of `lymph.get_metrics` adds its own series.
    attack.probe.series().await?;
    attack.report.series_before = Some(attack.probe.series().await?);
    attack.report.rss_before_kib = target.pid.and_then(rss_kib);
    attack.report.rss_peak_kib = attack.report.rss_before_kib;

    'rounds: for round in 1..=budget.rounds.max(1) {
        attack.round = round;
        for family in ["zmtp", "rpc", "readers", "amqp"] {
            if Instant::now() >= deadline {
                attack.report.out_of_time = true;
                break 'rounds;
            }
            if family == "amqp" && target.amqp.is_none() {
                continue;
            }
            let family_started = Instant::now();
            let outcome = match family {
                "zmtp" => attack.zmtp().await,
                "rpc" => attack.rpc().await,
                "readers" => attack.readers().await,
                _ => attack.amqp().await,
            };
            let elapsed = family_started.elapsed();
            attack.report.family(family).elapsed += elapsed;
            match outcome {
                // The broker is shared: another user may restart it. That is no finding about
                // the target, whose probes say whether it copes.
                Err(error) if family == "amqp" => attack.report.notes.push(format!("round {round} amqp: {error:#}")),
                outcome => outcome.with_context(|| format!("round {round}, {family}"))?,
            }
            attack.check(&format!("round {round} {family}")).await;
        }
        attack.report.rounds = round;
        if round == 1 {
            attack.report.series_after_first_round = attack.probe.series().await.ok();
        }
    }
    tokio::time::sleep(budget.settle).await;
    attack.check("the end").await;
    attack.report.rss_after_kib = target.pid.and_then(rss_kib);
    attack.report.series_after = attack.probe.series().await.ok();
    if budget.rounds < 2 || attack.report.rounds < 2 {
        attack.report.series_after_first_round = None;
    }
    attack.probe.client.stop().await;
    attack.report.elapsed = started.elapsed();
    Ok(attack.report)
}

/// A lymph client that calls the target.
struct Prober {
    client: lymph::Container,
    endpoint: String,
}

impl Prober {
    async fn start(endpoint: &str) -> anyhow::Result<Self> {
        let client = lymph::Container::builder()
            .rpc(lymph::transports::ZmqRpc::default())
            .start()
            .await
            .context("a lymph client to probe with")?;
        Ok(Self { client, endpoint: endpoint.to_owned() })
    }

    /// `echo.upper`, answered within 2 s: its latency.
    async fn upper(&self) -> anyhow::Result<Duration> {
        let text = format!("probe {:08x}", rand::random::<u32>());
        let started = Instant::now();
        let echo = self.client.proxy(&self.endpoint).namespace("echo").timeout(Duration::from_secs(2));
        let upper: String = echo.call("upper", &Value::map([("text", text.as_str())])).await?;
        anyhow::ensure!(upper == text.to_uppercase(), "echo.upper answered {upper:?} to {text:?}");
        Ok(started.elapsed())
    }

    /// How many series `lymph.get_metrics` returns.
    async fn series(&self) -> anyhow::Result<usize> {
        let lymph = self.client.proxy(&self.endpoint).namespace("lymph").timeout(Duration::from_secs(2));
        let series: Value = lymph.call("get_metrics", &Value::map::<&str, Value>([])).await?;
        series.as_array().map(<[Value]>::len).context("lymph.get_metrics did not answer a list")
    }
}

struct Attack {
    target: Target,
    rng: StdRng,
    deadline: Instant,
    report: Report,
    round: u32,
    probe: Prober,
}

/// How long to wait for the service to close a connection after a bad input.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

impl Attack {
    fn out_of_time(&self) -> bool {
        Instant::now() >= self.deadline
    }

    fn count(&mut self, family: &'static str, inputs: u64, bytes: usize) {
        let family = self.report.family(family);
        family.inputs += inputs;
        family.bytes += bytes as u64;
    }

    /// A probe, the process's memory and whether it still runs.
    async fn check(&mut self, after: &str) {
        let outcome = self.probe.upper().await.map_err(|error| format!("{error:#}"));
        self.report.probes.push(Probe { after: after.to_owned(), outcome });
        if let Some(pid) = self.target.pid {
            match rss_kib(pid) {
                Some(rss) => self.report.rss_peak_kib = self.report.rss_peak_kib.max(Some(rss)),
                None => self.report.exited = true,
            }
        }
    }

    fn address(&self) -> &str {
        self.target.endpoint.trim_start_matches("tcp://")
    }

    /// Connects, writes `bytes` and, when `wait` says so, waits up to [`CLOSE_WAIT`] for the
    /// service to close the connection; counts one `zmtp` input.
    async fn raw(&mut self, bytes: &[u8], wait: bool) -> anyhow::Result<()> {
        let mut stream = TcpStream::connect(self.address()).await.context("connecting to the RPC endpoint")?;
        // The service may close while this is written: that is an answer, not an error.
        let _ = stream.write_all(bytes).await;
        self.count("zmtp", 1, bytes.len());
        if wait && closed_within(&mut stream, CLOSE_WAIT).await {
            self.report.family("zmtp").closed_by_service += 1;
        }
        Ok(())
    }

    async fn zmtp(&mut self) -> anyhow::Result<()> {
        let identity = format!("tcp://127.0.0.1:{}", 1 + self.round % 1000);
        // Frame headers declaring 1 TiB and u64::MAX, before and after the handshake.
        let mut before = greeting();
        before.extend(long_frame_header(1 << 40, false));
        self.raw(&before, true).await?;
        for (len, command) in [(1 << 40, false), (1 << 40, true), (u64::MAX, false), (u64::MAX, true)] {
            let mut after = handshake(&identity);
            after.extend(long_frame_header(len, command));
            self.raw(&after, true).await?;
        }
        // Just over the 64 MiB limit, declared; then two real frames of 33 MiB in one message.
        let limit = lymph::rpc::DEFAULT_MAX_MESSAGE_SIZE as u64;
        let mut over = handshake(&identity);
        over.extend(long_frame_header(limit + 1, false));
        over.extend(std::iter::repeat_n(b'x', 1 << 16));
        self.raw(&over, true).await?;
        let frame = vec![b'y'; 33 << 20];
        let mut two = handshake(&identity);
        for _ in 0..2 {
            two.push(0x03);
            two.extend_from_slice(&(frame.len() as u64).to_be_bytes());
            two.extend_from_slice(&frame);
        }
        self.raw(&two, true).await?;
        drop(two);
        // 2 MB of empty frames with MORE set: a message that never ends.
        let mut empties = handshake(&identity);
        for _ in 0..1_000_000 {
            empties.extend([0x01, 0x00]);
        }
        self.raw(&empties, true).await?;
        drop(empties);
        if self.out_of_time() {
            return Ok(());
        }
        // Random bytes: alone, after a greeting, after a whole handshake.
        for i in 0..48 {
            let len = self.rng.random_range(1..8192);
            let mut noise = vec![0u8; len];
            self.rng.fill(&mut noise[..]);
            let bytes = match i % 3 {
                0 => noise,
                1 => [greeting(), noise].concat(),
                _ => [handshake(&identity), noise].concat(),
            };
            self.raw(&bytes, i % 8 == 0).await?;
        }
        // Truncated greetings, then gone.
        for _ in 0..16 {
            let cut = self.rng.random_range(0..64);
            self.raw(&greeting()[..cut], false).await?;
        }
        // Invalid greetings and handshakes.
        let mut bad = Vec::new();
        for (at, byte) in [(0, 0x00), (9, 0x00), (10, 2), (10, 0), (12, b'P'), (12, b'C'), (32, 1)] {
            let mut greeting = greeting();
            greeting[at] = byte;
            bad.push([greeting, ready("ROUTER", &identity)].concat());
        }
        for socket_type in ["PUB", "SUB", "NOPE", ""] {
            bad.push([greeting(), ready(socket_type, &identity)].concat());
        }
        bad.push([greeting(), ready("ROUTER", &"i".repeat(300))].concat());
        let mut no_type = greeting();
        no_type.extend(command(b"READY", &[]));
        bad.push(no_type);
        let mut overlong = greeting();
        // A property whose value length runs past the command's end.
        let mut body = vec![5];
        body.extend_from_slice(b"READY");
        body.push(11);
        body.extend_from_slice(b"Socket-Type");
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        body.extend_from_slice(b"ROUTER");
        overlong.extend([0x04, u8::try_from(body.len()).expect("short")]);
        overlong.extend(body);
        bad.push(overlong);
        let mut unknown_command = greeting();
        unknown_command.extend(command(b"HOSTILE", &[]));
        bad.push(unknown_command);
        for bytes in bad {
            self.raw(&bytes, true).await?;
        }
        // Connections that open and vanish, and connections left half-open for a while.
        for _ in 0..32 {
            drop(TcpStream::connect(self.address()).await?);
            self.count("zmtp", 1, 0);
        }
        let mut held = Vec::new();
        for i in 0..64 {
            let mut stream = TcpStream::connect(self.address()).await?;
            let cut = i % 64;
            let _ = stream.write_all(&greeting()[..cut]).await;
            self.count("zmtp", 1, cut);
            held.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(held);
        Ok(())
    }

    /// A ROUTER socket with `identity`, connected to the target.
    async fn router(&self, identity: &[u8]) -> anyhow::Result<RouterSocket> {
        let mut options = SocketOptions::default();
        options.peer_identity(identity.to_vec().try_into().context("a ZeroMQ identity")?);
        let mut socket = RouterSocket::with_options(options);
        tokio::time::timeout(Duration::from_secs(2), socket.connect(&self.target.endpoint))
            .await
            .context("connecting a ROUTER socket: no handshake within 2 s")?
            .context("connecting a ROUTER socket")?;
        Ok(socket)
    }

    /// Sends `frames` to the target from `socket`, addressed as lymph addresses them.
    async fn send(&mut self, socket: &mut RouterSocket, frames: Vec<Bytes>) -> anyhow::Result<()> {
        self.send_as("rpc", socket, frames).await
    }

    /// [`Attack::send`], counted in `family`.
    async fn send_as(
        &mut self,
        family: &'static str,
        socket: &mut RouterSocket,
        frames: Vec<Bytes>,
    ) -> anyhow::Result<()> {
        let size: usize = frames.iter().map(Bytes::len).sum();
        let mut message = ZmqMessage::from(self.target.endpoint.clone());
        for frame in frames {
            message.push_back(frame);
        }
        tokio::time::timeout(Duration::from_secs(5), socket.send(message))
            .await
            .context("a send to the target did not finish within 5 s")?
            .context("sending to the target")?;
        self.count(family, 1, size);
        Ok(())
    }

    async fn rpc(&mut self) -> anyhow::Result<()> {
        // Replies come back to a bound socket of ours, which drops them.
        let mut home = RouterSocket::new();
        let home_endpoint = home.bind("tcp://127.0.0.1:0").await?.to_string();
        let drain = tokio::spawn(async move { while home.recv().await.is_ok() {} });
        let mut socket = self.router(home_endpoint.as_bytes()).await?;
        let round = self.round;
        let upper = || request_frames("echo.upper", &Value::map([("text", "hostile")]));

        // Wrong frame counts.
        for count in (1..=12).filter(|count| *count != 5) {
            let frames: Vec<Bytes> = upper().into_iter().cycle().take(count).collect();
            self.send(&mut socket, frames).await?;
        }
        // Random bytes and random msgpack as headers and body.
        for i in 0..64 {
            let mut frames = upper();
            let len = self.rng.random_range(0..512);
            let mut noise = vec![0u8; len];
            self.rng.fill(&mut noise[..]);
            frames[3 + i % 2] = Bytes::from(noise);
            self.send(&mut socket, frames).await?;
            let mut frames = upper();
            let value = random_msgpack(&mut self.rng, 0);
            frames[if i % 4 == 0 { 3 } else { 4 }] = Bytes::from(value);
            self.send(&mut socket, frames).await?;
        }
        // Arguments and headers of the wrong type.
        let wrong: Vec<(Value, Value)> = vec![
            (Value::map([("text", 5)]), rpc_headers()),
            (Value::map([("text", Value::Array(vec![Value::Nil]))]), rpc_headers()),
            (Value::map([("text", Value::Bin(vec![0xff; 8]))]), rpc_headers()),
            (Value::map([("txt", "x")]), rpc_headers()),
            (Value::map([("text", "x"), ("extra", "y")]), rpc_headers()),
            (Value::Array(vec![Value::from("x")]), rpc_headers()),
            (Value::Nil, rpc_headers()),
            (Value::from(1.5), rpc_headers()),
            (Value::map([("text", "x")]), Value::Array(vec![])),
            (Value::map([("text", "x")]), Value::Map(vec![(Value::Int(1), Value::Int(2))])),
            (Value::map([("text", "x")]), Value::map([("version", 7)])),
            (Value::map([("text", "x")]), Value::map([("trace_id", Value::map([("a", 1)]))])),
            (Value::map([("text", "x")]), Value::map([("version", "not a version")])),
            (Value::map([("text", "x")]), Value::map([("version", "99.0")])),
        ];
        for (body, headers) in wrong {
            let frames = vec![
                Bytes::from(new_id()),
                Bytes::from_static(b"REQ"),
                Bytes::from_static(b"echo.upper"),
                Bytes::from(headers.to_msgpack()),
                Bytes::from(body.to_msgpack()),
            ];
            self.send(&mut socket, frames).await?;
        }
        // Invalid UTF-8 in every text frame, in a msgpack string, in a header key.
        for at in 0..3 {
            let mut frames = upper();
            let mut bad = frames[at].to_vec();
            bad.extend_from_slice(&[0xff, 0xfe, 0xc0]);
            frames[at] = Bytes::from(bad);
            self.send(&mut socket, frames).await?;
        }
        let mut bad_str = vec![0x81, 0xa4];
        bad_str.extend_from_slice(b"text");
        bad_str.extend_from_slice(&[0xa3, 0xff, 0xfe, 0xc0]);
        let mut bad_key = vec![0x81, 0xa3, 0xff, 0xfe, 0xc0, 0xc0];
        for (at, bytes) in [(4, bad_str.clone()), (3, bad_key.clone()), (4, std::mem::take(&mut bad_key))] {
            let mut frames = upper();
            frames[at] = Bytes::from(bytes);
            self.send(&mut socket, frames).await?;
        }
        // Deep nesting, and containers and strings declaring 4 G entries in a few bytes.
        let deep_array = [vec![0x91; 100_000], vec![0xc0]].concat();
        let deep_map = [[0x81, 0xa1, b'k'].repeat(50_000), vec![0xc0]].concat();
        let mut deep_text = vec![0x81, 0xa4];
        deep_text.extend_from_slice(b"text");
        deep_text.extend_from_slice(&deep_array);
        let declared: Vec<Vec<u8>> = [0xdd, 0xdf, 0xdb, 0xc6, 0xc9]
            .into_iter()
            .map(|marker| {
                let mut bytes = vec![marker];
                bytes.extend_from_slice(&u32::MAX.to_be_bytes());
                bytes.push(0x01);
                bytes
            })
            .chain([vec![0xcb, 0x00], vec![0xd9], vec![0xc7, 0xff], vec![0xc1]])
            .collect();
        for bytes in [deep_array, deep_map, deep_text].into_iter().chain(declared) {
            for at in [3, 4] {
                let mut frames = upper();
                frames[at] = Bytes::from(bytes.clone());
                self.send(&mut socket, frames).await?;
            }
        }
        // Made-up subjects, many distinct ones: they must add no metrics series.
        for i in 0..200 {
            let tag: u32 = self.rng.random();
            let subject = match i % 8 {
                0 => format!("echo.hostile_{round}_{i}_{tag:x}"),
                1 => format!("hostile{round}x{i}x{tag:x}.upper"),
                2 => format!("nodot{round}{i}{tag:x}"),
                3 => format!("lymph.hostile_{round}_{i}_{tag:x}"),
                4 => format!("echo.{}{tag:x}", "m".repeat(1000)),
                5 => format!("{round}.{i}.{tag:x}."),
                6 => format!(".{tag:x}"),
                _ => format!("echo.upper.{tag:x}"),
            };
            let frames = request_frames(&subject, &Value::map([("text", "x")]));
            self.send(&mut socket, frames).await?;
        }
        // Replies nobody asked for.
        for i in 0..64 {
            let kind = ["REP", "ACK", "NACK", "ERROR", "REQUEST", "rep"][i % 6];
            let subject = if i % 2 == 0 { new_id() } else { format!("{:x}", self.rng.random::<u64>()) };
            let frames = vec![
                Bytes::from(new_id()),
                Bytes::from(kind),
                Bytes::from(subject),
                Bytes::from(rpc_headers().to_msgpack()),
                Bytes::from(Value::from("stray").to_msgpack()),
            ];
            self.send(&mut socket, frames).await?;
        }
        drop(socket);
        // Requests from source endpoints that cannot be reached back, many distinct ones.
        let refused = free_port();
        let mut sockets = Vec::new();
        for i in 0..120u32 {
            if self.out_of_time() {
                break;
            }
            let tag: u32 = self.rng.random();
            let identity = match i % 6 {
                0 => format!("tcp://127.0.0.1:{refused}"),
                1 => format!("tcp://127.0.0.{}:{}", 2 + i % 200, 1 + tag % 60000),
                2 => format!("not an endpoint {round} {i} {tag:x}"),
                3 => format!("ipc:///nonexistent/lymph-hostile/{round}/{i}/{tag:x}"),
                4 => format!("tcp://127.0.0.1:{}", 70000 + tag % 1000),
                _ => format!("udp://127.0.0.1:{}", 1 + tag % 60000),
            };
            let mut socket = self.router(identity.as_bytes()).await?;
            self.send(&mut socket, upper()).await?;
            sockets.push(socket);
            if sockets.len() >= 30 {
                sockets.clear();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(sockets);
        drain.abort();
        Ok(())
    }

    async fn readers(&mut self) -> anyhow::Result<()> {
        const DEAF: usize = 3;
        const REQUESTS: usize = 100;
        const BODY: usize = 256 << 10;
        let text = "r".repeat(BODY);
        let mut deaf = Vec::new();
        for _ in 0..DEAF {
            deaf.push(Deaf::start().await?);
        }
        // The sockets that send the requests are kept until the deaf peers go, so that every
        // request arrives.
        let mut sockets = Vec::new();
        for peer in &deaf {
            let mut socket = self.router(peer.endpoint.as_bytes()).await?;
            for _ in 0..REQUESTS {
                let frames = request_frames("echo.echo", &Value::map([("text", text.as_str())]));
                self.send_as("readers", &mut socket, frames).await?;
            }
            sockets.push(socket);
        }
        // The service must serve others while its replies to the deaf peers wait.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.check(&format!("round {} readers, while they hold", self.round)).await;
        for peer in deaf {
            peer.stop().await;
        }
        drop(sockets);
        Ok(())
    }

    async fn amqp(&mut self) -> anyhow::Result<()> {
        use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
        use lapin::{BasicProperties, Connection, ConnectionProperties};

        let url = self.target.amqp.clone().context("no AMQP URL")?;
        let connection =
            tokio::time::timeout(Duration::from_secs(5), Connection::connect(&url, ConnectionProperties::default()))
                .await
                .context("RabbitMQ did not answer within 5 s")?
                .with_context(|| format!("connecting to {url}"))?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        let round = self.round;
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        for _ in 0..32 {
            let len = self.rng.random_range(0..1024);
            let mut noise = vec![0u8; len];
            self.rng.fill(&mut noise[..]);
            bodies.push(noise);
        }
        for _ in 0..16 {
            bodies.push(random_msgpack(&mut self.rng, 0));
        }
        let event = |event_type: Value, headers: Value, body: Value| {
            Value::map([("type", event_type), ("headers", headers), ("body", body), ("source", Value::from("hostile"))])
                .to_msgpack()
        };
        let good = event(Value::from("x"), Value::map::<&str, Value>([]), Value::Nil);
        bodies.extend([
            Vec::new(),
            good[..good.len() / 2].to_vec(),
            Value::from("not a map").to_msgpack(),
            Value::Array(vec![Value::from("type")]).to_msgpack(),
            Value::map([("body", 1)]).to_msgpack(),
            event(Value::Int(5), Value::map::<&str, Value>([]), Value::Nil),
            event(Value::from("x"), Value::Array(vec![]), Value::Nil),
            event(Value::from("x"), Value::Map(vec![(Value::Int(1), Value::Int(1))]), Value::Nil),
            event(Value::from("x"), Value::map([("retry_count", "many")]), Value::Nil),
            event(Value::from("x"), Value::map([("trace_id", Value::map([("a", 1)]))]), Value::Nil),
            [vec![0x91; 100_000], vec![0xc0]].concat(),
            [vec![0xdd], u32::MAX.to_be_bytes().to_vec()].concat(),
            [vec![0xdf], u32::MAX.to_be_bytes().to_vec()].concat(),
            vec![0x81, 0xa4, b't', b'y', b'p', b'e', 0xa2, 0xff, 0xfe],
            event(Value::from("x"), Value::map::<&str, Value>([]), Value::Bin(vec![0; 1 << 20])),
        ]);
        let mut sent = 0;
        let mut bytes = 0;
        let event_types = self.target.event_types.clone();
        for routing_key in &event_types {
            let mut all = bodies.clone();
            // Well-formed events of made-up types: under the routing key, and (for a wildcard
            // subscription) under a made-up key the pattern matches.
            for i in 0..48 {
                let tag: u32 = self.rng.random();
                let made_up = format!("hostile.{round}.{i}.{tag:x}");
                all.push(event(Value::from(made_up.as_str()), Value::map([("trace_id", "hostile")]), Value::Nil));
            }
            let mut keyed: Vec<(String, Vec<u8>)> = all.into_iter().map(|body| (routing_key.clone(), body)).collect();
            for i in 0..48 {
                let tag: u32 = self.rng.random();
                let made_up = format!("{routing_key}.{round}.{i}.{tag:x}");
                keyed.push((
                    made_up.clone(),
                    event(Value::from(made_up.as_str()), Value::map::<&str, Value>([]), Value::Nil),
                ));
            }
            for (key, body) in keyed {
                if self.out_of_time() {
                    break;
                }
                let confirm = channel
                    .basic_publish(
                        "lymph".into(),
                        key.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default().with_content_type("application/x-msgpack".into()),
                    )
                    .await?;
                tokio::time::timeout(Duration::from_secs(5), confirm)
                    .await
                    .context("RabbitMQ did not confirm within 5 s")??;
                sent += 1;
                bytes += body.len();
            }
        }
        self.count("amqp", sent, bytes);
        let _ = connection.close(200, "OK".into()).await;
        // The service consumes what was published before the next reading.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }
}

/// A peer that accepts the service's connections, completes the handshake and never reads.
struct Deaf {
    endpoint: String,
    accepting: tokio::task::JoinHandle<()>,
    streams: std::sync::Arc<tokio::sync::Mutex<Vec<TcpStream>>>,
}

impl Deaf {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("tcp://{}", listener.local_addr()?);
        let streams = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::new()));
        let held = streams.clone();
        let identity = endpoint.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(&handshake(&identity)).await;
                held.lock().await.push(stream);
            }
        });
        Ok(Self { endpoint, accepting, streams })
    }

    async fn stop(self) {
        self.accepting.abort();
        self.streams.lock().await.clear();
    }
}

/// Whether the peer closes `stream` within `wait` (reading, and dropping, what it sends).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_or(1, |addr| addr.port())
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn rpc_headers() -> Value {
    Value::map([("version", Value::Nil), ("trace_id", Value::from("hostile"))])
}

/// A well-formed request for `subject` with `body`, as lymph frames it.
fn request_frames(subject: &str, body: &Value) -> Vec<Bytes> {
    vec![
        Bytes::from(new_id()),
        Bytes::from_static(b"REQ"),
        Bytes::copy_from_slice(subject.as_bytes()),
        Bytes::from(rpc_headers().to_msgpack()),
        Bytes::from(body.to_msgpack()),
    ]
}

/// A random msgpack value, nested at most 6 deep.
fn random_msgpack(rng: &mut StdRng, depth: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let pick = if depth >= 6 { rng.random_range(0..6) } else { rng.random_range(0..9) };
    match pick {
        0 => out.push(0xc0),
        1 => out.push(if rng.random() { 0xc3 } else { 0xc2 }),
        2 => {
            out.push(0xd3);
            out.extend_from_slice(&rng.random::<i64>().to_be_bytes());
        }
        3 => {
            out.push(0xcb);
            out.extend_from_slice(&rng.random::<f64>().to_be_bytes());
        }
        4 => {
            let len = rng.random_range(0..31u8);
            out.push(0xa0 | len);
            out.extend((0..len).map(|_| rng.random_range(b'a'..=b'z')));
        }
        5 => {
            let len = rng.random_range(0..64u8);
            out.extend([0xc4, len]);
            out.extend((0..len).map(|_| rng.random::<u8>()));
        }
        6 | 7 => {
            let len = rng.random_range(0..8u8);
            out.push(if pick == 6 { 0x90 | len } else { 0x80 | len });
            for _ in 0..len * if pick == 6 { 1 } else { 2 } {
                out.extend(random_msgpack(rng, depth + 1));
            }
        }
        _ => {
            let len = rng.random_range(0..16u8);
            out.extend([0xc7, len, rng.random::<u8>()]);
            out.extend((0..len).map(|_| rng.random::<u8>()));
        }
    }
    out
}

/// A ZMTP 3.0 greeting with the NULL mechanism.
fn greeting() -> Vec<u8> {
    let mut greeting = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0];
    greeting.extend_from_slice(b"NULL");
    greeting.resize(64, 0);
    greeting
}

/// A greeting and a READY of a ROUTER with `identity`: a complete handshake.
fn handshake(identity: &str) -> Vec<u8> {
    [greeting(), ready("ROUTER", identity)].concat()
}

/// A frame header (message, or command when `command`) declaring a body of `len` bytes.
fn long_frame_header(len: u64, command: bool) -> Vec<u8> {
    let mut header = vec![if command { 0x06 } else { 0x02 }];
    header.extend_from_slice(&len.to_be_bytes());
    header
}

/// A command frame `name` with `properties`.
fn command(name: &[u8], properties: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = vec![u8::try_from(name.len()).expect("a short name")];
    body.extend_from_slice(name);
    for (key, value) in properties {
        body.push(u8::try_from(key.len()).expect("a short key"));
        body.extend_from_slice(key.as_bytes());
        body.extend_from_slice(&u32::try_from(value.len()).expect("a short value").to_be_bytes());
        body.extend_from_slice(value);
    }
    let mut frame = match u8::try_from(body.len()) {
        Ok(len) => vec![0x04, len],
        Err(_) => [vec![0x06], (body.len() as u64).to_be_bytes().to_vec()].concat(),
    };
    frame.extend(body);
    frame
}

/// A READY command with a socket type and an identity.
fn ready(socket_type: &str, identity: &str) -> Vec<u8> {
    command(b"READY", &[("Socket-Type", socket_type.as_bytes()), ("Identity", identity.as_bytes())])
}
