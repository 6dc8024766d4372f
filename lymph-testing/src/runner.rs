//! The runner behind `#[lymph::test]`: seeds, sweeps, the determinism check and replay lines.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use crate::sim::{DEFAULT_BROKER_PORT, DEFAULT_REGISTRY_PORT, RegistryDisk, broker_server, registry_server_with};
use crate::timeline::RenderOptions;
use crate::world::{BROKER_HOST, Command, REGISTRY_HOST, TEST_HOST, World, run_service};
use crate::{Timeline, seed};

/// How many connections a simulated listener queues, and segments a connection buffers.
const TCP_BACKLOG: usize = 4096;

/// The environment variable that replays one seed.
pub const SEED_VAR: &str = "LYMPH_TEST_SEED";
/// The environment variable that sets the number of seeds of every sweep.
pub const NUM_VAR: &str = "LYMPH_TEST_NUM";
/// The environment variable that turns on the determinism check (`1`).
pub const DETERMINISM_VAR: &str = "LYMPH_TEST_CHECK_DETERMINISM";
/// The environment variable that fixes the first seed of every sweep (the others follow from
/// it), so that a sweep runs the same seeds each time, as CI does; without it each run draws new
/// ones.
pub const BASE_SEED_VAR: &str = "LYMPH_TEST_BASE_SEED";
/// The environment variable that runs one shard of every sweep: `K/N` (1 ≤ K ≤ N) runs the seeds
/// whose index in the sweep is K − 1 modulo N, so N jobs with the same
/// [`LYMPH_TEST_BASE_SEED`](BASE_SEED_VAR) and [`LYMPH_TEST_NUM`](NUM_VAR) run disjoint parts of
/// one sweep, and a failure in any of them replays with its one seed.
pub const SHARD_VAR: &str = "LYMPH_TEST_SHARD";
/// The environment variable that shows the timeline of every simulated run (`1`): printed to
/// standard error as the run ends, past the test harness's output capture, and written to a file
/// under `target/lymph-timelines/`.
pub const TIMELINE_VAR: &str = "LYMPH_TEST_TIMELINE";

/// What a test body may return: `()` or a `Result` whose error fails the test.
pub trait TestOutcome {
    /// `Err` with a description when the test failed.
    fn into_result(self) -> Result<(), String>;
}

impl TestOutcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Debug> TestOutcome for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// turmoil's default range of message latencies (0 to 100 ms).
const TURMOIL_LATENCY: (Duration, Duration) = (Duration::ZERO, Duration::from_millis(100));

/// Runs a test body in simulated worlds, one per seed.
///
/// `#[lymph::test]` expands to a call of this; it can also be used directly. The seed comes from
/// `LYMPH_TEST_SEED` (replay), else from the test's `seed = N`, else a fresh one; a sweep
/// (`seeds = N`, or `LYMPH_TEST_NUM`) runs that many seeds derived from it. With
/// `LYMPH_TEST_CHECK_DETERMINISM=1` (or `check_determinism`) every seed runs twice and the two
/// timelines must be identical. A failure prints the seed, the command that replays it, and the
/// file its timeline was written to (`target/lymph-timelines/`). `LYMPH_TEST_SHARD=K/N` runs one
/// shard of every sweep; `LYMPH_TEST_TIMELINE=1` shows the timeline of every run.
#[derive(Debug, Clone)]
pub struct Runner {
    test_path: &'static str,
    package: &'static str,
    target: &'static str,
    seed: Option<u64>,
    seeds: u32,
    check_determinism: bool,
    duration: Duration,
    tick: Duration,
    latency: Option<(Duration, Duration)>,
}

/// The result of one simulated run.
#[derive(Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Everything that crossed the network.
    pub timeline: Timeline,
    /// `Err` with a description when the body failed.
    pub outcome: Result<(), String>,
}

