//! A simulated host as its backends see it: its name, the timeline, and its power switch.

use std::fmt;
use std::sync::Arc;

use lymph_core::Latch;

use super::MessageFaults;
use crate::timeline::Timeline;

/// One simulated host, as the simulated backends created in it see it: its name, the timeline
/// they record on, and a power switch.
///
/// [`power_off`](SimHost::power_off) tears down every connection the host's backends hold and
/// refuses new ones. The runner uses it just before it crashes or restarts a host: turmoil
/// crashes a host by dropping its tokio runtime, which drops tasks in an order that depends on
/// tokio's process-wide task ids, so the connections would close (and their FINs take the
/// simulator's random latencies) in an order that changes from one run to the next in the same
/// process. Closed by their own tasks instead, they close in the order those tasks run, which the
/// seed fixes.
#[derive(Clone)]
pub struct SimHost {
    name: Arc<str>,
    timeline: Timeline,
    power: Latch,
    faults: MessageFaults,
}

impl fmt::Debug for SimHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHost").field("name", &self.name).field("down", &self.is_down()).finish()
    }
}

impl SimHost {
    /// A powered-on host named `name` (its turmoil host name) recording on `timeline`.
    pub fn new(name: &str, timeline: Timeline) -> Self {
        Self { name: name.into(), timeline, power: Latch::new(), faults: MessageFaults::default() }
    }

    /// The same host, applying the message faults of `faults` (shared by the hosts of a world)
    /// to the messages it sends.
    pub fn with_faults(mut self, faults: MessageFaults) -> Self {
        self.faults = faults;
        self
    }

    /// The message faults applied to what the host sends.
    pub fn faults(&self) -> &MessageFaults {
        &self.faults
    }

    /// The host's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The timeline the host's backends record on.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// Closes every connection of the host's backends (each by the task that owns it, the next
    /// time the host runs) and refuses new ones. There is no way back: a restarted host gets a
    /// new `SimHost`.
    pub fn power_off(&self) {
        self.power.set();
    }

    /// Whether [`power_off`](SimHost::power_off) was called.
    pub fn is_down(&self) -> bool {
        self.power.is_set()
    }

    /// The switch, for the tasks that close their connection when it flips.
    pub(crate) fn down(&self) -> Latch {
        self.power.clone()
    }
}
