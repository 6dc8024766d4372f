//! The sample services of lymph's EuroPython talk and the scenarios built from them.
//!
//! Every scenario is written once against [`Cluster`](lymph::testing::Cluster), so it runs on the
//! embedded backends and in the deterministic simulator unchanged.
//!
//! # Layout
//!
//! - [`echo`]: the `echo` service (`upper`, `echo`, `fail`).
//! - [`listener`]: the `listener` service, which records the events it handles.
//! - [`food`]: food ordering over seven hosts, with invariants checked under fault schedules.
//! - [`talk`]: the talk scenario: two echo instances, a listener and a client.

pub mod echo;
pub mod food;
pub mod listener;
pub mod talk;