impl Runner {
    /// A runner for the test at `test_path` (`module_path!()::name`) of `package`, in the test
    /// target `target` (`CARGO_CRATE_NAME`).
    pub fn new(test_path: &'static str, package: &'static str, target: &'static str) -> Self {
        Self {
            test_path,
            package,
            target,
            seed: None,
            seeds: 1,
            check_determinism: false,
            duration: Duration::from_secs(3600),
            tick: Duration::from_millis(1),
            latency: None,
        }
    }

    /// Runs this seed (unless `LYMPH_TEST_SEED` says otherwise).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sweeps this many seeds (unless `LYMPH_TEST_NUM` says otherwise).
    pub fn seeds(mut self, seeds: u32) -> Self {
        self.seeds = seeds.max(1);
        self
    }

    /// Runs every seed twice and fails if the timelines differ.
    pub fn check_determinism(mut self, check: bool) -> Self {
        self.check_determinism = check;
        self
    }

    /// The longest simulated time a run may take (1 hour unless set).
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// The simulator's time step (1 ms unless set): message latencies and timers are rounded to it.
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// The range of every message's latency (turmoil's default unless set: up to 100 ms,
    /// exponentially distributed).
    pub fn latency(mut self, min: Duration, max: Duration) -> Self {
        self.latency = Some((min, max));
        self
    }

    /// The range of every message's latency: as set by [`latency`](Runner::latency), else
    /// turmoil's default.
    fn latency_range(&self) -> (Duration, Duration) {
        self.latency.unwrap_or(TURMOIL_LATENCY)
    }

    /// Runs `body` once per seed; panics (failing the test) with a replay line on the first failure.
    ///
    /// # Panics
    ///
    /// When the body fails or panics, or when the determinism check finds a difference.
    pub fn run<F, Fut, R>(self, body: F)
    where
        F: Fn(World) -> Fut + 'static,
        Fut: Future<Output = R> + 'static,
        R: TestOutcome,
    {
        let env_seed = std::env::var(SEED_VAR)
            .ok()
            .map(|s| s.trim().parse::<u64>().unwrap_or_else(|_| panic!("{SEED_VAR}={s:?} is not a number")));
        let check = self.check_determinism || std::env::var(DETERMINISM_VAR).is_ok_and(|v| v == "1");
        let (base, count) = match env_seed {
            Some(seed) => (seed, 1),
            None => {
                let count = std::env::var(NUM_VAR).ok().and_then(|n| n.trim().parse().ok()).unwrap_or(self.seeds);
                let env_base = std::env::var(BASE_SEED_VAR).ok().map(|s| {
                    s.trim().parse::<u64>().unwrap_or_else(|_| panic!("{BASE_SEED_VAR}={s:?} is not a number"))
                });
                (self.seed.or(env_base).unwrap_or_else(rand::random), count)
            }
        };
        let shard = match env_seed {
            Some(_) => Shard::ALL,
            None => Shard::from_env(),
        };
        let show = std::env::var(TIMELINE_VAR).is_ok_and(|v| v == "1");
        for index in (0..count).filter(|&index| shard.includes(index)) {
            let seed = seed::nth(base, index);
            let timeline = Timeline::default();
            let first = catch_unwind(AssertUnwindSafe(|| self.run_seed_on(seed, &body, timeline.clone())));
            let report = match first {
                Ok(report) => report,
                Err(panic) => {
                    self.print_replay(seed, "panicked", Some(&timeline));
                    resume_unwind(panic);
                }
            };
            if show {
                self.show_timeline(seed, &report.timeline);
            }
            if let Err(failure) = &report.outcome {
                self.print_replay(seed, "failed", Some(&report.timeline));
                panic!("{}: {failure}", self.test_path);
            }
            if check {
                let second = catch_unwind(AssertUnwindSafe(|| self.run_seed(seed, &body)));
                let second = second.unwrap_or_else(|panic| {
                    self.print_replay(seed, "panicked on its second run", None);
                    resume_unwind(panic)
                });
                let options = RenderOptions { heartbeats: true, ..RenderOptions::default() };
                let (a, b) = (report.timeline.render(&options), second.timeline.render(&options));
                if a != b {
                    self.print_replay(seed, "is not deterministic", None);
                    if let (Ok(path_a), Ok(path_b)) =
                        (self.write_file(seed, "-first-run", &a), self.write_file(seed, "-second-run", &b))
                    {
                        eprintln!("lymph: the two timelines are in {} and {}", path_a.display(), path_b.display());
                    }
                    let line = a
                        .lines()
                        .zip(b.lines())
                        .position(|(x, y)| x != y)
                        .unwrap_or(a.lines().count().min(b.lines().count()));
                    panic!(
                        "{}: two runs of seed {seed} differ at timeline line {}:\n  first:  {}\n  second: {}",
                        self.test_path,
                        line + 1,
                        a.lines().nth(line).unwrap_or("<end>"),
                        b.lines().nth(line).unwrap_or("<end>"),
                    );
                }
            }
        }
    }

