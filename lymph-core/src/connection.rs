//! Peer liveness: lymph's per-connection heartbeats and the status they give a peer.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// Heartbeat and liveness settings, lymph's `container.rpc.connection`.
///
/// As in lymph, every peer is heartbeated on its own: a peer that cannot be reached (each send to
/// it waiting out a connect timeout) delays no heartbeat to the others. A peer that is a
/// registered instance of a service the container calls is heartbeated while it is registered;
/// any other peer is forgotten once silent for ten `timeout`s (lymph's `unresponsive_disconnect`,
/// 30 s), and at most 256 of them are kept, the longest silent forgotten first.
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

/// How many heartbeat timeouts a peer that is not a registered instance may stay silent before
/// it is forgotten: lymph's `unresponsive_disconnect`, 30 s with lymph's 3 s timeout.
const FORGET_AFTER_TIMEOUTS: u32 = 10;

/// The most peers that are not registered instances (callers, `lymph request` runs, endpoints
/// that are gone) a container heartbeats; beyond it, the longest silent are forgotten first.
pub(crate) const MAX_UNREGISTERED_PEERS: usize = 256;

#[derive(Debug)]
struct Peer {
    since: Instant,
    last_seen: Option<Instant>,
    last_used: Instant,
    /// A request to it could not be sent, and nothing arrived from it since.
    unreachable: bool,
    /// A heartbeat to it is still being sent: the next rounds skip it until that send ends.
    pinging: bool,
}

impl Peer {
    fn new(now: Instant) -> Self {
        Self { since: now, last_seen: None, last_used: now, unreachable: false, pinging: false }
    }

