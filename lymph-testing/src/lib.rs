//! Deterministic simulation and test cases for lymph services.
//!
//! # Layout
//!
//! - [`Runner`] and [`World`]: a turmoil world per test with a simulated registry, broker and
//!   network; what `#[lymph::test]` runs a test body in.
//! - [`sim`]: the simulated backends (`SimRpc`, `SimRegistry`, `SimEvents`) and their hosts.
//! - [`Timeline`]: everything that crossed the simulated network, for output, checks and the
//!   determinism check.
//! - [`check`]: checkers that read a timeline: every request answered once, no reply after its
//!   caller gave up, no request handled twice, bounded redeliveries, no lost events.
//! - [`schedule`]: fault schedules, generated and shrunk by proptest.
//! - [`Cluster`]: one scenario body for the embedded backends ([`Embedded`]) and the simulator.
//! - [`ServiceTestCase`], [`MultiServiceTestCase`]: lymph's test cases on the embedded backends.
//! - [`eventually`], [`for_a_while`]: waiting in simulated or real time, on plain or async conditions.
//! - [`contract`]: one contract suite per seam, run on the embedded backends, the simulated
//!   twins and (with `real-infra`) the real servers.
//! - [`every_world!`]: one scenario body as a test on the embedded backends, a seed sweep in the
//!   simulator and, behind the calling crate's own `real-infra` feature, a test on real servers.
//!
//! # Feature flags
//!
//! - `real-infra`: `Real`, the [`Cluster`] on ZeroMQ, RabbitMQ and ZooKeeper (`scripts/infra.sh up`).

mod case;

pub mod check;
mod cluster;
pub mod contract;
mod loss;
#[cfg(feature = "real-infra")]
mod real;
mod record;
mod runner;
mod wait;
mod world;
mod worlds;

pub mod schedule;
pub mod seed;
pub mod sim;
pub mod timeline;

pub use case::{MockFn, MockReply, MultiServiceTestCase, RpcCall, ServiceTestCase, ServiceTestCaseBuilder};
pub use cluster::{Cluster, Embedded, FAULTS};
pub use loss::LOSS_INTERVAL;
#[cfg(feature = "real-infra")]
pub use real::{FaultProxy, Real};
pub use record::RecordingRpc;
pub use runner::{
    BASE_SEED_VAR, DETERMINISM_VAR, NUM_VAR, RunReport, Runner, SEED_VAR, SHARD_VAR, TIMELINE_VAR, TestOutcome,
};
pub use timeline::{Direction, Entry, RenderOptions, Timeline};
pub use wait::{Condition, condition, eventually, for_a_while};
pub use world::{BROKER_HOST, REGISTRY_HOST, SERVICE_PORT, SESSION_EXPIRY, TEST_HOST, World};

/// Items the macros' output refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::worlds::{Clock, block_on};
}

/// A test failure with a message, for test bodies that use `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestError(String);

impl TestError {
    /// A failure saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestError {}

/// The result type of test bodies: any error, boxed, so `?` works on everything.
pub type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;