    /// Runs `body` in one world seeded with `seed` and returns its report.
    ///
    /// # Panics
    ///
    /// When the body panics, or a simulated host fails.
    pub fn run_seed<F, Fut, R>(&self, seed: u64, body: &F) -> RunReport
    where
        F: Fn(World) -> Fut + 'static,
        Fut: Future<Output = R> + 'static,
        R: TestOutcome,
    {
        self.run_seed_on(seed, body, Timeline::default())
    }

    /// [`run_seed`](Self::run_seed), recording on `timeline`, which the caller keeps when the body panics.
    fn run_seed_on<F, Fut, R>(&self, seed: u64, body: &F, timeline: Timeline) -> RunReport
    where
        F: Fn(World) -> Fut + 'static,
        Fut: Future<Output = R> + 'static,
        R: TestOutcome,
    {
        let mut builder = turmoil::Builder::new();
        builder.rng_seed(seed).simulation_duration(self.duration).tick_duration(self.tick);
        // Connection attempts held by a partition all arrive when it heals: a listener takes as
        // many as Linux's default backlog (`net.core.somaxconn`), not turmoil's 64.
        builder.tcp_capacity(TCP_BACKLOG);
        if let Some((min, max)) = self.latency {
            builder.min_message_latency(min).max_message_latency(max);
        }
        let mut sim = builder.build();
        let world = World::new(seed, timeline.clone());
        for (name, port) in [(REGISTRY_HOST, DEFAULT_REGISTRY_PORT), (BROKER_HOST, DEFAULT_BROKER_PORT)] {
            let control = world.infrastructure(name);
            let (timeline, faults) = (timeline.clone(), world.state.faults.clone());
            // The registry keeps its sessions and registrations over a restart, as ZooKeeper does.
            let disk = RegistryDisk::default();
            sim.host(name, move || {
                let host = control.power_on(name, &timeline, &faults);
                let server: futures::future::LocalBoxFuture<'static, turmoil::Result> = if name == REGISTRY_HOST {
                    Box::pin(registry_server_with(host, port, disk.clone()))
                } else {
                    Box::pin(broker_server(host, port))
                };
                server
            });
        }
        let outcome: Rc<RefCell<Option<Result<(), String>>>> = Rc::default();
        let body_outcome = outcome.clone();
        let body_world = world.clone();
        let future = body(body_world);
        sim.client(TEST_HOST, async move {
            let result = future.await.into_result();
            *body_outcome.borrow_mut() = Some(result);
            Ok(())
        });
        let mut deferred = Vec::new();
        let result = loop {
            apply_commands(&mut sim, &world, &mut deferred, self.latency_range());
            let finished = match sim.step() {
                Ok(finished) => finished,
                Err(error) => break Err(format!("the simulation failed: {error}")),
            };
            if let Some(broken) = world.broken_invariant(sim.elapsed()) {
                break Err(broken);
            }
            if finished {
                break Ok(());
            }
        };
        let outcome = match result {
            Ok(()) => outcome.borrow_mut().take().unwrap_or(Err("the test body did not finish".to_owned())),
            Err(error) => Err(error),
        };
        RunReport { seed, timeline, outcome }
    }

    /// Prints the line that replays `seed`, and where the run's `timeline` was written.
    fn print_replay(&self, seed: u64, what: &str, timeline: Option<&Timeline>) {
        let name = self.test_path.split_once("::").map_or(self.test_path, |(_, rest)| rest);
        let target = self.target_flag();
        eprintln!(
            "\nlymph: {} {what} with seed {seed}. Replay it with:\n\n    {SEED_VAR}={seed} cargo test -p {}{target} -- {name} --exact\n",
            self.test_path, self.package
        );
        if let Some(timeline) = timeline {
            match self.write_timeline(seed, timeline) {
                Ok(path) => eprintln!("lymph: the timeline of seed {seed} is in {}\n", path.display()),
                Err(error) => eprintln!("lymph: the timeline of seed {seed} could not be written: {error}\n"),
            }
        }
    }

    /// The `cargo test` flag that selects this test's target: `--test <target>` for an integration
    /// test, `--lib` for the library's own tests, nothing when the two have one name (a
    /// `tests/<package>.rs`), since then the runner cannot tell which it runs in.
    fn target_flag(&self) -> String {
        if self.target != self.package.replace('-', "_") {
            return format!(" --test {}", self.target);
        }
        let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from) else { return String::new() };
        let tests = dir.join("tests");
        if tests.join(format!("{}.rs", self.target)).exists() || tests.join(self.target).join("main.rs").exists() {
            String::new()
        } else {
            " --lib".to_owned()
        }
    }

    /// With `LYMPH_TEST_TIMELINE=1`: the timeline of a run, on standard error (written past the
    /// harness's capture, so passing tests show it too) and in its file.
    fn show_timeline(&self, seed: u64, timeline: &Timeline) {
        use std::io::Write as _;
        let written = match self.write_timeline(seed, timeline) {
            Ok(path) => format!("written to {}", path.display()),
            Err(error) => format!("not written: {error}"),
        };
        let text = timeline.render(&RenderOptions::default());
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "\nlymph: the timeline of {} with seed {seed} ({written}):\n{text}", self.test_path);
    }

    /// Writes the timeline of `seed` (heartbeats included) to `target/lymph-timelines/`.
    fn write_timeline(&self, seed: u64, timeline: &Timeline) -> std::io::Result<PathBuf> {
        self.write_file(seed, "", &timeline.render(&RenderOptions { heartbeats: true, ..RenderOptions::default() }))
    }

    /// Writes `text` to `target/lymph-timelines/<test>-<seed><suffix>.txt`.
    fn write_file(&self, seed: u64, suffix: &str, text: &str) -> std::io::Result<PathBuf> {
        let dir = timeline_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}-{seed}{suffix}.txt", self.test_path.replace("::", "-")));
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

