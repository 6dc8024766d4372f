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
