//! Simulated backends of the three seams, over `turmoil::net`.
//!
//! Every value here is created inside a turmoil host (or client) and talks to other hosts over
//! turmoil's simulated TCP, so partitions, crashes, latency and loss apply to it:
//!
//! - [`SimRpc`]: the RPC transport; endpoints `tcp://<host>:<port>`, one connection per peer.
//! - [`registry_server`] (run it as a host, e.g. `"registry"`) and [`SimRegistry`] (its client):
//!   a small ZooKeeper with sessions, ephemeral registrations and watches.
//! - [`broker_server`] (e.g. host `"broker"`) and [`SimEvents`] (its client): a small RabbitMQ
//!   whose queues are a [`MemoryEvents`](lymph_core::memory::MemoryEvents).
//! - [`SimWebNetwork`]: web interfaces listen on, and clients connect over, simulated TCP.
//!
//! # Sessions
//!
//! The registry and broker clients hold one TCP connection each. The client pings its server at
//! the real client's interval and drops a connection on which nothing arrived for as long as the
//! real client allows, then reconnects every [`RECONNECT_BACKOFF`]; the receivers it handed out
//! earlier keep working. A partition ([`World::partition`](crate::World::partition)) holds what
//! is sent, as TCP does, so a connection survives a partition shorter than its heartbeat
//! timeout and then delivers what was held.
//!
//! - Broker (as RabbitMQ): the connection is the session, with AMQP heartbeats at the real
//!   timeout, [`AMQP_HEARTBEAT`]. The broker drops a connection on which nothing arrived for that
//!   long and cancels its consumers, whose unsettled deliveries go back to their queues; the
//!   client re-subscribes its subscriptions on the next connection. While it is disconnected
//!   after having been connected, emits fail at once, and an emit the broker had not confirmed
//!   when the connection dropped fails and is not sent again, as with `AmqpEvents`.
//! - Registry (as ZooKeeper): the session outlives its connection. The client pings every
//!   [`REGISTRY_PING_INTERVAL`], drops a silent connection after two thirds of
//!   [`REGISTRY_SESSION_TIMEOUT`] and resumes its session on the next one, keeping its
//!   registrations (ephemeral nodes) and watches. The registry expires a session it has heard
//!   nothing from for [`REGISTRY_SESSION_TIMEOUT`] (10 s, as with ZooKeeper and lymph's client
//!   defaults) and deletes its registrations; the client then gets a new session and registers
//!   and watches again what it had. See [`SimRegistry`].
//!
//! All timing uses `tokio::time`, every `select!` is `biased`, and all maps are ordered, so a
//! simulation with a fixed seed replays exactly.

mod broker;
mod fault;
mod host;
mod registry;
mod rpc;
mod web;
mod wire;

use std::time::Duration;

pub use broker::{SimEvents, broker_server, broker_server_on};
pub use fault::{FaultAction, MessageFault, MessageFaults};
pub use host::SimHost;
pub use registry::{RegistryDisk, SimRegistry, registry_server, registry_server_on, registry_server_with};
pub use rpc::SimRpc;
pub use web::SimWebNetwork;

/// The port the simulated registry listens on by default (ZooKeeper's).
pub const DEFAULT_REGISTRY_PORT: u16 = 2181;
/// The port the simulated broker listens on by default (AMQP's).
pub const DEFAULT_BROKER_PORT: u16 = 5672;

/// How often simulated RPC connections send keepalives.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// How long a simulated RPC connection may stay silent, after its link lost a message
/// ([`World::partition_oneway`](crate::World::partition_oneway), loss), before it is
/// considered dead; also how long a simulated connect may take.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the registry keeps a session it hears nothing from: 10 s, the session timeout
/// lymph-rs's ZooKeeper registry asks for (`ZkConfig`, as kazoo's default for lymph 0.15).
pub const REGISTRY_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a registry client pings its server: every 1.5 s, as the ZooKeeper client lymph-rs
/// uses does with a 10 s session (three of its ticks of a twentieth of the session timeout).
pub const REGISTRY_PING_INTERVAL: Duration = Duration::from_millis(1500);
/// How long a session client waits between connection attempts.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);
/// The AMQP heartbeat timeout of a broker connection: 60 s, what RabbitMQ proposes by default
/// and lapin (so `AmqpEvents`) accepts. The broker closes a connection it heard nothing on for
/// that long ("missed heartbeats from client, timeout: 60s"); the client sends a heartbeat every
/// half of it and closes the connection after twice it without a byte from the broker (lapin).
pub const AMQP_HEARTBEAT: Duration = Duration::from_secs(60);
/// How long an emit waits for the broker's confirm: 10 s, as `AmqpEvents`.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a registry or broker call waits for its answer, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