/// Where timelines are written: `lymph-timelines/` in the Cargo target directory the test binary
/// runs from (found from the binary's path `<target>/<profile>/deps/<test>`, else
/// `CARGO_TARGET_DIR`), else in the system's temporary directory.
fn timeline_dir() -> PathBuf {
    let from_exe = || {
        let exe = std::env::current_exe().ok()?;
        let deps = exe.parent()?;
        (deps.file_name()? == "deps").then(|| deps.parent()?.parent().map(PathBuf::from))?
    };
    let target = from_exe().or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from));
    target.unwrap_or_else(std::env::temp_dir).join("lymph-timelines")
}

/// One shard of a sweep: the seeds whose index is `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// The whole sweep.
    const ALL: Shard = Shard { index: 0, count: 1 };

    /// The shard `LYMPH_TEST_SHARD` names, the whole sweep without it.
    ///
    /// # Panics
    ///
    /// When it is set to something else than `K/N` with 1 ≤ K ≤ N.
    fn from_env() -> Shard {
        match std::env::var(SHARD_VAR) {
            Ok(value) => Shard::parse(&value).unwrap_or_else(|| {
                panic!("{SHARD_VAR}={value:?} is not a shard: expected K/N with 1 <= K <= N, e.g. 2/8")
            }),
            Err(_) => Shard::ALL,
        }
    }

    fn parse(value: &str) -> Option<Shard> {
        let (k, n) = value.trim().split_once('/')?;
        let (k, n): (u32, u32) = (k.trim().parse().ok()?, n.trim().parse().ok()?);
        (1..=n).contains(&k).then(|| Shard { index: k - 1, count: n })
    }

    fn includes(self, index: u32) -> bool {
        index % self.count == self.index
    }
}

