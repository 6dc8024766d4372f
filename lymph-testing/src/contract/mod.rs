//! Contract suites: what every backend of a seam must do, written once and run on each backend.
//!
//! A simulated twin is worth as much as it is faithful. Each seam has a list of named checks,
//! each pinning one behaviour of the real server with its source (the ZooKeeper programmer's
//! guide, the RabbitMQ documentation, the ZeroMQ guide, lymph 0.15), written against a small
//! harness trait: make a client, and where the backend has them, the faults that touch the seam
//! (crash a client, cut its connection for a while, expire its session, restart the server).
//! The same checks run on the embedded backends, on the simulated twins and, with the
//! `real-infra` feature, on real servers; a backend that cannot have a fault says why, and the
//! check is reported as not applicable with that reason.
//!
//! - [`registry`]: the [`Registry`](lymph_core::registry::Registry) contract.
//! - [`events`]: the [`EventSystem`](lymph_core::event::EventSystem) contract.
//! - [`rpc`]: the [`RpcTransport`](lymph_core::rpc::RpcTransport) contract.
//!
//! A third backend uses a suite by implementing the seam's harness and running
//! [`run`] over the seam's checks:
//!
//! ```no_run
//! # async fn example(harness: &(dyn lymph_testing::contract::registry::RegistryHarness + 'static)) {
//! use lymph_testing::contract::{self, registry};
//! let report = contract::run("my registry", harness, registry::checks()).await;
//! report.assert_passed();
//! # }
//! ```
//!
//! `docs/fidelity.md` lists every check, which backend passes it, and every argued exception.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub mod events;
pub mod registry;
pub mod rpc;

/// A fault a check needs beyond the seam's own calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A client's process dies: its connections drop, nothing is closed or unregistered.
    Crash,
    /// A client's connection is cut for a while (a partition), then heals.
    Cut,
    /// The server expires a client's session.
    ExpireSession,
    /// The server restarts.
    RestartServer,
    /// The link between two peers gets a latency.
    Slow,
}

/// What a backend says about the faults it has.
pub trait Faults {
    /// `None` when the backend has `fault`; else why it cannot have it (an in-process map has no
    /// connection to cut).
    fn lacks(&self, fault: Fault) -> Option<&'static str>;
}

/// The future a check returns: `Err` says what the backend did instead.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + 'a>>;

/// One named behaviour of a seam.
pub struct Check<H: ?Sized> {
    /// A name that says what is checked, `snake_case`, unique in its suite.
    pub name: &'static str,
    /// The real behaviour it pins, and where that behaviour is documented.
    pub pins: &'static str,
    /// The faults it needs; on a backend without one of them it is not applicable.
    pub needs: &'static [Fault],
    /// The check itself.
    pub run: for<'a> fn(&'a H) -> CheckFuture<'a>,
}

impl<H: ?Sized> fmt::Debug for Check<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check").field("name", &self.name).field("needs", &self.needs).finish_non_exhaustive()
    }
}

impl<H: ?Sized + Faults> Check<H> {
    /// Runs the check on `harness`: not applicable when the harness lacks a fault it needs.
    pub async fn run_on(&self, harness: &H) -> Verdict {
        if let Some(why) = self.needs.iter().find_map(|&fault| harness.lacks(fault)) {
            return Verdict::NotApplicable(why);
        }
        match (self.run)(harness).await {
            Ok(()) => Verdict::Passed,
            Err(failure) => Verdict::Failed(failure),
        }
    }
}

/// How one check went on one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The backend behaves as the real server does.
    Passed,
    /// It does not: what it did instead.
    Failed(String),
    /// The check needs a fault the backend cannot have, and why.
    NotApplicable(&'static str),
}

/// The verdicts of a suite on one backend, in the order of its checks.
#[derive(Debug, Clone)]
pub struct Report {
    /// The backend's name, for output.
    pub backend: String,
    /// Each check's name and verdict.
    pub verdicts: Vec<(&'static str, Verdict)>,
}

impl Report {
    /// An empty report for `backend`.
    pub fn new(backend: impl Into<String>) -> Self {
        Self { backend: backend.into(), verdicts: Vec::new() }
    }

    /// Adds the verdict of the check `name`.
    pub fn push(&mut self, name: &'static str, verdict: Verdict) {
        self.verdicts.push((name, verdict));
    }

    /// How many checks passed, failed, and were not applicable.
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |f: fn(&Verdict) -> bool| self.verdicts.iter().filter(|(_, v)| f(v)).count();
        (
            count(|v| matches!(v, Verdict::Passed)),
            count(|v| matches!(v, Verdict::Failed(_))),
            count(|v| matches!(v, Verdict::NotApplicable(_))),
        )
    }

    /// Prints the report, then panics listing every failed check, if any did.
    ///
    /// # Panics
    ///
    /// When a check failed.
    pub fn assert_passed(&self) {
        eprintln!("{self}");
        let failed: Vec<String> = self
            .verdicts
            .iter()
            .filter_map(|(name, v)| match v {
                Verdict::Failed(why) => Some(format!("  {name}: {why}")),
                _ => None,
            })
            .collect();
        assert!(failed.is_empty(), "{}: {} checks failed:\n{}", self.backend, failed.len(), failed.join("\n"));
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (passed, failed, not_applicable) = self.counts();
        writeln!(f, "contract on {}: {passed} passed, {failed} failed, {not_applicable} not applicable", self.backend)?;
        for (name, verdict) in &self.verdicts {
            match verdict {
                Verdict::Passed => writeln!(f, "  ok    {name}")?,
                Verdict::Failed(why) => writeln!(f, "  FAIL  {name}: {why}")?,
                Verdict::NotApplicable(why) => writeln!(f, "  n/a   {name}: {why}")?,
            }
        }
        Ok(())
    }
}

