#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - The service model, messages, codec and backends come from `lymph-core` and are re-exported here.
//! - [`interface`](macro@interface) and [`test`](macro@test) are the attribute macros (feature `macros`, on by default).
//! - `testing` is the simulator and the test cases (feature `testing`).
//!
//! # Feature flags
//!
//! - `macros` (default): `#[lymph::interface]` and `#[lymph::test]`.
//! - `testing`: the deterministic simulator and lymph-style test cases; enable it under
//!   `[dev-dependencies]`.
//! - `app`: `lymph::app`, `lymph::config` and `lymph::transports`: service binaries on
//!   ZeroMQ, RabbitMQ and ZooKeeper, from `.lymph.yml` files.
//! - `otel` (implies `app`): `transports::otel::OtelPlugin`, spans for every request, event and
//!   HTTP request, exported to an OpenTelemetry collector; applications know its class
//!   `lymph.plugins.otel:OpenTelemetryPlugin`.

pub use lymph_core::*;

#[cfg(feature = "macros")]
pub use lymph_macros::{interface, test};

#[cfg(feature = "testing")]
pub use lymph_testing as testing;

/// Service binaries: the [`Application`](app::Application) and lymph's command line
/// (`instance`, `worker`, `discover`, `request`, ...).
#[cfg(feature = "app")]
pub use lymph_cli as app;

/// lymph's real backends: ZeroMQ RPC, RabbitMQ events and the ZooKeeper registry.
#[cfg(feature = "app")]
pub use lymph_transports as transports;

/// Loading the `.lymph.yml` files written for Python lymph 0.15, with typed views to build a container from.
#[cfg(feature = "app")]
pub use lymph_cli::config;

/// The names most services need: `use lymph::prelude::*;`.
pub mod prelude {
    pub use lymph_core::{Container, Context, Error, Event, Result, Value};

    #[cfg(feature = "macros")]
    pub use lymph_macros::interface;
}

/// Items the macros' output refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use futures::future::BoxFuture;
    pub use lymph_core::codec;
    pub use lymph_core::interface::{
        CallError, Client, EventHandlerSpec, Interface, InterfaceSpec, MethodSpec, SerialSpec,
    };
    pub use serde;
    pub use tracing;

    #[cfg(feature = "testing")]
    pub use lymph_testing::Runner;
}
