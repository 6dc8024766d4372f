//! Recording RPC traffic onto a [`Timeline`]: what the simulated transport records, and
//! [`RecordingRpc`], which records the same entries from any transport, so that the timeline
//! checkers run on a real run as on a simulated one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use lymph_core::rpc::{ClientRequest, Frames, Inbox, RpcTransport};
use lymph_core::{Headers, Result};

use crate::timeline::{Direction, Entry, Timeline};

/// How many request subjects are remembered to annotate replies on the timeline.
const SUBJECTS_REMEMBERED: usize = 4096;

/// The subjects of the last [`SUBJECTS_REMEMBERED`] requests, by message id: forgets the oldest
/// in constant time.
#[derive(Debug, Default)]
pub(crate) struct Subjects {
    by_id: HashMap<String, String>,
    order: VecDeque<String>,
}

impl Subjects {
    fn remember(&mut self, id: String, subject: String) {
        if self.by_id.insert(id.clone(), subject).is_none() {
            self.order.push_back(id);
        }
        if self.order.len() > SUBJECTS_REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.by_id.remove(&oldest);
        }
    }
}

/// The first 8 characters of a message id, as the timeline shows it.
fn short(id: &str) -> &str {
    id.char_indices().nth(8).map_or(id, |(cut, _)| &id[..cut])
}

/// How the timeline shows the subject of a reply (or a give-up) to request `id`: the request's
/// subject, when known, and the request's short id.
fn reply_subject(request: &str, id: &str) -> String {
    if request.is_empty() { format!("(re {})", short(id)) } else { format!("{request} (re {})", short(id)) }
}

/// Writes RPC traffic onto the timeline, annotating replies with their request's subject.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    host: String,
    timeline: Timeline,
    subjects: Arc<Mutex<Subjects>>,
    /// For a real run, when it began: entries get the wall time since then. `None` in the
    /// simulator, where entries get simulated time.
    origin: Option<std::time::Instant>,
}

impl Recorder {
    /// A recorder for `host` onto `timeline`; `origin` as for a real run (see the field).
    pub(crate) fn new(host: &str, timeline: Timeline, origin: Option<std::time::Instant>) -> Self {
        Self { host: host.to_owned(), timeline, subjects: Arc::default(), origin }
    }

    /// Records `entry`, at the wall time since the origin when there is one.
    fn put(&self, mut entry: Entry) {
        if let Some(origin) = self.origin {
            entry.time = origin.elapsed();
        }
        self.timeline.record(entry);
    }

    /// Records a message and returns its kind and the subject faults match on: the request's
    /// subject, also for a reply.
    pub(crate) fn record(&self, frames: &[Bytes], direction: Direction, detail: String) -> (String, String) {
        let text = |i: usize| frames.get(i).map(|f| String::from_utf8_lossy(f)).unwrap_or_default();
        let (id, kind, raw_subject) = (text(0), text(1), text(2));
        let kind: String = match kind.char_indices().nth(16) {
            None if kind.is_empty() => "?".into(),
            None => kind.into_owned(),
            Some((cut, _)) => kind[..cut].to_owned(),
        };
        let trace = frames.get(3).and_then(|h| Headers::peek_trace_id(h)).map(str::to_owned);
        if kind == "REQ" {
            let (id, subject) = (id.into_owned(), raw_subject.into_owned());
            self.subjects().remember(id.clone(), subject.clone());
            let entry =
                Entry::now(&self.host, kind.clone(), subject.clone()).detail(format!("{detail} id={}", short(&id)));
            self.put(entry.trace(trace).direction(direction).id(id));
            (kind, subject)
        } else {
            let request = self.subjects().by_id.get(raw_subject.as_ref()).cloned().unwrap_or_default();
            let shown = reply_subject(&request, &raw_subject);
            let entry = Entry::now(&self.host, kind.clone(), shown).detail(detail).re(raw_subject.into_owned());
            self.put(entry.trace(trace).direction(direction));
            (kind, request)
        }
    }

    fn subjects(&self) -> MutexGuard<'_, Subjects> {
        self.subjects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that this host gave up waiting for a reply to `request`: a `timeout` entry with
    /// the request's id as `re`, its subject written as a reply's.
    pub(crate) fn gave_up(&self, request: &ClientRequest<'_>, waited: Duration) {
        let entry = Entry::now(&self.host, "timeout", reply_subject(request.subject, request.id))
            .trace(Some(request.trace_id))
            .detail(format!("no reply from {} within {waited:?}", request.endpoint))
            .re(request.id);
        self.put(entry);
    }

