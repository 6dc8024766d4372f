//! `ZkRegistry` across a restart of the ZooKeeper server on 127.0.0.1:2181.
//!
//! This restarts the shared server with `scripts/infra.sh restart zookeeper`, so it lives in a
//! test binary of its own: anything else talking to that ZooKeeper meanwhile sees it go away.
//! The script restarts a server it started itself by its pid; any other it restarts with the
//! shell command in `LYMPH_TEST_ZOOKEEPER_RESTART` (e.g. `systemctl restart zookeeper`), and
//! without one it fails, saying so.
#![cfg(feature = "real-infra")]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use lymph_core::registry::{InstanceWatch, Registry, ServiceInstance};
use lymph_transports::{ZkConfig, ZkRegistry};
use zookeeper_client as zk;

const HOSTS: &str = "127.0.0.1:2181";

fn ids(list: &[ServiceInstance]) -> Vec<&str> {
    list.iter().map(|i| i.id.as_str()).collect()
}

async fn wait_for_ids(watch: &mut InstanceWatch, expected: &[&str], within: Duration) -> Result<()> {
    let waited = tokio::time::timeout(within, watch.wait_for(|list| ids(list) == expected)).await.map(|r| r.map(drop));
    match waited {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => bail!("the watch ended while waiting for {expected:?}"),
        Err(_) => bail!("the watch still shows {:?}, not {expected:?}, after {within:?}", ids(&watch.borrow())),
    }
}

fn restart_zookeeper() -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/infra.sh");
    let output = Command::new("bash").arg(&script).args(["restart", "zookeeper"]).output()?;
    let log = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        eprint!("{log}");
    }
    ensure!(output.status.success(), "scripts/infra.sh restart zookeeper failed ({}):\n{}", output.status, log.trim());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_and_watches_survive_a_server_restart() -> Result<()> {
    let service = format!("zk-restart-{:016x}", rand::random::<u64>());
    let registry = ZkRegistry::connect(ZkConfig::new(HOSTS)).await?;
    let observer = ZkRegistry::connect(ZkConfig::new(HOSTS)).await?;
    registry.register(&service, ServiceInstance::new("r1", "identity", None, "tcp://127.0.0.1:9001")).await?;
    let mut watch = observer.watch(&service).await?;
    assert_eq!(ids(&watch.borrow()), ["r1"]);

    let start = Instant::now();
    tokio::task::spawn_blocking(restart_zookeeper).await??;
    eprintln!("zookeeper restarted in {:?}", start.elapsed());

    // The sessions survive a short restart (or, after a long one, are replaced and the instance
    // registered again): either way the node is back, owned by the registry's current session.
    let raw = {
        let connect = zk::Client::connector().with_session_timeout(Duration::from_secs(6)).connect(HOSTS);
        tokio::time::timeout(Duration::from_secs(10), connect).await.context("ZooKeeper connect timed out")??
    };
    let path = format!("/lymph/services/{service}/r1");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let owner = raw.check_stat(&path).await?.map(|stat| stat.ephemeral_owner);
        if owner.is_some() && owner == registry.session_id() {
            break;
        }
        ensure!(Instant::now() < deadline, "the instance is not back after the restart (owner {owner:?})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_ids(&mut watch, &["r1"], Duration::from_secs(15)).await?;

    // Both registries work again, and the watch is live.
    registry.register(&service, ServiceInstance::new("r2", "identity", None, "tcp://127.0.0.1:9002")).await?;
    wait_for_ids(&mut watch, &["r1", "r2"], Duration::from_secs(2)).await?;
    registry.unregister(&service, "r1").await?;
    wait_for_ids(&mut watch, &["r2"], Duration::from_secs(2)).await?;
    ensure!(observer.discover().await?.contains(&service));
    drop(registry);
    wait_for_ids(&mut watch, &[], Duration::from_secs(2)).await?;
    raw.delete(&format!("/lymph/services/{service}"), None).await?;
    Ok(())
}