    /// When it was last heard from, or first known of.
    fn heard(&self) -> Instant {
        self.last_seen.unwrap_or(self.since)
    }
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
            self.peers.insert(endpoint.to_owned(), Peer::new(now));
        }
    }

    /// Notes that a message arrived from `endpoint`; heartbeats do not make a peer busy.
    pub(crate) fn received(&mut self, endpoint: &str, heartbeat: bool, now: Instant) {
        let peer = self.peers.entry(endpoint.to_owned()).or_insert_with(|| Peer::new(now));
        peer.last_seen = Some(now);
        peer.unreachable = false;
        if !heartbeat {
            peer.last_used = now;
        }
    }

    /// Notes that a request to `endpoint` could not be sent at all (its endpoint does not parse,
    /// the connection was refused): the peer is unresponsive, and not chosen, until a message
    /// arrives from it. It stays heartbeated, so a peer that comes up is heard again.
    pub(crate) fn unreachable(&mut self, endpoint: &str, now: Instant) {
        self.peers.entry(endpoint.to_owned()).or_insert_with(|| Peer::new(now)).unreachable = true;
    }

    /// The status of `endpoint`.
    pub(crate) fn status(&self, endpoint: &str, config: &ConnectionConfig, now: Instant) -> PeerStatus {
        let Some(peer) = self.peers.get(endpoint) else {
            return PeerStatus::Unknown;
        };
        match peer.last_seen {
            _ if peer.unreachable => PeerStatus::Unresponsive,
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

    /// The peers to send a heartbeat now, in endpoint order: every peer but those whose last
    /// heartbeat is still being sent (a peer that cannot be reached may take a connect timeout),
    /// so no peer's heartbeats wait on another's. Each is marked until [`pinged`](Self::pinged).
    pub(crate) fn heartbeats_due(&mut self) -> Vec<String> {
        self.peers
            .iter_mut()
            .filter(|(_, peer)| !peer.pinging)
            .map(|(endpoint, peer)| {
                peer.pinging = true;
                endpoint.clone()
            })
            .collect()
    }

    /// Notes that sending the heartbeat to `endpoint` ended, sent or not.
    pub(crate) fn pinged(&mut self, endpoint: &str) {
        if let Some(peer) = self.peers.get_mut(endpoint) {
            peer.pinging = false;
        }
    }

    /// Forgets the peers that left, and returns them in endpoint order.
    ///
    /// lymph keeps a connection, and heartbeats it, for as long as its process runs. Here a peer
    /// that is a registered instance (`registered` says which) is kept as long as it is
    /// registered, however silent; any other peer (a caller, a `lymph request` run that exited)
    /// is forgotten once it sent nothing for ten heartbeat timeouts (lymph's
    /// `unresponsive_disconnect`, 30 s), and beyond [`MAX_UNREGISTERED_PEERS`] of them the
    /// longest silent go first. A forgotten peer is heartbeated again once it is used again.
    pub(crate) fn prune(
        &mut self,
        registered: impl Fn(&str) -> bool,
        config: &ConnectionConfig,
        now: Instant,
    ) -> Vec<String> {
        let after = config.timeout * FORGET_AFTER_TIMEOUTS;
        let mut unregistered: Vec<(Instant, &String)> = Vec::new();
        let mut forgotten = Vec::new();
        for (endpoint, peer) in &self.peers {
            if registered(endpoint) {
                continue;
            }
            if now.duration_since(peer.heard()) > after {
                forgotten.push(endpoint.clone());
            } else {
                unregistered.push((peer.heard(), endpoint));
            }
        }
        if unregistered.len() > MAX_UNREGISTERED_PEERS {
            // Oldest first, ties in endpoint order (the sort is stable).
            unregistered.sort_by_key(|(heard, _)| *heard);
            let excess = unregistered.len() - MAX_UNREGISTERED_PEERS;
            forgotten.extend(unregistered[..excess].iter().map(|(_, endpoint)| (*endpoint).clone()));
            forgotten.sort();
        }
        for endpoint in &forgotten {
            self.peers.remove(endpoint);
        }
        forgotten
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
        assert_eq!(peers.prune(|_| false, &config, t0 + Duration::from_secs(47)), ["a"]);
        assert_eq!(peers.endpoints(), Vec::<String>::new());
    }

    #[tokio::test(start_paused = true)]
    async fn peers_that_left_are_forgotten_and_registered_ones_kept() {
        let config = ConnectionConfig::default();
        let mut peers = Peers::default();
        let t0 = Instant::now();
        peers.sent("registered", t0);
        peers.received("caller", false, t0);
        peers.received("alive", false, t0);
        peers.received("alive", true, t0 + Duration::from_secs(29));
        let registered = |endpoint: &str| endpoint == "registered";
        assert!(peers.prune(registered, &config, t0 + Duration::from_secs(30)).is_empty(), "30 s is not too long");
        assert_eq!(peers.prune(registered, &config, t0 + Duration::from_secs(31)), ["caller"]);
        assert_eq!(peers.prune(registered, &config, t0 + Duration::from_secs(3600)), ["alive"]);
        assert_eq!(peers.endpoints(), ["registered"], "a registered instance is kept however silent");
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_so_many_unregistered_peers_are_kept_the_longest_silent_go_first() {
        let config = ConnectionConfig::default();
        let mut peers = Peers::default();
        let t0 = Instant::now();
        peers.sent("registered", t0);
        let extra = 10;
        for i in 0..MAX_UNREGISTERED_PEERS + extra {
            // Peer 0 is the one heard from last.
            let heard = t0 + Duration::from_millis(((MAX_UNREGISTERED_PEERS + extra - i) * 10) as u64);
            peers.received(&format!("caller-{i:04}"), false, heard);
        }
        let now = t0 + Duration::from_secs(5);
        let forgotten = peers.prune(|endpoint| endpoint == "registered", &config, now);
        let expected: Vec<String> =
            (MAX_UNREGISTERED_PEERS..MAX_UNREGISTERED_PEERS + extra).map(|i| format!("caller-{i:04}")).collect();
        assert_eq!(forgotten, expected);
        assert_eq!(peers.endpoints().len(), MAX_UNREGISTERED_PEERS + 1);
        assert!(peers.endpoints().contains(&"registered".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_whose_heartbeat_is_still_being_sent_is_skipped() {
        let mut peers = Peers::default();
        let t0 = Instant::now();
        peers.sent("a", t0);
        peers.sent("b", t0);
        assert_eq!(peers.heartbeats_due(), ["a", "b"]);
        peers.pinged("b");
        assert_eq!(peers.heartbeats_due(), ["b"], "a's heartbeat has not ended");
        peers.pinged("a");
        peers.pinged("b");
        assert_eq!(peers.heartbeats_due(), ["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_peer_is_unresponsive_until_heard_from() {
        let config = ConnectionConfig::default();
        let mut peers = Peers::default();
        let t0 = Instant::now();
        peers.sent("a", t0);
        peers.unreachable("a", t0);
        assert_eq!(peers.status("a", &config, t0), PeerStatus::Unresponsive);
        peers.received("a", true, t0 + Duration::from_secs(1));
        assert_eq!(peers.status("a", &config, t0 + Duration::from_secs(1)), PeerStatus::Responsive);
    }
}
