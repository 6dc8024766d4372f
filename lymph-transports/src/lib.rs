//! lymph's real backends, wire-compatible with Python lymph 0.15.
//!
//! Each backend implements one of lymph-core's seams and sits behind its own feature, so a
//! service pulls in only the client libraries it uses:
//!
//! | feature | backend | seam | speaks |
//! |---|---|---|---|
//! | `zmq` | `ZmqRpc` | [`RpcTransport`](lymph_core::RpcTransport) | ZeroMQ ROUTER to ROUTER, lymph's 6 frames |
//! | `amqp` | `AmqpEvents` | [`EventSystem`](lymph_core::EventSystem) | RabbitMQ, lymph's exchanges, queues and msgpack events |
//! | `zookeeper` | `ZkRegistry` | [`Registry`](lymph_core::Registry) | ZooKeeper, lymph's `/lymph/services` layout and JSON nodes |
//!
//! The `zmq` feature also has a container's two side streams: `LogPublisher` (the log stream,
//! registered as `log_endpoint`) and `MetricsPublisher` (the metrics stream, registered as
//! `monitoring_endpoint`).
//!
//! Python lymph 0.15 services and these backends share one cluster: the bytes on every wire are
//! lymph's.
//!
//! Feature `otel` adds a [`Plugin`](lymph_core::Plugin) rather than a backend: `otel::OtelPlugin`
//! exports a span for every request, event and HTTP request to an OpenTelemetry collector, over
//! OTLP/HTTP.

#[cfg(feature = "amqp")]
mod amqp;
#[cfg(feature = "zmq")]
mod log_stream;
#[cfg(feature = "zmq")]
mod monitoring;
#[cfg(feature = "otel")]
pub mod otel;
#[cfg(feature = "zmq")]
mod zmq;
#[cfg(feature = "zookeeper")]
mod zookeeper;

#[cfg(feature = "amqp")]
pub use amqp::{AmqpConfig, AmqpEvents};
#[cfg(feature = "zmq")]
pub use log_stream::LogPublisher;
#[cfg(feature = "zmq")]
pub use monitoring::MetricsPublisher;
#[cfg(feature = "zmq")]
pub use zmq::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_PEER_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_MAX_QUEUED_BYTES_TOTAL, ZmqConfig, ZmqRpc,
};
#[cfg(feature = "zookeeper")]
pub use zookeeper::{ZkConfig, ZkRegistry, quiet_caught_watch_panics};
