//! The sample services of lymph's EuroPython talk and the scenarios built from them.
//!
//! Every scenario is written once against [`Cluster`](lymph::testing::Cluster), so it runs on the
//! embedded backends and in the deterministic simulator unchanged.
//!
//! # Layout
//!
//! - [`echo`]: the `echo` service (`upper`, `echo`, `fail`).
//! - [`listener`]: the `listener` service, which records the events it handles.
//! - [`hostile`]: hostile input sent to a running instance (raw ZMTP, lymph messages, peers that
//!   never read, malformed events), with probes, metrics and memory readings.
//! - [`food`]: food ordering over seven hosts, with invariants checked under fault schedules.
//! - [`parity`]: one scenario under one fault schedule in the simulator and on real
//!   infrastructure, and the differences between the two outcomes.
//! - [`talk`]: the talk scenario: two echo instances, a listener and a client.
//! - [`web`]: the talk's HTTP gateway to `echo` (`web:Gateway`).

pub mod echo;
pub mod food;
pub mod hostile;
pub mod listener;
pub mod parity;
pub mod talk;
pub mod web;

use lymph::app::Application;

/// The talk's services as a lymph application: the classes `echo:Echo`, `listener:Listener` and
/// `web:Gateway`, the names the Python peer's configurations use, so `scenarios instance -c
/// echo.yml` serves the same configuration as Python's `lymph instance -c echo.yml`.
pub fn application() -> Application {
    Application::new("scenarios")
        .interface("echo:Echo", echo::Echo::default)
        .interface("listener:Listener", listener::Listener::default)
        .web("web:Gateway", || web::Gateway)
}
