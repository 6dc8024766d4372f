//! Message-level faults: drop, duplicate or delay the next messages of a kind and subject, RPC
//! messages (as their sender sends them) or events (as the broker routes them).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// What happens to a message a [`MessageFault`] matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// The message is lost.
    Drop,
    /// The message is delivered twice.
    Duplicate,
    /// The message is delivered after this long (later messages may overtake it).
    Delay(Duration),
}

/// A fault applied to the next messages that match it, e.g. "drop the next REP of `echo.upper`"
/// or "drop the next `uppercase_transform_finished` event".
///
/// RPC messages are matched as their sender sends them. Events (kind `EVENT`) are matched where
/// the simulated broker routes them into their queues: a dropped event is lost for every queue,
/// a duplicated one is put into each queue twice, a delayed one is routed late (see
/// [`broker_server`](super::broker_server) for how this relates to RabbitMQ). Each applied fault
/// is recorded on the timeline as `drop`, `duplicate` or `delay`.
///
/// ```
/// use std::time::Duration;
/// use lymph_testing::sim::MessageFault;
///
/// let lose_a_reply = MessageFault::drop().kind("REP").subject("echo.upper");
/// let twice = MessageFault::duplicate().kind("REQ").subject("echo.upper").times(3);
/// let late = MessageFault::delay(Duration::from_secs(2)).kind("REQ");
/// let lost_event = MessageFault::drop().kind("EVENT").subject("uppercase_transform_finished");
/// # let _ = (lose_a_reply, twice, late, lost_event);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFault {
    action: FaultAction,
    kind: Option<String>,
    subject: Option<String>,
    times: u32,
}

impl MessageFault {
    /// Loses the matching messages.
    pub fn drop() -> Self {
        Self::new(FaultAction::Drop)
    }

    /// Delivers the matching messages twice.
    pub fn duplicate() -> Self {
        Self::new(FaultAction::Duplicate)
    }

    /// Delivers the matching messages `delay` late.
    pub fn delay(delay: Duration) -> Self {
        Self::new(FaultAction::Delay(delay))
    }

    fn new(action: FaultAction) -> Self {
        Self { action, kind: None, subject: None, times: 1 }
    }

    /// Only messages of this kind: `REQ`, `REP`, `ACK`, `NACK` or `ERROR` for RPC, `EVENT` for
    /// events. Without a kind, a fault matches RPC messages and events alike.
    pub fn kind(mut self, kind: &str) -> Self {
        self.kind = Some(kind.to_owned());
        self
    }

    /// Only messages about this subject (exactly): a request's `interface.method`, for a reply
    /// the subject of the request it answers, for an event its type.
    pub fn subject(mut self, subject: &str) -> Self {
        self.subject = Some(subject.to_owned());
        self
    }

    /// Applies to this many messages (1 unless set).
    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }

    fn matches(&self, kind: &str, subject: &str) -> bool {
        self.times > 0
            && self.kind.as_deref().is_none_or(|k| k == kind)
            && self.subject.as_deref().is_none_or(|s| s == subject)
    }
}

/// The message faults in force in one simulated world, shared by its hosts. Heartbeats
/// (`lymph.ping`) are never matched unless a fault names that subject.
///
/// It also counts, per pair of hosts, the faults that made the network drop messages between
/// them (one-way partitions): turmoil does not retransmit what it drops, so a connection that
/// lost a segment stalls for good, while a connection whose link never dropped can only be late,
/// and a real TCP connection would never give up on it.
#[derive(Clone, Default)]
pub struct MessageFaults {
    rules: Arc<Mutex<Vec<MessageFault>>>,
    cuts: Arc<Mutex<BTreeMap<(String, String), u64>>>,
}

impl fmt::Debug for MessageFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.rules.lock().unwrap_or_else(PoisonError::into_inner).iter()).finish()
    }
}

impl MessageFaults {
    /// Notes a fault that may drop messages between hosts `a` and `b`.
    pub(crate) fn cut(&self, a: &str, b: &str) {
        *self.cuts.lock().unwrap_or_else(PoisonError::into_inner).entry(pair(a, b)).or_default() += 1;
    }

    /// How many faults that may drop messages between hosts `a` and `b` there have been: a
    /// connection between them that stays silent, where this count has not changed since it
    /// connected, is slow, not broken.
    pub(crate) fn cuts(&self, a: &str, b: &str) -> u64 {
        self.cuts.lock().unwrap_or_else(PoisonError::into_inner).get(&pair(a, b)).copied().unwrap_or(0)
    }

    /// Adds a fault; faults apply in the order they were added.
    pub fn add(&self, fault: MessageFault) {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner).push(fault);
    }

    /// The action for a message of `kind` about `subject`, using up one application of the
    /// first matching fault.
    pub(crate) fn take(&self, kind: &str, subject: &str) -> Option<FaultAction> {
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        let heartbeat = subject == "lymph.ping";
        let rule = rules.iter_mut().find(|r| r.matches(kind, subject) && (!heartbeat || r.subject.is_some()))?;
        rule.times -= 1;
        let action = rule.action;
        rules.retain(|r| r.times > 0);
        Some(action)
    }
}

/// The unordered pair of hosts `a` and `b`.
fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b { (a.to_owned(), b.to_owned()) } else { (b.to_owned(), a.to_owned()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_match_kind_and_subject_and_wear_out() {
        let faults = MessageFaults::default();
        faults.add(MessageFault::drop().kind("REP").subject("echo.upper").times(2));
        faults.add(MessageFault::duplicate().kind("REQ"));
        assert_eq!(faults.take("REQ", "lymph.ping"), None, "heartbeats are left alone");
        assert_eq!(faults.take("REP", "echo.echo"), None);
        assert_eq!(faults.take("REP", "echo.upper"), Some(FaultAction::Drop));
        assert_eq!(faults.take("REQ", "echo.upper"), Some(FaultAction::Duplicate));
        assert_eq!(faults.take("REQ", "echo.upper"), None, "the duplicate fault is used up");
        assert_eq!(faults.take("REP", "echo.upper"), Some(FaultAction::Drop));
        assert_eq!(faults.take("REP", "echo.upper"), None);
    }

    #[test]
    fn event_faults_match_the_event_type_exactly() {
        let faults = MessageFaults::default();
        faults.add(MessageFault::drop().kind("EVENT").subject("uppercase_transform_finished"));
        assert_eq!(faults.take("REQ", "uppercase_transform_finished"), None, "another kind");
        assert_eq!(faults.take("EVENT", "uppercase_transform"), None, "another type");
        assert_eq!(faults.take("EVENT", "uppercase_transform_finished"), Some(FaultAction::Drop));
        assert_eq!(faults.take("EVENT", "uppercase_transform_finished"), None, "used up");
    }
}
