//! The lymph service framework: messages, codec, containers, the three transport seams and their
//! in-process backends.
//!
//! Most users depend on the `lymph` facade crate, which re-exports this crate.
//!
//! # Layout
//!
//! - [`Value`], [`codec`] and [`types`]: msgpack exactly as lymph 0.15 writes it.
//! - [`message`]: the five-frame RPC message; [`event`]: events and the [`EventSystem`] seam.
//! - [`rpc`]: the [`RpcTransport`] seam; [`registry`]: the [`Registry`] seam.
//! - [`memory`]: the embedded (in-process) backends of the three seams.
//! - [`Container`], [`Context`], [`Proxy`]: serving interfaces and calling services, above the seams.
//! - [`interface`]: what `#[lymph::interface]` generates; [`version`]: interface versions.
//! - [`plugin`]: hooks on everything a container handles (lymph's `error_hook`, `http_request_hook`).
//! - [`web`]: web interfaces (HTTP on axum), their network seam and an HTTP client.
//!
//! # Feature flags
//!
//! None: the embedded backends are always there, and real or simulated backends live in other crates.

mod builtin;
mod connection;
mod container;
mod context;
mod error;
mod latch;
mod metrics;
mod proxy;
mod serial;

pub mod codec;
pub mod event;
pub mod id;
pub mod interface;
pub mod memory;
pub mod message;
pub mod plugin;
pub mod registry;
pub mod rpc;
pub mod types;
pub mod value;
pub mod version;
pub mod web;

pub use builtin::LYMPH_VERSION;
pub use connection::{ConnectionConfig, PeerStatus};
pub use container::{Container, ContainerBuilder, DEFAULT_TIMEOUT, LogLevels, TRACING_TARGET};
pub use context::Context;
pub use error::{BoxError, Error, NotConnectedReason, Result};
pub use event::{Event, EventSystem};
pub use interface::{Client, Interface};
pub use latch::Latch;
pub use message::{Headers, Message, MessageKind};
pub use plugin::Plugin;
pub use proxy::{Deferred, Proxy};
pub use registry::{Registry, ServiceInstance, WebInstance};
pub use rpc::RpcTransport;
pub use value::Value;
