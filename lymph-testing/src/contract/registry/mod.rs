//! The contract of [`Registry`]: what ZooKeeper does for lymph, and every backend must do too.
//!
//! The checks pin ZooKeeper's behaviour as lymph 0.15 uses it: services are persistent nodes
//! under `/services`, instances are ephemeral nodes owned by the registering client's session,
//! clients watch a service's children. Sources: the ZooKeeper Programmer's Guide (sessions,
//! ephemeral nodes, watches; "ZooKeeper Sessions", "ZooKeeper Watches", "Data Model": node
//! names), and lymph 0.15's `lymph.discovery.zookeeper.ZookeeperServiceRegistry`.
//!
//! Backends: [`embedded`] (the in-process [`MemoryRegistry`](lymph_core::memory::MemoryRegistry)),
//! [`simulated`] (the simulated ZooKeeper in a turmoil world) and, with `real-infra`, `real`
//! (ZooKeeper, each client behind a fault proxy).

use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use lymph_core::Error;
use lymph_core::registry::{InstanceWatch, Registry, ServiceInstance, WebInstance};

use super::{Check, Faults, check, ensure};
use crate::wait::{eventually, for_a_while};

pub mod embedded;
#[cfg(feature = "real-infra")]
pub mod real;
pub mod simulated;

/// A registry client made by a [`RegistryHarness`]: its index among the harness's clients and
/// the registry it talks to.
#[derive(Clone, Debug)]
pub struct Client {
    /// 0 for the first client a harness made, 1 for the next, and so on.
    pub index: usize,
    /// The client's connection to the registry.
    pub registry: Arc<dyn Registry>,
}

impl std::ops::Deref for Client {
    type Target = dyn Registry;

    fn deref(&self) -> &Self::Target {
        &*self.registry
    }
}

/// What the registry checks need of a backend.
///
/// The fault methods are only called when [`Faults::lacks`] says the backend has that fault.
pub trait RegistryHarness: Faults {
    /// A new client, with a connection (and, where the backend has them, a session) of its own.
    fn client(&self) -> LocalBoxFuture<'_, Result<Client, Error>>;

    /// `client`'s process dies: its connection drops, nothing is unregistered or closed. The
    /// client is not used afterwards.
    fn crash<'a>(&'a self, client: &'a Client) -> LocalBoxFuture<'a, ()>;

    /// Cuts `client` off from the registry both ways for `duration`, then heals the link.
    fn cut<'a>(&'a self, client: &'a Client, duration: Duration) -> LocalBoxFuture<'a, ()>;

    /// The registry expires `client`'s session, as it does when it hears nothing from the
    /// client for the session timeout; the client finds out when it next hears from the registry.
    fn expire_session<'a>(&'a self, client: &'a Client) -> LocalBoxFuture<'a, Result<(), String>>;

    /// Restarts the registry server, keeping what it keeps on disk.
    fn restart_server(&self) -> LocalBoxFuture<'_, Result<(), String>>;

    /// How long the registry keeps a session it hears nothing from.
    fn session_timeout(&self) -> Duration;

    /// A service name for `name` that no other check sees.
    fn service(&self, name: &str) -> String;
}

type H = dyn RegistryHarness;

/// Every check of the registry contract.
pub fn checks() -> &'static [Check<H>] {
    CHECKS
}

