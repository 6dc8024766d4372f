//! The talk scenario: two `echo` instances, a `listener`, and a client making requests.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use lymph::testing::{Cluster, eventually};
use lymph::{Container, Error, Value};

use crate::echo::{Echo, EchoClient, UPPERCASED};
use crate::listener::Listener;

/// The running services of the talk.
#[derive(Debug)]
pub struct Talk {
    /// The two echo instances (`echo-1`, `echo-2`), as their factories made them.
    pub echoes: Vec<Echo>,
    /// The listener (`listener`).
    pub listener: Listener,
    /// A client container.
    pub client: Container,
}

/// Starts `echo-1`, `echo-2` and `listener` on `cluster`, and a client.
///
/// # Errors
///
/// When a container does not start.
pub async fn start(cluster: &impl Cluster) -> Result<Talk, Error> {
    let mut echoes = Vec::new();
    for name in ["echo-1", "echo-2"] {
        let echo = Echo::counting(Arc::new(AtomicUsize::new(0)));
        let factory_echo = echo.clone();
        cluster.start(name, Box::new(move || lymph::Container::builder().interface(factory_echo.clone()))).await?;
        echoes.push(echo);
    }
    let listener = Listener::default();
    let factory_listener = listener.clone();
    cluster
        .start("listener", Box::new(move || lymph::Container::builder().interface(factory_listener.clone())))
        .await?;
    let client = cluster.client().await?;
    Ok(Talk { echoes, listener, client })
}

/// What the talk scenario saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `upper` calls that returned the upper-cased text.
    pub upper_ok: usize,
    /// `upper` calls made.
    pub upper_total: usize,
    /// Requests served by each echo instance (chosen at random, so one may get none of a few).
    pub served: Vec<usize>,
    /// Events the listener handled with the trace id of the request that caused them.
    pub traced_events: usize,
    /// `fail` gave `RemoteError(ValueError)`.
    pub declared_error: bool,
    /// An unknown method gave a NACK.
    pub unknown_nacked: bool,
}

impl Summary {
    /// Whether everything went as lymph promises.
    pub fn passed(&self) -> bool {
        self.upper_ok == self.upper_total
            && self.traced_events == self.upper_total
            && self.declared_error
            && self.unknown_nacked
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: upper {}/{} ok, served per echo instance {:?}, listener saw {}/{} events with their request's trace id, \
             fail -> {}, unknown method -> {}",
            if self.passed() { "PASS" } else { "FAIL" },
            self.upper_ok,
            self.upper_total,
            self.served,
            self.traced_events,
            self.upper_total,
            if self.declared_error { "RemoteError(ValueError)" } else { "something else" },
            if self.unknown_nacked { "NACK" } else { "something else" },
        )
    }
}

/// Runs the talk: `requests` calls of `echo.upper`, one `echo.fail`, one unknown method; then
/// waits for the listener to have seen every event.
///
/// # Errors
///
/// When the services do not start; a misbehaving service shows in the [`Summary`] instead
/// (check [`Summary::passed`]).
pub async fn run(cluster: &impl Cluster, requests: usize) -> Result<Summary, Box<dyn std::error::Error>> {
    let talk = start(cluster).await?;
    Ok(exercise(&talk, requests, Duration::ZERO).await)
}

/// The talk on services already started with [`start`]: `requests` calls of `echo.upper`,
/// `pause` apart, one `echo.fail`, one unknown method; then waits for the listener to have seen
/// every event.
pub async fn exercise(talk: &Talk, requests: usize, pause: Duration) -> Summary {
    let mut upper_ok = 0;
    let mut traces = BTreeSet::new();
    for i in 0..requests {
        let ctx = talk.client.context();
        let text = format!("hello {i}");
        let reply = ctx.client::<EchoClient>().upper(text.clone()).await;
        if reply.is_ok_and(|reply| reply == text.to_uppercase()) {
            upper_ok += 1;
            traces.insert(ctx.trace_id().to_owned());
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    let echo: EchoClient = talk.client.client();
    let declared_error = matches!(echo.fail("boom".to_owned()).await, Err(e) if e.is_remote("ValueError"));
    let unknown = talk.client.proxy("echo").call::<Value, _>("nosuchmethod", &Value::Map(Vec::new())).await;
    let unknown_nacked = matches!(unknown, Err(Error::Nack { .. }));
    let listener = talk.listener.clone();
    let expected = upper_ok;
    let _ = eventually("the listener saw every event", Duration::from_secs(10), || {
        listener.received().iter().filter(|e| e.event_type == UPPERCASED).count() >= expected
    })
    .await;
    let traced_events = talk
        .listener
        .received()
        .iter()
        .filter(|e| e.event_type == UPPERCASED && e.trace_id().is_some_and(|t| traces.contains(t)))
        .count();
    Summary {
        upper_ok,
        upper_total: requests,
        served: talk.echoes.iter().map(Echo::served).collect(),
        traced_events,
        declared_error,
        unknown_nacked,
    }
}