/// Applies what the test body asked for since the last step. A crash or restart takes two steps:
/// first the host is powered off, so its connections close in an order the seed fixes (see
/// [`SimHost`](crate::sim::SimHost)), then, after one more step, turmoil stops its software.
/// `latency` is the world's default latency range, which [`World::reset_latency`] restores.
fn apply_commands(
    sim: &mut turmoil::Sim<'_>,
    world: &World,
    deferred: &mut Vec<Command>,
    latency: (Duration, Duration),
) {
    for command in std::mem::take(deferred) {
        match command {
            Command::Crash(host) => sim.crash(host.as_str()),
            Command::Restart(host) => sim.bounce(host.as_str()),
            _ => unreachable!("only crashes and restarts are deferred"),
        }
    }
    loop {
        let command = world.state.commands.borrow_mut().pop_front();
        let Some(command) = command else { break };
        match command {
            Command::Start { host, factory, control } => {
                let (seed, timeline, faults) =
                    (world.state.seed, world.state.timeline.clone(), world.state.faults.clone());
                let name = host.clone();
                sim.host(host.as_str(), move || {
                    run_service(name.clone(), factory.clone(), control.clone(), seed, timeline.clone(), faults.clone())
                });
            }
            Command::Bare { host, setup, control } => {
                let (timeline, faults) = (world.state.timeline.clone(), world.state.faults.clone());
                let name = host.clone();
                sim.host(host.as_str(), move || {
                    let (setup, control, timeline, faults, name) =
                        (setup.clone(), control.clone(), timeline.clone(), faults.clone(), name.clone());
                    async move {
                        // In the host's runtime, so that what `setup` spawns runs on this host.
                        let sim_host = control.power_on(&name, &timeline, &faults);
                        let first_boot = setup.borrow_mut().take();
                        if let Some(setup) = first_boot {
                            setup(&sim_host);
                        }
                        std::future::pending::<turmoil::Result>().await
                    }
                });
            }
            Command::Latency { a, b, range } => {
                // turmoil sets a link's range in two steps: both ends to the minimum, then the maximum.
                let (min, max) = range.unwrap_or(latency);
                sim.set_link_latency(a.as_str(), b.as_str(), min);
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), max);
            }
            Command::Crash(ref host) | Command::Restart(ref host) => {
                let power = world.state.hosts.borrow().get(host).and_then(|c| c.power.borrow_mut().take());
                if let Some(power) = power {
                    power.power_off();
                }
                deferred.push(command);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_a_sweep_into_disjoint_parts() {
        assert_eq!(Shard::parse("2/8"), Some(Shard { index: 1, count: 8 }));
        assert_eq!(Shard::parse(" 1 / 1 "), Some(Shard::ALL));
        for bad in ["0/8", "9/8", "8", "a/b", "1/0", ""] {
            assert_eq!(Shard::parse(bad), None, "{bad:?}");
        }
        let shards: Vec<Shard> = (1..=3).map(|k| Shard::parse(&format!("{k}/3")).unwrap()).collect();
        for index in 0..30 {
            assert_eq!(shards.iter().filter(|s| s.includes(index)).count(), 1, "index {index}");
        }
    }
}
