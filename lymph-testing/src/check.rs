//! Checkers: properties every run must have, read from its [`Timeline`].
//!
//! Each checker returns a [`Violation`] naming the trace ids and simulated times involved, so a
//! failing seed points at the messages to look at in the rendered timeline.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::timeline::{Direction, Entry, Timeline};

/// A property a run did not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The checker that found it.
    pub checker: &'static str,
    /// What went wrong.
    pub message: String,
    /// The trace ids involved.
    pub trace_ids: Vec<String>,
    /// The simulated times involved.
    pub times: Vec<Duration>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.checker, self.message)?;
        if !self.trace_ids.is_empty() {
            write!(f, " (traces {})", self.trace_ids.join(", "))?;
        }
        if !self.times.is_empty() {
            let times: Vec<String> = self.times.iter().map(|t| format!("{:.3}s", t.as_secs_f64())).collect();
            write!(f, " (at {})", times.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

const REPLY_KINDS: [&str; 4] = ["REP", "ERROR", "NACK", "ACK"];

fn is_request(e: &Entry, direction: Direction) -> bool {
    e.kind == "REQ" && e.direction == direction && !e.is_heartbeat()
}

fn is_reply(e: &Entry, direction: Direction) -> bool {
    REPLY_KINDS.contains(&e.kind.as_str()) && e.direction == direction
}

/// Whether `e` records a host giving up on a request it sent.
fn is_give_up(e: &Entry) -> bool {
    e.kind == "timeout" && e.re.is_some()
}

/// The queue an event entry names in its detail (`queue=<name>`).
fn queue_of(e: &Entry) -> Option<&str> {
    e.detail.split_whitespace().find_map(|w| w.strip_prefix("queue="))
}

fn violation(checker: &'static str, message: String, entries: &[&Entry]) -> Violation {
    let mut trace_ids: Vec<String> = entries.iter().filter_map(|e| e.trace_id.clone()).collect();
    trace_ids.dedup();
    Violation { checker, message, trace_ids, times: entries.iter().map(|e| e.time).collect() }
}

/// Every request a host sent got at most one reply: a second reply to one request (a duplicate
/// on the way back) reached its caller.
///
/// # Errors
///
/// The first request with two or more replies.
pub fn at_most_one_reply(timeline: &Timeline) -> Result<(), Violation> {
    let entries = timeline.entries();
    let mut replies: BTreeMap<(&str, &str), Vec<&Entry>> = BTreeMap::new();
    for e in entries.iter().filter(|e| is_reply(e, Direction::Received)) {
        if let Some(re) = e.re.as_deref() {
            replies.entry((e.host.as_str(), re)).or_default().push(e);
        }
    }
    for e in entries.iter().filter(|e| is_request(e, Direction::Sent)) {
        let Some(id) = e.id.as_deref() else { continue };
        if let Some(answers) = replies.get(&(e.host.as_str(), id)).filter(|r| r.len() > 1) {
            let mut involved = vec![e];
            involved.extend(answers.iter().copied());
            let message = format!("{} got {} replies to one {} request", e.host, answers.len(), e.subject);
            return Err(violation("at_most_one_reply", message, &involved));
        }
    }
    Ok(())
}

/// Every request a host sent (heartbeats aside) got a reply its caller took: a reply received
/// before the host gave up on the request (a `timeout` entry, see
/// [`RpcTransport::gave_up`](lymph_core::RpcTransport::gave_up)). A request without one cost its
/// caller a timeout or a failure: run this where no fault should cost a request.
///
/// A reply that came after its caller gave up does not count (see [`no_reply_after_give_up`]).
///
/// # Errors
///
/// The first request its caller gave up on, or that got no reply at all (its caller still waits,
/// its send failed, or it stopped waiting without a timeout).
pub fn every_request_answered(timeline: &Timeline) -> Result<(), Violation> {
    let entries = timeline.entries();
    let mut answered: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut gave_up: BTreeMap<(&str, &str), &Entry> = BTreeMap::new();
    for e in &entries {
        let Some(re) = e.re.as_deref() else { continue };
        let key = (e.host.as_str(), re);
        if is_give_up(e) {
            gave_up.entry(key).or_insert(e);
        } else if is_reply(e, Direction::Received) {
            answered.insert(key);
        }
    }
    for e in entries.iter().filter(|e| is_request(e, Direction::Sent)) {
        let Some(id) = e.id.as_deref() else { continue };
        let key = (e.host.as_str(), id);
        if let Some(timeout) = gave_up.get(&key) {
            let waited = timeout.time.saturating_sub(e.time).as_secs_f64();
            let message = format!(
                "{}'s {} request got no reply in time: its caller gave up after {waited:.3}s",
                e.host, e.subject
            );
            return Err(violation("every_request_answered", message, &[e, timeout]));
        }
        if !answered.contains(&key) {
            let message =
                format!("{}'s {} request got no reply, and its caller recorded no timeout", e.host, e.subject);
            return Err(violation("every_request_answered", message, &[e]));
        }
    }
    Ok(())
}

/// No reply reached a host for a request it had given up on (a `timeout` entry, see
/// [`RpcTransport::gave_up`](lymph_core::RpcTransport::gave_up)): otherwise the request's handler
/// ran while its caller reported a failure, an outcome the caller cannot tell from a request that
/// never arrived. A caller that retries makes a handler that is not idempotent do its work twice.
///
/// A reply recorded before the host's give-up counts as well: the host received it, but it was
/// still on its way to the caller when the caller stopped waiting.
///
/// # Errors
///
/// The first request given up on that got a reply anyway, naming its trace and the times it was
/// sent, given up on, and answered.
pub fn no_reply_after_give_up(timeline: &Timeline) -> Result<(), Violation> {
    let entries = timeline.entries();
    let mut requests: BTreeMap<(&str, &str), &Entry> = BTreeMap::new();
    let mut replies: BTreeMap<(&str, &str), (usize, &Entry)> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if e.kind == "REQ"
            && e.direction == Direction::Sent
            && let Some(id) = e.id.as_deref()
        {
            requests.entry((e.host.as_str(), id)).or_insert(e);
        } else if is_reply(e, Direction::Received)
            && let Some(re) = e.re.as_deref()
        {
            replies.entry((e.host.as_str(), re)).or_insert((i, e));
        }
    }
    for (i, timeout) in entries.iter().enumerate().filter(|(_, e)| is_give_up(e)) {
        let Some(id) = timeout.re.as_deref() else { continue };
        let key = (timeout.host.as_str(), id);
        let Some(&(j, reply)) = replies.get(&key) else { continue };
        let request = requests.get(&key).copied();
        let (subject, waited) = match request {
            Some(r) => {
                (r.subject.as_str(), format!(" after {:.3}s", timeout.time.saturating_sub(r.time).as_secs_f64()))
            }
            None => (timeout.subject.as_str(), String::new()),
        };
        let (host, kind) = (&timeout.host, &reply.kind);
        let message = if j > i {
            let late = reply.time.saturating_sub(timeout.time).as_secs_f64();
            format!("{host} gave up on its {subject} request{waited}, and its {kind} reply arrived {late:.3}s later")
        } else {
            format!(
                "{host} gave up on its {subject} request{waited} while its {kind} reply was on its way to the caller"
            )
        };
        let involved: Vec<&Entry> = request.into_iter().chain([timeout, reply]).collect();
        return Err(violation("no_reply_after_give_up", message, &involved));
    }
    Ok(())
}

/// No host received the same request twice, so no handler ran twice for one call; a handler that
/// is not idempotent would otherwise do its work twice.
///
/// # Errors
///
/// The first request received more than once.
pub fn requests_handled_at_most_once(timeline: &Timeline) -> Result<(), Violation> {
    let entries = timeline.entries();
    let mut seen: BTreeMap<(&str, &str), Vec<&Entry>> = BTreeMap::new();
    for e in entries.iter().filter(|e| is_request(e, Direction::Received)) {
        if let Some(id) = e.id.as_deref() {
            let copies = seen.entry((e.host.as_str(), id)).or_default();
            copies.push(e);
            if copies.len() > 1 {
                let message = format!("{} received one {} request {} times", e.host, e.subject, copies.len());
                return Err(violation("requests_handled_at_most_once", message, copies));
            }
        }
    }
    Ok(())
}

/// No event was delivered to one queue more than `max` times (a handler with `retry = N` runs at
/// most `N + 1` times per event). Events are told apart by type and trace id.
///
/// # Errors
///
/// The first event delivered to a queue more than `max` times.
pub fn deliveries_at_most(timeline: &Timeline, max: usize) -> Result<(), Violation> {
    let entries = timeline.entries();
    let mut deliveries: BTreeMap<(String, &str, Option<&str>), Vec<&Entry>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.kind == "deliver") {
        let queue = queue_of(e).unwrap_or_default();
        let key = (queue.to_owned(), e.subject.as_str(), e.trace_id.as_deref());
        let list = deliveries.entry(key).or_default();
        list.push(e);
        if list.len() > max {
            let message =
                format!("{} event delivered to queue {queue} {} times (at most {max})", e.subject, list.len());
            return Err(violation("deliveries_at_most", message, list));
        }
    }
    Ok(())
}

