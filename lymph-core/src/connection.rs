//! Peer liveness: lymph's per-connection heartbeats and the status they give a peer.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// Heartbeat and liveness settings, lymph's `container.rpc.connection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// How often every known peer is sent `lymph.ping` (lymph: 1 s).
    pub heartbeat_interval: Duration,
    /// A peer that sent nothing for this long is unresponsive and is not chosen (lymph: 3 s).
    pub timeout: Duration,
    /// A peer that sent only heartbeats for this long is idle (lymph: 10 s); idle peers are still chosen.
    pub idle_timeout: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// What a container knows of a peer's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerStatus {
    /// Nothing received yet, and not for long: assumed alive.
    Unknown,
    /// Messages arrive.
    Responsive,
    /// Nothing arrived for the timeout: not chosen for requests.
    Unresponsive,
    /// Only heartbeats arrive: alive but unused.
    Idle,
}

impl PeerStatus {
    /// Whether requests may be routed to a peer with this status.
    pub fn is_alive(self) -> bool {
        self != Self::Unresponsive
    }
}

#[derive(Debug)]
struct Peer {
    since: Instant,
    last_seen: Option<Instant>,
    last_used: Instant,
}

/// The peers a container exchanges messages with, in endpoint order.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    peers: BTreeMap<String, Peer>,
}

impl Peers {
    /// Notes that a message was sent to `endpoint`, so it is heartbeated from now on.
    pub(crate) fn sent(&mut self, endpoint: &str, now: Instant) {
        if !self.peers.contains_key(endpoint) {
            self.peers.insert(endpoint.to_owned(), Peer { since: now, last_seen: None, last_used: now });
        }
    }

    /// Notes that a message arrived from `endpoint`; heartbeats do not make a peer busy.
    pub(crate) fn received(&mut self, endpoint: &str, heartbeat: bool, now: Instant) {
        let peer =
            self.peers.entry(endpoint.to_owned()).or_insert(Peer { since: now, last_seen: None, last_used: now });
        peer.last_seen = Some(now);
        if !heartbeat {
            peer.last_used = now;
        }
    }

    /// The status of `endpoint`.
    pub(crate) fn status(&self, endpoint: &str, config: &ConnectionConfig, now: Instant) -> PeerStatus {
        let Some(peer) = self.peers.get(endpoint) else {
            return PeerStatus::Unknown;
        };
        match peer.last_seen {
            // lymph leaves a silent peer "unknown" (alive) for ever; a peer that never answered
            // within the timeout is unresponsive here, so a dead instance stops being chosen.
            None if now.duration_since(peer.since) > config.timeout => PeerStatus::Unresponsive,
            None => PeerStatus::Unknown,
            Some(seen) if now.duration_since(seen) > config.timeout => PeerStatus::Unresponsive,
            Some(_) if now.duration_since(peer.last_used) > config.idle_timeout => PeerStatus::Idle,
            Some(_) => PeerStatus::Responsive,
        }
    }

    /// Every known peer, in endpoint order.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.peers.keys().cloned().collect()
    }

    /// Forgets peers that sent nothing for `after`; they are heartbeated again once used again.
    pub(crate) fn prune(&mut self, after: Duration, now: Instant) {
        self.peers.retain(|_, peer| now.duration_since(peer.last_seen.unwrap_or(peer.since)) <= after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_peer_goes_through_lymphs_states() {
        let config = ConnectionConfig::default();
        let mut peers = Peers::default();
        let t0 = Instant::now();
        assert_eq!(peers.status("a", &config, t0), PeerStatus::Unknown);
        peers.sent("a", t0);
        assert_eq!(peers.status("a", &config, t0 + Duration::from_secs(2)), PeerStatus::Unknown);
        assert_eq!(peers.status("a", &config, t0 + Duration::from_secs(4)), PeerStatus::Unresponsive);
        peers.received("a", false, t0 + Duration::from_secs(4));
        assert_eq!(peers.status("a", &config, t0 + Duration::from_secs(5)), PeerStatus::Responsive);
        for s in 5..=16 {
            peers.received("a", true, t0 + Duration::from_secs(s));
        }
        assert_eq!(peers.status("a", &config, t0 + Duration::from_secs(16)), PeerStatus::Idle);
        assert!(PeerStatus::Idle.is_alive());
        assert_eq!(peers.status("a", &config, t0 + Duration::from_secs(20)), PeerStatus::Unresponsive);
        assert!(!PeerStatus::Unresponsive.is_alive());
        peers.prune(Duration::from_secs(30), t0 + Duration::from_secs(47));
        assert_eq!(peers.endpoints(), Vec::<String>::new());
    }
}
