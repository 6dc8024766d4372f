//! Checkers: properties every run must have, read from its [`Timeline`].
//!
//! Each checker returns a [`Violation`] naming the trace ids and simulated times involved, so a
//! failing seed points at the messages to look at in the rendered timeline.

use std::collections::BTreeMap;
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

/// Every request a host sent (heartbeats aside) got a reply. One without means its caller timed
/// out or failed: run this where no fault should cost a request.
///
/// # Errors
///
/// The first request without a reply.
pub fn every_request_answered(timeline: &Timeline) -> Result<(), Violation> {
    let entries = timeline.entries();
    let answered: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| is_reply(e, Direction::Received))
        .filter_map(|e| Some((e.host.as_str(), e.re.as_deref()?)))
        .collect();
    for e in entries.iter().filter(|e| is_request(e, Direction::Sent)) {
        let Some(id) = e.id.as_deref() else { continue };
        if !answered.contains(&(e.host.as_str(), id)) {
            let message = format!("{}'s {} request got no reply", e.host, e.subject);
            return Err(violation("every_request_answered", message, &[e]));
        }
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
        let queue = e.detail.split_whitespace().find_map(|w| w.strip_prefix("queue=")).unwrap_or_default();
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