/// Why an event the broker routed to a queue never left it, in one of the two ways lymph's design
/// allows (see [`every_event_delivered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossCause {
    /// The broker restarted (or crashed and started again) first: lymph's queues are not
    /// durable, so a RabbitMQ restart loses what they hold.
    BrokerRestart,
    /// Its queue was a broadcast or once queue (auto-delete), deleted when its last consumer went
    /// away, e.g. with a crashed or partitioned host: the events waiting in it, or delivered to
    /// it and not settled, go with it.
    QueueDeleted,
}

/// An event that never left a queue it was routed to, because the broker restarted or the queue
/// was deleted: expected in lymph's design rather than a violation. See [`every_event_delivered`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostEvent {
    /// The event type.
    pub event_type: String,
    /// The event's trace id, when it had one.
    pub trace_id: Option<String>,
    /// The queue it was routed to (the broker's name for it).
    pub queue: String,
    /// When the broker routed it (its `publish` entry).
    pub published: Duration,
    /// When it was lost: the broker's next `start`, or the queue's `discard` entry for it.
    pub lost: Duration,
    /// How it was lost.
    pub cause: LossCause,
}

impl fmt::Display for LostEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.cause {
            LossCause::BrokerRestart => "in the broker restart",
            LossCause::QueueDeleted => "with its queue, deleted with its last consumer,",
        };
        write!(
            f,
            "{} event for queue {} (trace {}) published at {:.3}s, lost {how} at {:.3}s",
            self.event_type,
            self.queue,
            self.trace_id.as_deref().unwrap_or("-"),
            self.published.as_secs_f64(),
            self.lost.as_secs_f64()
        )
    }
}