/// Runs every check of `checks` on one `harness`, one after the other, and reports them.
///
/// Checks share the harness; each uses names of its own, so they do not see each other. To give
/// each check a fresh backend (a new simulated world, a new namespace), run [`Check::run_on`]
/// per check instead, as the built-in backends do.
pub async fn run<H: ?Sized + Faults>(backend: &str, harness: &H, checks: &[Check<H>]) -> Report {
    let mut report = Report::new(backend);
    for check in checks.iter().filter(|check| selected(check.name)) {
        report.push(check.name, check.run_on(harness).await);
    }
    report
}

/// The variable that narrows a suite run to the checks whose names contain its value.
pub const CHECK_VAR: &str = "LYMPH_CONTRACT_CHECK";

/// Whether the check `name` runs: every check, unless [`CHECK_VAR`] narrows the run.
pub fn selected(name: &str) -> bool {
    std::env::var(CHECK_VAR).map_or(true, |wanted| name.contains(wanted.trim()))
}

/// Runs every selected check of `checks` on a fresh harness from `make` each, on a
/// current-thread runtime with a paused clock: the runner of the in-process backends.
pub(crate) fn run_paused<H: ?Sized + Faults>(backend: &str, checks: &[Check<H>], make: impl Fn() -> Box<H>) -> Report {
    let mut report = Report::new(backend);
    for check in checks.iter().filter(|check| selected(check.name)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build();
        let runtime = runtime.expect("a current-thread runtime");
        let harness = make();
        report.push(check.name, runtime.block_on(check.run_on(&*harness)));
    }
    report
}

/// Runs every selected check of `checks` in simulated worlds of its own, one per seed of
/// `runner` (its seed count, or `LYMPH_TEST_NUM`, `LYMPH_TEST_SEED`, `LYMPH_TEST_BASE_SEED`, as
/// for any simulated test), on the harness `make` builds in each world. A failed seed prints its
/// replay line and timeline file, and fails the check.
pub(crate) fn run_simulated<H: ?Sized + Faults + 'static>(
    backend: &str,
    checks: &'static [Check<H>],
    make: fn(crate::World) -> Box<H>,
    runner: impl Fn(&'static str) -> crate::Runner,
) -> Report {
    let mut report = Report::new(backend);
    for check in checks.iter().filter(|check| selected(check.name)) {
        let body = move |world: crate::World| async move {
            match check.run_on(&*make(world)).await {
                Verdict::Failed(why) => Err(why),
                Verdict::Passed | Verdict::NotApplicable(_) => Ok(()),
            }
        };
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner(check.name).run(body)));
        let verdict = match ran {
            Ok(()) => Verdict::Passed,
            Err(panic) => Verdict::Failed(panic_message(&panic)),
        };
        report.push(check.name, verdict);
    }
    report
}

/// Runs every selected check of `checks` against real servers, each on a fresh harness from
/// `make` (a namespace of its own): those that need no server restart all at once, then the
/// others one by one, since a restart disturbs every user of the server.
#[cfg(feature = "real-infra")]
pub(crate) fn run_real<H: ?Sized + Faults + 'static>(
    backend: &str,
    checks: &'static [Check<H>],
    make: impl Fn() -> Result<Box<H>, lymph_core::Error>,
) -> Report {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let runtime = runtime.expect("a tokio runtime");
    let mut report = Report::new(backend);
    let (restarts, others): (Vec<&Check<H>>, Vec<&Check<H>>) = checks
        .iter()
        .filter(|check| selected(check.name))
        .partition(|check| check.needs.contains(&Fault::RestartServer));
    let run_one = |check: &'static Check<H>| {
        let harness = make();
        async move {
            match harness {
                Ok(harness) => check.run_on(&*harness).await,
                Err(error) => Verdict::Failed(format!("a namespace on the server: {error}")),
            }
        }
    };
    runtime.block_on(async {
        let local = tokio::task::LocalSet::new();
        let verdicts = local.run_until(futures::future::join_all(others.iter().map(|check| run_one(check)))).await;
        for (check, verdict) in others.iter().zip(verdicts) {
            report.push(check.name, verdict);
        }
        for check in restarts {
            report.push(check.name, local.run_until(run_one(check)).await);
        }
    });
    report
}

/// A [`Check`] of the harness type `H` in scope, running the `async fn` of the same name.
macro_rules! check {
    ($name:ident, $pins:expr, [$($fault:ident),*]) => {
        $crate::contract::Check {
            name: stringify!($name),
            pins: $pins,
            needs: &[$($crate::contract::Fault::$fault),*],
            run: |h: &H| -> $crate::contract::CheckFuture<'_> { Box::pin($name(h)) },
        }
    };
}
pub(crate) use check;

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".to_owned())
}

/// Fails with `message` unless `condition` holds: `ensure!` for checks.
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}
pub(crate) use ensure;
