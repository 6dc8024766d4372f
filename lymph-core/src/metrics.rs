//! A container's metrics, served by the built-in `lymph.get_metrics` in lymph's form: a list of
//! `[name, value, tags]`.
//!
//! | name | tags | value |
//! |---|---|---|
//! | `rpc` | `subject` | requests received (lymph's own counter) |
//! | `rpc.error_count` | `subject`, `kind` (`ERROR`, `NACK`) | requests answered with an error |
//! | `rpc.duration_ms` | `subject` | total handling time in milliseconds (divide by `rpc`) |
//! | `rpc.connection_count` | | peers the container talks to |
//! | `rpc.in_flight` | | requests and events being handled now |
//! | `events` | `event_type`, `handler` | events handled |
//! | `events.failed` | `event_type`, `handler` | events whose handler failed |
//! | `process.memory.rss` | | resident memory of the process in bytes (Linux) |
//!
//! Every entry also carries the container's `identity` and `endpoint` tags.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::Value;

/// What one subject's requests add up to.
#[derive(Debug, Default)]
struct Requests {
    count: u64,
    duration_us: u64,
    errors: u64,
    nacks: u64,
}

#[derive(Debug, Default)]
struct Counts {
    requests: BTreeMap<String, Requests>,
    events: BTreeMap<(String, String), u64>,
    failed_events: BTreeMap<(String, String), u64>,
}

/// The counters of one container.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    counts: Mutex<Counts>,
}

impl Metrics {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request for `subject` was handled in `duration`; `error` is its reply kind (`ERROR` or
    /// `NACK`) if it failed.
    pub(crate) fn request(&self, subject: &str, duration: Duration, error: Option<&'static str>) {
        let mut counts = self.counts();
        // Known subjects, the usual case, cost no allocation.
        if !counts.requests.contains_key(subject) {
            counts.requests.insert(subject.to_owned(), Requests::default());
        }
        let Some(requests) = counts.requests.get_mut(subject) else { return };
        requests.count += 1;
        requests.duration_us += u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        match error {
            Some("NACK") => requests.nacks += 1,
            Some(_) => requests.errors += 1,
            None => {}
        }
    }

    /// An event of `event_type` went through `handler`.
    pub(crate) fn event(&self, event_type: &str, handler: &str, failed: bool) {
        let key = (event_type.to_owned(), handler.to_owned());
        let mut counts = self.counts();
        if failed {
            *counts.failed_events.entry(key.clone()).or_default() += 1;
        }
        *counts.events.entry(key).or_default() += 1;
    }

    /// The metrics in lymph's form, with the gauges given and `tags` on every entry.
    pub(crate) fn series(&self, connections: usize, in_flight: usize, tags: &[(&str, &str)]) -> Value {
        let entry = |name: &str, value: Value, own: Vec<(&str, Value)>| {
            let mut all: Vec<(Value, Value)> = own.into_iter().map(|(k, v)| (Value::from(k), v)).collect();
            all.extend(tags.iter().map(|(k, v)| (Value::from(*k), Value::from(*v))));
            Value::Array(vec![Value::from(name), value, Value::Map(all)])
        };
        let count = |n: u64| Value::from(i64::try_from(n).unwrap_or(i64::MAX));
        let counts = self.counts();
        let mut series = Vec::new();
        for (subject, requests) in &counts.requests {
            let tag = || vec![("subject", Value::from(subject.as_str()))];
            series.push(entry("rpc", count(requests.count), tag()));
            for (kind, n) in [("ERROR", requests.errors), ("NACK", requests.nacks)] {
                if n > 0 {
                    let mut tags = tag();
                    tags.push(("kind", Value::from(kind)));
                    series.push(entry("rpc.error_count", count(n), tags));
                }
            }
            #[allow(clippy::cast_precision_loss)]
            let ms = requests.duration_us as f64 / 1000.0;
            series.push(entry("rpc.duration_ms", Value::F64(ms), tag()));
        }
        for ((event_type, handler), n) in &counts.events {
            let own =
                vec![("event_type", Value::from(event_type.as_str())), ("handler", Value::from(handler.as_str()))];
            series.push(entry("events", count(*n), own));
        }
        for ((event_type, handler), n) in &counts.failed_events {
            let own =
                vec![("event_type", Value::from(event_type.as_str())), ("handler", Value::from(handler.as_str()))];
            series.push(entry("events.failed", count(*n), own));
        }
        series.push(entry("rpc.connection_count", count(connections as u64), Vec::new()));
        series.push(entry("rpc.in_flight", count(in_flight as u64), Vec::new()));
        if let Some(rss) = resident_memory() {
            series.push(entry("process.memory.rss", count(rss), Vec::new()));
        }
        Value::Array(series)
    }
}

/// The process's resident memory in bytes, from `/proc/self/statm` (pages of 4 KiB).
fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
