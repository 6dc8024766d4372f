//! `ZkRegistry` against the ZooKeeper on 127.0.0.1:2181 (`scripts/infra.sh up`).
#![cfg(feature = "real-infra")]

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use lymph_core::Error;
use lymph_core::registry::{InstanceWatch, Registry, ServiceInstance, WebInstance};
use lymph_transports::{ZkConfig, ZkRegistry};
use zookeeper_client as zk;

const HOSTS: &str = "127.0.0.1:2181";
/// How long a change may take to show in a watch.
const PROPAGATION: Duration = Duration::from_secs(2);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

async fn connect() -> Result<ZkRegistry> {
    Ok(ZkRegistry::connect(ZkConfig::new(HOSTS)).await?)
}

/// A plain ZooKeeper client, unchrooted, to look at the raw nodes.
async fn raw_client() -> Result<zk::Client> {
    let connect = zk::Client::connector().with_session_timeout(Duration::from_secs(6)).connect(HOSTS);
    Ok(tokio::time::timeout(Duration::from_secs(5), connect).await.context("ZooKeeper connect timed out")??)
}

/// Removes a test's service node and whatever instance nodes are left in it.
async fn remove_service(service: &str) -> Result<()> {
    let raw = raw_client().await?;
    let dir = format!("/lymph/services/{service}");
    for child in raw.list_children(&dir).await.unwrap_or_default() {
        match raw.delete(&format!("{dir}/{child}"), None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(error) => return Err(error.into()),
        }
    }
    match raw.delete(&dir, None).await {
        Ok(()) | Err(zk::Error::NoNode) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

fn instance(id: &str, port: u16) -> ServiceInstance {
    let mut instance = ServiceInstance::new(id, format!("identity-{id}"), None, format!("tcp://127.0.0.1:{port}"));
    instance.log_endpoint = Some(format!("tcp://127.0.0.1:{}", port + 1));
    instance.monitoring_endpoint = Some(format!("tcp://127.0.0.1:{}", port + 2));
    instance.fqdn = Some("localhost".into());
    instance.hostname = Some("vm".into());
    instance.ip = Some("127.0.0.1".into());
    instance
}

fn ids(list: &[ServiceInstance]) -> Vec<&str> {
    list.iter().map(|i| i.id.as_str()).collect()
}

/// Waits until the watched list has exactly these ids.
async fn wait_for_ids(watch: &mut InstanceWatch, expected: &[&str]) -> Result<Duration> {
    let start = Instant::now();
    let waited =
        tokio::time::timeout(PROPAGATION, watch.wait_for(|list| ids(list) == expected)).await.map(|r| r.map(drop));
    match waited {
        Ok(Ok(())) => Ok(start.elapsed()),
        Ok(Err(_)) => bail!("the watch ended while waiting for {expected:?}"),
        Err(_) => bail!("the watch still shows {:?}, not {expected:?}, after {PROPAGATION:?}", ids(&watch.borrow())),
    }
}

/// Names ZooKeeper would refuse are refused before a request is made, as in every backend; the
/// longest name that fits is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_names_zookeeper_refuses_are_a_clear_error() -> Result<()> {
    let registry = connect().await?;
    for bad in ["odd/name", "..", "nul\u{0}"] {
        let registered = registry.register(bad, instance("a", 1)).await;
        ensure!(
            matches!(&registered, Err(Error::Config(m)) if m.contains("bad service name")),
            "{bad:?}: {registered:?}"
        );
    }
    let service = unique("s");
    let service = format!("{service}{}", "s".repeat(255 - service.len()));
    registry.register(&service, instance("a", 1)).await?;
    ensure!(registry.discover().await?.contains(&service), "the 255-byte name was not registered");
    remove_service(&service).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_writes_lymphs_ephemeral_node() -> Result<()> {
    let registry = connect().await?;
    let raw = raw_client().await?;
    let service = unique("zk-node");
    let mut inst = ServiceInstance::new(
        "8aaa4bc8b4228e28dcb6f58686228be1",
        "6332f7e13b20cdfe61daa462925c8f25",
        Some("1.2.3".into()),
        "tcp://127.0.0.1:64649",
    );
    inst.log_endpoint = Some("tcp://127.0.0.1:34151".into());
    inst.monitoring_endpoint = Some("tcp://127.0.0.1:40653".into());
    inst.backdoor_endpoint = Some("127.0.0.1:5005".into());
    inst.fqdn = Some("localhost".into());
    inst.hostname = Some("h\u{f4}te".into());
    inst.ip = Some("127.0.0.1".into());
    inst.worker = true;
    registry.register(&service, inst.clone()).await?;

    // What Python's json.dumps(instance.serialize()) writes for these fields.
    let expected = concat!(
        r#"{"id": "8aaa4bc8b4228e28dcb6f58686228be1", "identity": "6332f7e13b20cdfe61daa462925c8f25", "#,
        r#""version": "1.2.3", "endpoint": "tcp://127.0.0.1:64649", "log_endpoint": "tcp://127.0.0.1:34151", "#,
        r#""monitoring_endpoint": "tcp://127.0.0.1:40653", "backdoor_endpoint": "127.0.0.1:5005", "#,
        r#""fqdn": "localhost", "hostname": "h\u00f4te", "ip": "127.0.0.1", "type": true}"#
    );
    let path = format!("/lymph/services/{service}/{}", inst.id);
    let (data, stat) = raw.get_data(&path).await.with_context(|| format!("reading {path}"))?;
    assert_eq!(String::from_utf8(data)?, expected);
    assert_eq!(
        Some(stat.ephemeral_owner),
        registry.session_id(),
        "the node is ephemeral, owned by the registry's session"
    );

    let (service_data, service_stat) = raw.get_data(&format!("/lymph/services/{service}")).await?;
    assert!(service_data.is_empty());
    assert_eq!(service_stat.ephemeral_owner, 0, "the service node is persistent");

    // Registering the same id again replaces the node.
    inst.version = None;
    registry.register(&service, inst.clone()).await?;
    let (data, _) = raw.get_data(&path).await?;
    assert!(String::from_utf8(data)?.contains(r#""version": null"#));
    assert_eq!(raw.list_children(&format!("/lymph/services/{service}")).await?, vec![inst.id.clone()]);

    // Unregistering removes the node but keeps the service node; a second time is fine.
    registry.unregister(&service, &inst.id).await?;
    registry.unregister(&service, &inst.id).await?;
    assert!(raw.check_stat(&path).await?.is_none());
    assert!(raw.check_stat(&format!("/lymph/services/{service}")).await?.is_some());
    remove_service(&service).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_lists_registered_services() -> Result<()> {
    let registry = connect().await?;
    let service = unique("zk-discover");
    ensure!(!registry.discover().await?.contains(&service));
    registry.register(&service, instance("a1", 7000)).await?;
    let services = registry.discover().await?;
    ensure!(services.contains(&service), "{service} not in {services:?}");
    let mut sorted = services.clone();
    sorted.sort();
    assert_eq!(services, sorted);
    // The service stays known after its last instance left.
    registry.unregister(&service, "a1").await?;
    ensure!(registry.discover().await?.contains(&service));
    remove_service(&service).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_instances_coming_and_going() -> Result<()> {
    let service = unique("zk-watch");
    let first = connect().await?;
    let second = connect().await?;
    let watcher = connect().await?;
    first.register(&service, instance("bbbb", 7100)).await?;

    let mut watch = watcher.watch(&service).await?;
    assert_eq!(ids(&watch.borrow()), ["bbbb"]);
    assert_eq!(watch.borrow()[0], instance("bbbb", 7100));

    second.register(&service, instance("aaaa", 7200)).await?;
    let took = wait_for_ids(&mut watch, &["aaaa", "bbbb"]).await?;
    ensure!(took < Duration::from_secs(1), "a new instance took {took:?} to show");

    // A second watch of the same service shares the live list.
    let mut again = watcher.watch(&service).await?;
    assert_eq!(ids(&again.borrow()), ["aaaa", "bbbb"]);

    second.unregister(&service, "aaaa").await?;
    let took = wait_for_ids(&mut watch, &["bbbb"]).await?;
    ensure!(took < Duration::from_secs(1), "an unregistered instance took {took:?} to vanish");
    wait_for_ids(&mut again, &["bbbb"]).await?;

    // Dropping a registry closes its session: its instances vanish at once.
    drop(first);
    let took = wait_for_ids(&mut watch, &[]).await?;
    ensure!(took < Duration::from_secs(1), "the instances of a dropped registry took {took:?} to vanish");

    // The service is still known, with no instances, and comes back to life.
    second.register(&service, instance("cccc", 7300)).await?;
    wait_for_ids(&mut watch, &["cccc"]).await?;
    second.close().await;
    wait_for_ids(&mut watch, &[]).await?;
    remove_service(&service).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_of_an_unknown_service_is_a_lookup_failure() -> Result<()> {
    let registry = connect().await?;
    let service = unique("zk-unknown");
    match registry.watch(&service).await {
        Err(Error::LookupFailure { service: name }) => assert_eq!(name, service),
        other => bail!("expected a lookup failure, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_nodes_are_skipped() -> Result<()> {
    let registry = connect().await?;
    let raw = raw_client().await?;
    let service = unique("zk-malformed");
    let dir = format!("/lymph/services/{service}");
    registry.register(&service, instance("good1", 7400)).await?;
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    raw.create(&format!("{dir}/garbage1"), b"not json {", &ephemeral).await?;
    raw.create(&format!("{dir}/garbage2"), br#"{"id": "x"}"#, &ephemeral).await?;
    raw.create(&format!("{dir}/garbage3"), &[0xff, 0xfe, 0x00], &ephemeral).await?;

    let mut watch = registry.watch(&service).await?;
    assert_eq!(ids(&watch.borrow()), ["good1"]);

    // More garbage while watching, then a good instance: the watch lives on.
    raw.create(&format!("{dir}/garbage4"), b"[]", &ephemeral).await?;
    registry.register(&service, instance("good2", 7500)).await?;
    wait_for_ids(&mut watch, &["good1", "good2"]).await?;
    // Garbage fixed in place becomes an instance.
    let fixed = instance("fixed", 7600);
    raw.set_data(&format!("{dir}/garbage1"), &serde_json::to_vec(&fixed)?, None).await?;
    wait_for_ids(&mut watch, &["fixed", "good1", "good2"]).await?;
    remove_service(&service).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_come_back_on_a_new_session() -> Result<()> {
    let registry = connect().await?;
    let observer = connect().await?;
    let raw = raw_client().await?;
    let service = unique("zk-expiry");
    registry.register(&service, instance("e1", 7700)).await?;
    registry.register(&service, instance("e2", 7800)).await?;
    registry.unregister(&service, "e2").await?;
    let mut watch = observer.watch(&service).await?;
    assert_eq!(ids(&watch.borrow()), ["e1"]);
    // The registry watches its own service too: that watch must survive the new session.
    let mut own = registry.watch(&service).await?;

    let old_session = registry.session_id().context("no session")?;
    let start = Instant::now();
    registry.restart_session().await?;
    let took = start.elapsed();
    ensure!(took < Duration::from_secs(5), "recovering from expiry took {took:?}");
    let new_session = registry.session_id().context("no session")?;
    assert_ne!(new_session, old_session);

    let path = format!("/lymph/services/{service}/e1");
    let stat = raw.check_stat(&path).await?.context("the instance was not registered again")?;
    assert_eq!(stat.ephemeral_owner, new_session);
    assert!(raw.check_stat(&format!("/lymph/services/{service}/e2")).await?.is_none(), "unregistered stays away");
    wait_for_ids(&mut watch, &["e1"]).await?;

    // Both watches are live after the new session.
    observer.register(&service, instance("e3", 7900)).await?;
    wait_for_ids(&mut watch, &["e1", "e3"]).await?;
    wait_for_ids(&mut own, &["e1", "e3"]).await?;
    registry.register(&service, instance("e4", 8000)).await?;
    wait_for_ids(&mut own, &["e1", "e3", "e4"]).await?;
    wait_for_ids(&mut watch, &["e1", "e3", "e4"]).await?;
    remove_service(&service).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chroot_in_the_hosts_replaces_lymph() -> Result<()> {
    let chroot = format!("/{}", unique("lymph-rs-chroot"));
    let registry = ZkRegistry::connect(ZkConfig::new(format!("{HOSTS}{chroot}"))).await?;
    assert_eq!(registry.chroot(), chroot);
    registry.register("echo", instance("c1", 8100)).await?;
    let raw = raw_client().await?;
    ensure!(raw.check_stat(&format!("{chroot}/services/echo/c1")).await?.is_some());
    assert_eq!(registry.discover().await?, ["echo"]);
    assert_eq!(ids(&registry.watch("echo").await?.borrow()), ["c1"]);
    registry.unregister("echo", "c1").await?;
    for path in [format!("{chroot}/services/echo"), format!("{chroot}/services"), chroot.clone()] {
        raw.delete(&path, None).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_closed_port_fails_quickly_and_clearly() -> Result<()> {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let hosts = format!("127.0.0.1:{port}");
    let start = Instant::now();
    let result = ZkRegistry::connect(ZkConfig::new(&hosts).with_connect_timeout(Duration::from_secs(3))).await;
    let took = start.elapsed();
    let error = result.err().context("connecting to a closed port succeeded")?;
    ensure!(took < Duration::from_secs(4), "failing took {took:?}");
    let message = error.to_string();
    ensure!(message.contains(&hosts), "the error does not name the hosts: {message}");
    Ok(())
}

/// Removes `path` and everything below it.
async fn remove_tree(raw: &zk::Client, path: &str) -> Result<()> {
    let mut paths = vec![path.to_owned()];
    let mut next = 0;
    while next < paths.len() {
        let children = match raw.list_children(&paths[next]).await {
            Ok(children) => children,
            Err(zk::Error::NoNode) => Vec::new(),
            Err(error) => return Err(error.into()),
        };
        let parent = paths[next].clone();
        paths.extend(children.into_iter().map(|child| format!("{parent}/{child}")));
        next += 1;
    }
    for path in paths.iter().rev() {
        match raw.delete(path, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

fn web(id: &str, http_port: u16) -> WebInstance {
    WebInstance {
        id: id.to_owned(),
        identity: format!("identity-{id}"),
        version: None,
        hostname: Some("vm".into()),
        ip: Some("127.0.0.1".into()),
        http_port,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_web_writes_lymphs_ephemeral_http_node() -> Result<()> {
    let chroot = format!("/{}", unique("lymph-rs-web"));
    let registry = ZkRegistry::connect(ZkConfig::new(format!("{HOSTS}{chroot}"))).await?;
    let observer = ZkRegistry::connect(ZkConfig::new(format!("{HOSTS}{chroot}"))).await?;
    let raw = raw_client().await?;
    let result = async {
        let inst = WebInstance {
            id: "8aaa4bc8b4228e28dcb6f58686228be1".into(),
            identity: "6332f7e13b20cdfe61daa462925c8f25".into(),
            version: None,
            hostname: Some("h\u{f4}te".into()),
            ip: Some("127.0.0.1".into()),
            http_port: 4080,
        };
        // A node left at the path by another session (a restart faster than the session
        // timeout): lymph deletes it before it creates its own.
        let path = format!("{chroot}/http/web/{}", inst.id);
        registry.register_web("web", web(&inst.id, 1)).await?;
        raw.delete(&path, None).await?;
        raw.create(&path, b"stale", &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())).await?;

        registry.register_web("web", inst.clone()).await?;
        // What Python's json.dumps(ServiceInstance(id=..., identity=..., hostname=..., ip=...,
        // http_port=...).serialize()) writes, as lymph's WebServiceInterface.on_start registers.
        let expected = concat!(
            r#"{"id": "8aaa4bc8b4228e28dcb6f58686228be1", "identity": "6332f7e13b20cdfe61daa462925c8f25", "#,
            r#""version": null, "hostname": "h\u00f4te", "ip": "127.0.0.1", "http_port": 4080}"#
        );
        let (data, stat) = raw.get_data(&path).await.with_context(|| format!("reading {path}"))?;
        assert_eq!(String::from_utf8(data)?, expected);
        assert_eq!(Some(stat.ephemeral_owner), registry.session_id(), "ephemeral, owned by the registry's session");
        let (dir_data, dir_stat) = raw.get_data(&format!("{chroot}/http/web")).await?;
        assert!(dir_data.is_empty());
        assert_eq!(dir_stat.ephemeral_owner, 0, "the service's http node is persistent");

        // Lookup, from any registry, ordered by id.
        registry.register_web("web", web("0000", 4081)).await?;
        assert_eq!(observer.lookup_web("web").await?, [web("0000", 4081), inst.clone()]);
        assert!(observer.lookup_web("nothing").await?.is_empty(), "a missing node is no registration");
        // The web namespace is not the services one.
        assert!(observer.discover().await?.is_empty());
        ensure!(matches!(observer.watch("web").await, Err(Error::LookupFailure { .. })));

        // Unregistering removes the node; a second time, or an unknown id, is fine.
        registry.unregister_web("web", &inst.id).await?;
        registry.unregister_web("web", &inst.id).await?;
        registry.unregister_web("unknown", "0000").await?;
        assert!(raw.check_stat(&path).await?.is_none());
        assert_eq!(observer.lookup_web("web").await?, [web("0000", 4081)]);
        registry.unregister_web("web", "0000").await?;
        assert!(observer.lookup_web("web").await?.is_empty());
        Ok(())
    }
    .await;
    drop((registry, observer));
    remove_tree(&raw, &chroot).await?;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_registrations_come_back_on_a_new_session() -> Result<()> {
    let chroot = format!("/{}", unique("lymph-rs-web-expiry"));
    let registry = ZkRegistry::connect(ZkConfig::new(format!("{HOSTS}{chroot}"))).await?;
    let observer = ZkRegistry::connect(ZkConfig::new(format!("{HOSTS}{chroot}"))).await?;
    let raw = raw_client().await?;
    let result = async {
        registry.register("web", instance("w1", 8200)).await?;
        registry.register_web("web", web("w1", 4080)).await?;
        registry.register_web("web", web("w2", 4081)).await?;
        registry.unregister_web("web", "w2").await?;

        let old_session = registry.session_id().context("no session")?;
        registry.restart_session().await?;
        let new_session = registry.session_id().context("no session")?;
        assert_ne!(new_session, old_session);

        let stat = raw.check_stat(&format!("{chroot}/http/web/w1")).await?.context("not registered again")?;
        assert_eq!(stat.ephemeral_owner, new_session);
        assert!(raw.check_stat(&format!("{chroot}/http/web/w2")).await?.is_none(), "unregistered stays away");
        let stat = raw.check_stat(&format!("{chroot}/services/web/w1")).await?.context("service not back")?;
        assert_eq!(stat.ephemeral_owner, new_session);
        assert_eq!(observer.lookup_web("web").await?, [web("w1", 4080)]);

        // Closing the session takes the web registration away with it.
        registry.close().await;
        let deadline = Instant::now() + PROPAGATION;
        while !observer.lookup_web("web").await?.is_empty() {
            ensure!(Instant::now() < deadline, "the web registration outlived its session");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
    .await;
    drop(observer);
    remove_tree(&raw, &chroot).await?;
    result
}