    pub(crate) fn note(&self, kind: &str, subject: &str, detail: String) {
        self.put(Entry::now(&self.host, kind, subject).detail(detail));
    }
}

/// An [`RpcTransport`] that records every message it sends and receives, and every request its
/// container gave up waiting for, onto a [`Timeline`], as the simulated transport does: kind
/// and subject from the frames, the trace id from the headers, the wall time since `origin`.
/// `Real` wraps every transport it makes in one, so `Real::timeline` is the run's timeline.
pub struct RecordingRpc {
    inner: Arc<dyn RpcTransport>,
    recorder: Recorder,
}

impl std::fmt::Debug for RecordingRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingRpc").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl RecordingRpc {
    /// Records what `inner` carries for `host` onto `timeline`, at the wall time since `origin`.
    pub fn new(inner: Arc<dyn RpcTransport>, host: &str, timeline: Timeline, origin: std::time::Instant) -> Self {
        Self { inner, recorder: Recorder::new(host, timeline, Some(origin)) }
    }
}

impl RpcTransport for RecordingRpc {
    fn bind(&self) -> BoxFuture<'_, Result<(String, Inbox)>> {
        Box::pin(async move {
            let (endpoint, inbox) = self.inner.bind().await?;
            let recorder = self.recorder.clone();
            let recorded = futures::stream::unfold((inbox, recorder), |(mut inbox, recorder)| async move {
                let incoming = inbox.recv().await?;
                recorder.record(&incoming.frames, Direction::Received, format!("<- {}", incoming.source));
                Some((incoming, (inbox, recorder)))
            });
            Ok((endpoint, Inbox::from_stream(recorded)))
        })
    }

    fn send<'a>(&'a self, endpoint: &'a str, frames: Frames) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (kind, subject) = self.recorder.record(&frames, Direction::Sent, format!("-> {endpoint}"));
            let sent = self.inner.send(endpoint, frames).await;
            if let Err(error) = &sent {
                self.recorder.note("drop", &subject, format!("{kind} -> {endpoint}: {error}"));
            }
            sent
        })
    }

    fn disconnect(&self, endpoint: &str) {
        self.inner.disconnect(endpoint);
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close()
    }

    fn gave_up(&self, request: &ClientRequest<'_>, waited: Duration) {
        self.recorder.gave_up(request, waited);
        self.inner.gave_up(request, waited);
    }
}

#[cfg(test)]
mod tests {
    use lymph_core::memory::MemoryNetwork;

    use super::*;

    fn frames(words: &[&str]) -> Frames {
        words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
    }

    #[tokio::test]
    async fn a_recorded_transport_writes_what_it_carries_as_the_simulator_does() {
        let network = MemoryNetwork::new();
        let (timeline, origin) = (Timeline::new(), std::time::Instant::now());
        let client = RecordingRpc::new(Arc::new(network.rpc()), "client", timeline.clone(), origin);
        let server = RecordingRpc::new(Arc::new(network.rpc()), "server", timeline.clone(), origin);
        let (client_endpoint, _client_inbox) = client.bind().await.unwrap();
        let (server_endpoint, mut server_inbox) = server.bind().await.unwrap();
        let headers = Headers::rpc(None, Some("trace-1")).to_value().to_msgpack();
        let mut request = frames(&["id-1", "REQ", "echo.upper"]);
        request.extend([Bytes::from(headers), Bytes::new()]);
        client.send(&server_endpoint, request).await.unwrap();
        server_inbox.recv().await.expect("the request");
        server.send(&client_endpoint, frames(&["id-2", "REP", "id-1", "", ""])).await.unwrap();
        let entries = timeline.entries();
        let seen: Vec<(&str, &str, &str, Direction)> =
            entries.iter().map(|e| (e.host.as_str(), e.kind.as_str(), e.subject.as_str(), e.direction)).collect();
        assert_eq!(
            seen,
            [
                ("client", "REQ", "echo.upper", Direction::Sent),
                ("server", "REQ", "echo.upper", Direction::Received),
                ("server", "REP", "echo.upper (re id-1)", Direction::Sent),
            ]
        );
        assert_eq!(entries[0].trace_id.as_deref(), Some("trace-1"));
        assert!(entries.windows(2).all(|w| w[0].time <= w[1].time), "wall times in order");
        crate::check::at_most_one_reply(&timeline).unwrap();
    }
}
