//! The timeline: everything that happened in a simulation, in order, with simulated timestamps.
//!
//! The simulated backends of [`sim`](crate::sim) append an [`Entry`] for every RPC message sent
//! and received, every request whose caller gave up waiting for its reply, every event emitted, delivered and settled, every registry change and every
//! session lost or re-established. Two runs of one seed must give identical timelines: compare
//! [`Timeline::entries`] or [`Timeline::render`] of both.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Whether an entry is a message leaving or reaching its host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Something that happened on the host itself.
    #[default]
    Local,
    /// A message the host sent.
    Sent,
    /// A message the host received.
    Received,
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// Simulated time since the simulation started (zero outside a simulation).
    pub time: Duration,
    /// The host it happened on.
    pub host: String,
    /// What happened: an RPC message kind (`REQ`, `REP`, `ACK`, `NACK`, `ERROR`), `timeout` when
    /// a host gave up waiting for the reply to a request it sent, an event step
    /// (`emit`, `deliver`, `ack`, `reject`, `retry`; on the broker, `publish` when it routes an
    /// event, `discard` when an event is lost with a broadcast or once queue deleted with its last
    /// consumer, and `start` when it starts with fresh queues), a registry change (`register`,
    /// `unregister`; `register-web`, `unregister-web` for web interfaces), a connection or session
    /// change (`connect`, `disconnect`; `session` when a registry session is resumed or expires),
    /// a broken user invariant (`invariant`), or a fault (`drop`, `duplicate`, `delay`, `fault`).
    pub kind: String,
    /// What it concerns: an RPC subject, an event type, a service name.
    pub subject: String,
    /// The trace id, when there is one.
    pub trace_id: Option<String>,
    /// Anything else worth showing.
    pub detail: String,
    /// For an RPC message, sent or received.
    pub direction: Direction,
    /// For an RPC request, its message id.
    pub id: Option<String>,
    /// For an RPC reply, the id of the request it answers; for a `timeout`, the id of the request
    /// given up on.
    pub re: Option<String>,
}

impl Entry {
    /// An entry stamped with the current simulated time ([`turmoil::sim_elapsed`], zero outside a
    /// simulation), without trace id or detail.
    pub fn now(host: impl Into<String>, kind: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            time: turmoil::sim_elapsed().unwrap_or(Duration::ZERO),
            host: host.into(),
            kind: kind.into(),
            subject: subject.into(),
            trace_id: None,
            detail: String::new(),
            direction: Direction::Local,
            id: None,
            re: None,
        }
    }

    /// Sets the direction.
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Sets the message id (of a request).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the id of the request a reply answers.
    pub fn re(mut self, re: impl Into<String>) -> Self {
        self.re = Some(re.into());
        self
    }

    /// Sets the trace id.
    pub fn trace(mut self, trace_id: Option<impl Into<String>>) -> Self {
        self.trace_id = trace_id.map(Into::into);
        self
    }

    /// Sets the detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Whether this entry is heartbeat traffic (`lymph.ping` requests and their replies).
    pub fn is_heartbeat(&self) -> bool {
        self.subject.starts_with("lymph.ping")
    }
}

/// How [`Timeline::render`] lays out the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Include heartbeat traffic (`lymph.ping`); off by default.
    pub heartbeats: bool,
    /// Group the entries by trace id, traces in order of first appearance, entries without a
    /// trace last.
    pub group_by_trace: bool,
}

/// A shared, append-only log of [`Entry`]s; clones append to the same log.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `entry`.
    pub fn record(&self, entry: Entry) {
        tracing::trace!(?entry, "timeline");
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).push(entry);
    }

    /// A copy of all entries, in the order they were recorded.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every entry.
    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Renders the entries as an aligned table, one line per entry:
    ///
    /// ```text
    ///   0.012s  echo-1  REQ  echo.upper  trace=3f2a1b2c  -> tcp://echo-2:4000 id=9e0c1d2a
    /// ```
    ///
    /// Trace ids are shortened to 8 characters. The output depends only on the entries.
    pub fn render(&self, options: &RenderOptions) -> String {
        let entries: Vec<Entry> =
            self.entries().into_iter().filter(|e| options.heartbeats || !e.is_heartbeat()).collect();
        let width = |f: fn(&Entry) -> usize| entries.iter().map(f).max().unwrap_or(0);
        let host_w = width(|e| e.host.chars().count());
        let kind_w = width(|e| e.kind.chars().count());
        let subject_w = width(|e| e.subject.chars().count());
        let line = |out: &mut String, e: &Entry| {
            let trace: String =
                e.trace_id.as_deref().map(|t| t.chars().take(8).collect()).unwrap_or_else(|| "-".into());
            let secs = e.time.as_secs_f64();
            let _ = writeln!(
                out,
                "{secs:>9.3}s  {:host_w$}  {:kind_w$}  {:subject_w$}  trace={trace:8}  {}",
                e.host, e.kind, e.subject, e.detail
            );
        };
        let mut out = String::new();
        if options.group_by_trace {
            let mut traces: Vec<Option<&str>> = Vec::new();
            for e in &entries {
                let t = e.trace_id.as_deref();
                if t.is_some() && !traces.contains(&t) {
                    traces.push(t);
                }
            }
            traces.push(None);
            for t in traces {
                let group: Vec<&Entry> = entries.iter().filter(|e| e.trace_id.as_deref() == t).collect();
                if group.is_empty() {
                    continue;
                }
                match t {
                    Some(t) => {
                        let _ = writeln!(out, "trace {t}");
                    }
                    None => out.push_str("no trace\n"),
                }
                for e in group {
                    line(&mut out, e);
                }
            }
        } else {
            for e in &entries {
                line(&mut out, e);
            }
        }
        // Trailing spaces of entries without detail are noise.
        out.lines().map(str::trim_end).fold(String::new(), |mut acc, l| {
            acc.push_str(l);
            acc.push('\n');
            acc
        })
    }
}
