//! A container's metrics stream, as lymph 0.15 publishes it: a ZeroMQ PUB socket, registered as
//! the instance's `monitoring_endpoint`, sending the container's metrics every few seconds as
//! `[b"stats", msgpack.dumps({"time": <unix time>, "series": [[name, value, tags], ...]})]`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lymph_core::{Container, Error, Result, Value, codec};
use zeromq::prelude::*;
use zeromq::{PubSocket, ZmqMessage};

/// The first frame of every metrics message.
const TOPIC: &str = "stats";

const TARGET: &str = "lymph::monitoring";

/// The publishing end of a container's metrics stream (lymph's `MonitorPusher`).
///
/// Bind it before the container starts, so that its [`endpoint`](Self::endpoint) can be
/// registered with
/// [`ContainerBuilder::monitoring_endpoint`](lymph_core::ContainerBuilder::monitoring_endpoint),
/// then [`run`](Self::run) it with the started container.
///
/// Each message is two frames: `stats`, then the map `{"time": <unix time as a float>,
/// "series": <the container's metrics>}` packed as Python's `msgpack.dumps` packs it for lymph,
/// with the old raw strings ([`codec::to_legacy_msgpack`]). Subscribers that are not connected
/// when a message goes out miss it, as with any PUB socket.
pub struct MetricsPublisher {
    endpoint: String,
    socket: PubSocket,
}

impl fmt::Debug for MetricsPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsPublisher").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl MetricsPublisher {
    /// How often lymph pushes a container's metrics: every 5 s.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

    /// Binds the PUB socket at `endpoint`, or at a port the system picks on `ip` when it is
    /// `None` (as lymph's `bind_to_random_port` does with its default range).
    ///
    /// # Errors
    ///
    /// When the socket cannot be bound.
    pub async fn bind(ip: &str, endpoint: Option<&str>) -> Result<Self> {
        let (socket, endpoint) = crate::log_stream::bind_pub(ip, endpoint, "the metrics stream").await?;
        tracing::info!(target: TARGET, endpoint, "metrics stream bound");
        Ok(Self { endpoint, socket })
    }

    /// The endpoint subscribers connect to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Publishes `series` (lymph's `[[name, value, tags], ...]`) now, stamped with the current
    /// unix time.
    ///
    /// # Errors
    ///
    /// When the socket fails to send.
    pub async fn publish(&mut self, series: Value) -> Result<()> {
        let time = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let stats = Value::map([("time", Value::F64(time)), ("series", series)]);
        let mut frames = ZmqMessage::from(TOPIC);
        frames.push_back(codec::to_legacy_msgpack(&stats).into());
        self.socket
            .send(frames)
            .await
            .map_err(|e| Error::transport(format!("cannot publish metrics on {}: {e}", self.endpoint)))
    }

    /// Publishes `container`'s [metrics](Container::metrics) every `interval` (lymph:
    /// [`DEFAULT_INTERVAL`](Self::DEFAULT_INTERVAL)), the first one `interval` after the call, until the container
    /// stops; then closes the socket. A failed publish is logged, and the next one is tried.
    ///
    /// # Panics
    ///
    /// When `interval` is zero.
    pub async fn run(mut self, container: Container, interval: Duration) {
        assert!(!interval.is_zero(), "the metrics interval must not be zero");
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = container.stopped() => break,
                _ = ticks.tick() => {}
            }
            if let Err(error) = self.publish(container.metrics()).await {
                tracing::warn!(target: TARGET, %error, "metrics not published");
            }
        }
        tracing::debug!(target: TARGET, endpoint = self.endpoint, "container stopped, metrics stream closed");
        let _ = self.socket.close().await;
    }
}