const CHECKS: &[Check<H>] = &[
    check!(
        watches_see_every_registration_come_and_go,
        "a children watch fires on every child created and deleted (Programmer's Guide, \
         ZooKeeper Watches); lymph lists a service's instances from its children",
        []
    ),
    check!(
        lists_are_ordered_by_instance_id,
        "lymph-rs orders instance lists by id so every backend agrees (ZooKeeper returns children \
         in no documented order)",
        []
    ),
    check!(
        watching_an_unknown_service_is_a_lookup_failure,
        "lymph 0.15 raises LookupFailure when /services/<name> does not exist",
        []
    ),
    check!(
        discover_lists_services_that_had_instances,
        "service nodes are persistent: a service stays known after its last ephemeral instance \
         node is gone (lymph 0.15 creates /services/<name> with makepath)",
        []
    ),
    check!(
        registering_the_same_id_again_replaces_it,
        "lymph 0.15 writes an instance's node again on re-registration; a watcher sees one \
         instance with the new data",
        []
    ),
    check!(unregistering_an_unknown_instance_is_not_an_error, "lymph 0.15 ignores NoNodeError when unregistering", []),
    check!(
        every_field_of_a_registration_reaches_other_clients,
        "the node's JSON carries every field lymph 0.15 writes (endpoint, version, side \
         endpoints, host facts, type)",
        []
    ),
    check!(
        names_zookeeper_refuses_are_refused,
        "ZooKeeper node names: no /, not . or .., no control or non-character code points \
         (Programmer's Guide, Data Model)",
        []
    ),
    check!(
        web_registrations_are_apart_from_services,
        "lymph 0.15 keeps web interfaces under /http/<name>, beside /services",
        []
    ),
    check!(
        a_cut_shorter_than_the_session_keeps_registrations,
        "a session outlives its connection: a client that reconnects within the session timeout \
         keeps its ephemeral nodes and watches (Programmer's Guide, ZooKeeper Sessions)",
        [Cut]
    ),
    check!(
        a_crashed_client_keeps_its_registrations_until_its_session_expires,
        "ephemeral nodes are deleted when their session expires, which is a session timeout \
         after the server last heard from the client, not when the connection drops",
        [Crash]
    ),
    check!(
        after_its_session_expires_a_client_registers_again,
        "an expired session's ephemeral nodes are deleted; lymph-rs's client, like lymph's kazoo \
         listener, makes a new session and registers its instances again",
        [ExpireSession]
    ),
    check!(
        a_server_restart_keeps_sessions_and_registrations,
        "ZooKeeper persists sessions in its transaction log: after a restart shorter than the \
         session timeout, clients reconnect to the same session and its ephemeral nodes never \
         went away",
        [RestartServer]
    ),
];

const WAIT: Duration = Duration::from_secs(10);

fn instance(id: &str, port: u16) -> ServiceInstance {
    ServiceInstance::new(id, format!("identity-{id}"), Some("1.2.3".to_owned()), format!("tcp://127.0.0.1:{port}"))
}

fn ids(watch: &InstanceWatch) -> Vec<String> {
    watch.borrow().iter().map(|i| i.id.clone()).collect()
}

async fn watch_until(watch: &InstanceWatch, what: &str, expected: &[&str]) -> Result<(), String> {
    eventually(what, WAIT, || ids(watch) == expected)
        .await
        .map_err(|e| format!("{e}; the watch lists {:?}", ids(watch)))
}