/// Whether `delivered`, a queue name as a consumer subscribed it (its `deliver` entry), names
/// `queue`, the broker's name: the same, or a broadcast or once queue `<delivered>-<n>`.
fn same_queue(queue: &str, delivered: &str) -> bool {
    queue == delivered
        || queue
            .strip_prefix(delivered)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Every event the broker routed to a queue (a `publish` entry of the simulated broker, which
/// lists the queues bound to the event's type at that moment) was delivered at least once
/// afterwards to a consumer of each of those queues (a `deliver` entry naming the queue), so no
/// event was lost on the way, e.g. by a dropped event
/// ([`MessageFault`](crate::sim::MessageFault) of kind `EVENT`).
///
/// Two losses are not violations, because lymph's design allows them, and are returned instead so
/// a test can assert them ([`LostEvent`]):
/// - an event not delivered from a queue before the broker started again (a later `start` entry
///   of the same broker host): the restart lost it, as RabbitMQ loses what its non-durable queues
///   hold;
/// - an event lost with a broadcast or once queue (a `discard` entry of the broker for it): the
///   queue is deleted with its last consumer, as RabbitMQ deletes auto-delete queues, with the
///   events waiting in it and those its consumer had not settled (which count as lost, even if
///   they were delivered).
///
/// Events are told apart by type and trace id (as in [`deliveries_at_most`]); each delivery or
/// discard counts for one routing of its event, in order, so an event routed twice needs two.
/// Run this once the run has settled: an event still on its way counts as not delivered.
///
/// # Errors
///
/// The first event routed to a queue and never delivered from it, neither discarded with it nor
/// lost in a broker restart.
pub fn every_event_delivered(timeline: &Timeline) -> Result<Vec<LostEvent>, Violation> {
    let entries = timeline.entries();
    let mut used = vec![false; entries.len()];
    let mut lost = Vec::new();
    for (i, published) in entries.iter().enumerate().filter(|(_, e)| e.kind == "publish") {
        let Some(queues) = published.detail.strip_prefix("queues=") else { continue };
        for queue in queues.split(',').filter(|q| !q.is_empty()) {
            let loss = |lost: &Entry, cause| LostEvent {
                event_type: published.subject.clone(),
                trace_id: published.trace_id.clone(),
                queue: queue.to_owned(),
                published: published.time,
                lost: lost.time,
                cause,
            };
            let restart = entries
                .iter()
                .skip(i + 1)
                .position(|e| e.kind == "start" && e.subject == "broker" && e.host == published.host)
                .map_or(entries.len(), |at| at + i + 1);
            // A discard names the broker's queue exactly, while a delivery names the queue as its
            // consumer subscribed it, which all broadcast queues of one handler share: look for
            // the discard first, so another instance's delivery is not taken for this queue's.
            let discard = entries.iter().enumerate().take(restart).skip(i + 1).find(|(j, e)| {
                !used[*j]
                    && e.kind == "discard"
                    && e.host == published.host
                    && e.subject == published.subject
                    && e.trace_id == published.trace_id
                    && queue_of(e) == Some(queue)
            });
            if let Some((j, discarded)) = discard {
                used[j] = true;
                lost.push(loss(discarded, LossCause::QueueDeleted));
                continue;
            }
            let delivery = entries.iter().enumerate().skip(i + 1).find(|(j, e)| {
                !used[*j]
                    && e.kind == "deliver"
                    && e.subject == published.subject
                    && e.trace_id == published.trace_id
                    && queue_of(e).is_some_and(|delivered| same_queue(queue, delivered))
            });
            if let Some((j, _)) = delivery {
                used[j] = true;
                continue;
            }
            match entries.get(restart) {
                Some(restarted) => lost.push(loss(restarted, LossCause::BrokerRestart)),
                None => {
                    let message =
                        format!("{} event published to queue {queue} was never delivered from it", published.subject);
                    return Err(violation("every_event_delivered", message, &[published]));
                }
            }
        }
    }
    Ok(lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, kind: &str, subject: &str, trace: &str, detail: &str) -> Entry {
        Entry::now(host, kind, subject).trace(Some(trace)).detail(detail)
    }

    fn rpc(host: &str, kind: &str, direction: Direction, millis: u64) -> Entry {
        let mut e = Entry::now(host, kind, "echo.upper").trace(Some("t1")).direction(direction);
        e.time = Duration::from_millis(millis);
        if kind == "REQ" { e.id("r1") } else { e.re("r1") }
    }

    #[test]
    fn a_reply_after_a_give_up_is_late_and_does_not_answer() {
        let timeline = Timeline::new();
        timeline.record(rpc("test", "REQ", Direction::Sent, 100));
        timeline.record(rpc("echo", "REQ", Direction::Received, 110));
        assert_eq!(no_reply_after_give_up(&timeline), Ok(()));
        timeline.record(rpc("test", "timeout", Direction::Local, 3100));
        assert_eq!(no_reply_after_give_up(&timeline), Ok(()), "no reply came");
        let unanswered = every_request_answered(&timeline).expect_err("its caller gave up");
        assert!(unanswered.message.contains("gave up after 3.000s"), "{unanswered}");
        assert_eq!(unanswered.times, [Duration::from_millis(100), Duration::from_millis(3100)]);
        // The echo host's reply, sent and then received by the caller.
        timeline.record(rpc("echo", "REP", Direction::Sent, 3500));
        assert_eq!(no_reply_after_give_up(&timeline), Ok(()), "a reply sent is not yet one received");
        timeline.record(rpc("test", "REP", Direction::Received, 3600));
        let late = no_reply_after_give_up(&timeline).expect_err("the reply came after the give-up");
        assert_eq!(late.trace_ids, ["t1"]);
        assert_eq!(late.times, [100, 3100, 3600].map(Duration::from_millis));
        assert!(late.message.contains("REP reply arrived 0.500s later"), "{late}");
        assert!(every_request_answered(&timeline).is_err(), "a late reply answers no caller");
    }

    #[test]
    fn a_reply_on_its_way_when_the_caller_gave_up_counts_as_late() {
        let timeline = Timeline::new();
        timeline.record(rpc("test", "REQ", Direction::Sent, 100));
        timeline.record(rpc("test", "REP", Direction::Received, 3100));
        assert_eq!(every_request_answered(&timeline), Ok(()));
        timeline.record(rpc("test", "timeout", Direction::Local, 3100));
        let late = no_reply_after_give_up(&timeline).expect_err("the caller did not take the reply");
        assert!(late.message.contains("on its way to the caller"), "{late}");
        // A give-up on another host, or for another request, is not this request's.
        let other = Timeline::new();
        other.record(rpc("test", "REQ", Direction::Sent, 100));
        other.record(rpc("test", "REP", Direction::Received, 200));
        other.record(rpc("echo", "timeout", Direction::Local, 3100));
        other.record(rpc("test", "timeout", Direction::Local, 3100).re("r2"));
        assert_eq!(no_reply_after_give_up(&other), Ok(()));
        assert_eq!(every_request_answered(&other), Ok(()));
    }

    #[test]
    fn broadcast_queue_names_match_their_subscription() {
        assert!(same_queue("q", "q"));
        assert!(same_queue("q-12", "q"));
        assert!(!same_queue("q-x", "q"));
        assert!(!same_queue("q-", "q"));
        assert!(!same_queue("qq", "q"));
    }

    #[test]
    fn every_event_delivered_pairs_each_routing_with_one_delivery() {
        let timeline = Timeline::new();
        timeline.record(entry("broker", "start", "broker", "", ""));
        timeline.record(entry("broker", "publish", "e", "t1", "queues=a,b-1"));
        timeline.record(entry("x", "deliver", "e", "t1", "queue=a tag=1:1"));
        timeline.record(entry("y", "deliver", "e", "t1", "queue=b tag=1:1"));
        assert_eq!(every_event_delivered(&timeline), Ok(Vec::new()));
        // Routed twice, delivered to `a` once.
        timeline.record(entry("broker", "publish", "e", "t1", "queues=a"));
        let violation = every_event_delivered(&timeline).expect_err("the second copy was not delivered");
        assert_eq!(violation.trace_ids, ["t1"]);
        assert!(violation.message.contains("queue a"), "{violation}");
        // A restart afterwards explains the loss.
        timeline.record(entry("broker", "start", "broker", "", ""));
        let lost = every_event_delivered(&timeline).expect("lost in a restart");
        assert_eq!(lost.len(), 1);
        assert_eq!((lost[0].queue.as_str(), lost[0].trace_id.as_deref()), ("a", Some("t1")));
    }
}