fn failed(what: &str) -> impl Fn(Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

async fn watches_see_every_registration_come_and_go(h: &H) -> Result<(), String> {
    let (a, b) = (h.client().await.map_err(failed("client"))?, h.client().await.map_err(failed("client"))?);
    let service = h.service("watched");
    a.register(&service, instance("i1", 7001)).await.map_err(failed("register i1"))?;
    let watch = b.watch(&service).await.map_err(failed("watch"))?;
    watch_until(&watch, "the other client sees i1", &["i1"]).await?;
    a.register(&service, instance("i2", 7002)).await.map_err(failed("register i2"))?;
    watch_until(&watch, "then i1 and i2", &["i1", "i2"]).await?;
    a.unregister(&service, "i1").await.map_err(failed("unregister i1"))?;
    watch_until(&watch, "then i2 alone", &["i2"]).await?;
    a.unregister(&service, "i2").await.map_err(failed("unregister i2"))?;
    watch_until(&watch, "then none", &[]).await
}

async fn lists_are_ordered_by_instance_id(h: &H) -> Result<(), String> {
    let a = h.client().await.map_err(failed("client"))?;
    let service = h.service("ordered");
    for id in ["m", "z", "a", "q", "b"] {
        a.register(&service, instance(id, 7000)).await.map_err(failed("register"))?;
    }
    let watch = a.watch(&service).await.map_err(failed("watch"))?;
    watch_until(&watch, "five instances, ordered by id", &["a", "b", "m", "q", "z"]).await
}

async fn watching_an_unknown_service_is_a_lookup_failure(h: &H) -> Result<(), String> {
    let a = h.client().await.map_err(failed("client"))?;
    let service = h.service("unknown");
    match a.watch(&service).await {
        Err(Error::LookupFailure { service: name }) if name == service => Ok(()),
        other => Err(format!("expected a lookup failure for {service}, got {other:?}")),
    }
}

async fn discover_lists_services_that_had_instances(h: &H) -> Result<(), String> {
    let a = h.client().await.map_err(failed("client"))?;
    let service = h.service("discovered");
    let before = a.discover().await.map_err(failed("discover"))?;
    ensure!(!before.contains(&service), "{service} is listed before it was registered: {before:?}");
    a.register(&service, instance("i1", 7001)).await.map_err(failed("register"))?;
    let listed = a.discover().await.map_err(failed("discover"))?;
    ensure!(listed.contains(&service), "{service} is not listed after registering: {listed:?}");
    let mut sorted = listed.clone();
    sorted.sort();
    ensure!(listed == sorted, "discover is not sorted: {listed:?}");
    a.unregister(&service, "i1").await.map_err(failed("unregister"))?;
    let after = a.discover().await.map_err(failed("discover"))?;
    ensure!(after.contains(&service), "{service} is forgotten after its last instance left: {after:?}");
    let watch = a.watch(&service).await.map_err(failed("watch after the last instance left"))?;
    watch_until(&watch, "an empty list", &[]).await
}

async fn registering_the_same_id_again_replaces_it(h: &H) -> Result<(), String> {
    let (a, b) = (h.client().await.map_err(failed("client"))?, h.client().await.map_err(failed("client"))?);
    let service = h.service("replaced");
    a.register(&service, instance("i1", 7001)).await.map_err(failed("register"))?;
    a.register(&service, instance("i1", 7002)).await.map_err(failed("register again"))?;
    let watch = b.watch(&service).await.map_err(failed("watch"))?;
    eventually("one instance, on the new endpoint", WAIT, || {
        let list = watch.borrow();
        list.len() == 1 && list[0].endpoint == "tcp://127.0.0.1:7002"
    })
    .await
    .map_err(|e| format!("{e}; the watch lists {:?}", watch.borrow()))
}

async fn unregistering_an_unknown_instance_is_not_an_error(h: &H) -> Result<(), String> {
    let a = h.client().await.map_err(failed("client"))?;
    let service = h.service("never");
    a.unregister(&service, "nobody").await.map_err(failed("unregister of an unknown service"))?;
    a.register(&service, instance("i1", 7001)).await.map_err(failed("register"))?;
    a.unregister(&service, "nobody").await.map_err(failed("unregister of an unknown instance"))?;
    a.unregister(&service, "i1").await.map_err(failed("unregister"))?;
    a.unregister(&service, "i1").await.map_err(failed("unregister twice"))
}

async fn every_field_of_a_registration_reaches_other_clients(h: &H) -> Result<(), String> {
    let (a, b) = (h.client().await.map_err(failed("client"))?, h.client().await.map_err(failed("client"))?);
    let service = h.service("fields");
    let full = ServiceInstance {
        log_endpoint: Some("tcp://127.0.0.1:7101".to_owned()),
        monitoring_endpoint: Some("tcp://127.0.0.1:7102".to_owned()),
        backdoor_endpoint: Some("tcp://127.0.0.1:7103".to_owned()),
        fqdn: Some("host.example.org".to_owned()),
        hostname: Some("host".to_owned()),
        ip: Some("127.0.0.1".to_owned()),
        worker: true,
        ..instance("full", 7100)
    };
    let bare = ServiceInstance { version: None, ..instance("bare", 7200) };
    a.register(&service, full.clone()).await.map_err(failed("register"))?;
    a.register(&service, bare.clone()).await.map_err(failed("register"))?;
    let watch = b.watch(&service).await.map_err(failed("watch"))?;
    let expected = vec![bare, full];
    eventually("both registrations, field for field", WAIT, || *watch.borrow() == expected)
        .await
        .map_err(|e| format!("{e}; the watch lists {:?}", watch.borrow()))
}

async fn names_zookeeper_refuses_are_refused(h: &H) -> Result<(), String> {
    let a = h.client().await.map_err(failed("client"))?;
    let long = "n".repeat(256);
    for bad in ["", ".", "..", "odd/name", "bell\u{7}", "private\u{e000}", long.as_str()] {
        match a.register(bad, instance("i1", 7001)).await {
            Err(Error::Config(_)) => {}
            other => return Err(format!("registering {bad:?} gave {other:?}, not a configuration error")),
        }
    }
    // The longest name every backend takes, and names ZooKeeper is fine with.
    let longest = h.service("x");
    let longest = format!("{longest}{}", "n".repeat(255 - longest.len()));
    for good in [longest.as_str(), &h.service("with space"), &h.service("ünïcode-名前"), &h.service("a.b:c-d_e")] {
        a.register(good, instance("i1", 7001)).await.map_err(|e| format!("registering {good:?}: {e}"))?;
        let watch = a.watch(good).await.map_err(|e| format!("watching {good:?}: {e}"))?;
        watch_until(&watch, &format!("{good:?} is watched"), &["i1"]).await?;
    }
    Ok(())
}

async fn web_registrations_are_apart_from_services(h: &H) -> Result<(), String> {
    let (a, b) = (h.client().await.map_err(failed("client"))?, h.client().await.map_err(failed("client"))?);
    let service = h.service("web");
    let web = WebInstance {
        id: "w1".to_owned(),
        identity: "identity-w1".to_owned(),
        version: None,
        hostname: Some("host".to_owned()),
        ip: Some("127.0.0.1".to_owned()),
        http_port: 8080,
    };
    a.register_web(&service, web.clone()).await.map_err(failed("register_web"))?;
    eventually("the other client looks the web interface up", WAIT, async || {
        b.lookup_web(&service).await.is_ok_and(|list| list == [web.clone()])
    })
    .await
    .map_err(|e| e.to_string())?;
    let services = b.discover().await.map_err(failed("discover"))?;
    ensure!(!services.contains(&service), "a web registration is discovered as a service: {services:?}");
    match b.watch(&service).await {
        Err(Error::LookupFailure { .. }) => {}
        other => return Err(format!("a web-only service is watched as a service: {other:?}")),
    }
    a.unregister_web(&service, "w1").await.map_err(failed("unregister_web"))?;
    eventually("the web interface is gone", WAIT, async || b.lookup_web(&service).await.is_ok_and(|l| l.is_empty()))
        .await
        .map_err(|e| e.to_string())
}

async fn a_cut_shorter_than_the_session_keeps_registrations(h: &H) -> Result<(), String> {
    let (a, b) = (h.client().await.map_err(failed("client"))?, h.client().await.map_err(failed("client"))?);
    let service = h.service("cut");
    a.register(&service, instance("i1", 7001)).await.map_err(failed("register"))?;
    let watch = b.watch(&service).await.map_err(failed("watch"))?;
    watch_until(&watch, "the other client sees i1", &["i1"]).await?;
    let cut = h.session_timeout() / 2;
    let watching =
        for_a_while("i1 stays registered through the cut", cut + Duration::from_secs(3), || ids(&watch) == ["i1"]);
    let ((), watched) = futures::join!(h.cut(&a, cut), watching);
    watched.map_err(|e| format!("{e}; the watch lists {:?}", ids(&watch)))?;
    a.register(&service, instance("i2", 7002)).await.map_err(failed("register after the cut"))?;
    watch_until(&watch, "the client registers on its old session", &["i1", "i2"]).await
}

async fn a_crashed_client_keeps_its_registrations_until_its_session_expires(h: &H) -> Result<(), String> {
    let (a, b) = (h.client().await.map_err(failed("client"))?, h.client().await.map_err(failed("client"))?);
    let service = h.service("crashed");
    a.register(&service, instance("i1", 7001)).await.map_err(failed("register"))?;
    let watch = b.watch(&service).await.map_err(failed("watch"))?;
    watch_until(&watch, "the other client sees i1", &["i1"]).await?;
    h.crash(&a).await;
    let timeout = h.session_timeout();
    for_a_while("i1 outlives the crash for most of a session timeout", timeout * 7 / 10, || ids(&watch) == ["i1"])
        .await
        .map_err(|e| format!("{e}; the watch lists {:?}", ids(&watch)))?;
    eventually("i1 is gone once the session expired", timeout + WAIT, || ids(&watch).is_empty())
        .await
        .map_err(|e| format!("{e}; the watch lists {:?}", ids(&watch)))
}

async fn after_its_session_expires_a_client_registers_again(h: &H) -> Result<(), String> {
    let (a, b) = (h.client().await.map_err(failed("client"))?, h.client().await.map_err(failed("client"))?);
    let service = h.service("expired");
    a.register(&service, instance("i1", 7001)).await.map_err(failed("register"))?;
    let watch = b.watch(&service).await.map_err(failed("watch"))?;
    watch_until(&watch, "the other client sees i1", &["i1"]).await?;
    let gone = async {
        eventually("i1 goes with the expired session", h.session_timeout() + WAIT, || ids(&watch).is_empty())
            .await
            .map_err(|e| format!("{e}; the watch lists {:?}", ids(&watch)))
    };
    let (expired, gone) = tokio::join!(h.expire_session(&a), gone);
    expired?;
    gone?;
    watch_until(&watch, "i1 is registered again on a new session", &["i1"]).await?;
    a.register(&service, instance("i2", 7002)).await.map_err(failed("register on the new session"))?;
    watch_until(&watch, "a registration on the new session", &["i1", "i2"]).await?;
    a.unregister(&service, "i1").await.map_err(failed("unregister on the new session"))?;
    watch_until(&watch, "an unregistration on the new session", &["i2"]).await
}

async fn a_server_restart_keeps_sessions_and_registrations(h: &H) -> Result<(), String> {
    let (a, b) = (h.client().await.map_err(failed("client"))?, h.client().await.map_err(failed("client"))?);
    let service = h.service("restarted");
    a.register(&service, instance("i1", 7001)).await.map_err(failed("register"))?;
    let watch = b.watch(&service).await.map_err(failed("watch"))?;
    watch_until(&watch, "the other client sees i1", &["i1"]).await?;
    let restarted = std::cell::Cell::new(None);
    let restart = async {
        let result = h.restart_server().await;
        restarted.set(Some(tokio::time::Instant::now()));
        result
    };
    // From before the restart until a few seconds after the server is back.
    let watching = async {
        let start = tokio::time::Instant::now();
        loop {
            ensure!(
                ids(&watch) == ["i1"],
                "i1 left the watch {:?} after the restart began; the watch lists {:?}",
                start.elapsed(),
                ids(&watch)
            );
            if restarted.get().is_some_and(|at: tokio::time::Instant| at.elapsed() >= Duration::from_secs(3)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (restart, watched) = futures::join!(restart, watching);
    restart?;
    watched?;
    a.register(&service, instance("i2", 7002)).await.map_err(failed("register after the restart"))?;
    watch_until(&watch, "a registration after the restart", &["i1", "i2"]).await
}
