//! The talk's gateway as operators run it: three `scenarios instance` processes (the gateway,
//! `echo`, the listener) on ZooKeeper and RabbitMQ, and `curl`. The trace id `curl` gets back is
//! in the log lines of all three.
//!
//! Needs ZooKeeper and RabbitMQ (`scripts/infra.sh up`) and `curl`.
#![cfg(feature = "real-infra")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `scenarios instance` process, stopped with SIGTERM (gracefully) when dropped.
struct Instance {
    child: Child,
    log: PathBuf,
}

impl Instance {
    fn start(dir: &Path, name: &str, config: &str) -> Self {
        let path = dir.join(format!("{name}.yml"));
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_scenarios"))
            .args(["instance", "--loglevel", "INFO", "--logfile"])
            .arg(&log)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

fn config(chroot: &str, interfaces: &str) -> String {
    format!(
        "container:
  ip: 127.0.0.1
  registry:
    class: lymph.discovery.zookeeper:ZookeeperServiceRegistry
    zkclient:
      class: kazoo.client:KazooClient
      hosts: 127.0.0.1:2181/{chroot}
  events:
    class: lymph.events.kombu:KombuEventSystem
    hostname: amqp://guest:guest@127.0.0.1:5672//
interfaces:
{interfaces}"
    )
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `curl -i` output: status code, headers (lower-case names), body.
fn curl(args: &[&str]) -> Option<(u16, Vec<(String, String)>, String)> {
    let output = Command::new("curl").args(["-s", "-i", "--max-time", "10"]).args(args).output().expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n")?;
    let mut lines = head.lines();
    let code = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Some((code, headers, body.to_owned()))
}

fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn curl_gets_hi_upper_cased_and_one_trace_id_in_every_log() {
    let id = format!("{:08x}", rand::random::<u32>());
    let dir = std::env::temp_dir().join(format!("lymph-web-curl-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let chroot = format!("lymph-web-{id}");
    let port = free_port();
    let web =
        Instance::start(&dir, "web", &config(&chroot, &format!("  web:\n    class: web:Gateway\n    port: {port}\n")));
    let echo = Instance::start(&dir, "echo", &config(&chroot, "  echo:\n    class: echo:Echo\n"));
    let listener = Instance::start(&dir, "listener", &config(&chroot, "  listener:\n    class: listener:Listener\n"));
    let url = format!("http://127.0.0.1:{port}");

    wait_for("the gateway's health check", Duration::from_secs(30), || {
        curl(&[&format!("{url}/_health/")]).is_some_and(|(code, _, _)| code == 200)
    });
    // The gateway answers 503 until echo has registered.
    let post = ["-X", "POST", "-H", "Content-Type: application/json", "-d", r#"{"text": "hi"}"#];
    let upper = format!("{url}/echo/upper");
    let mut answer = None;
    wait_for("POST /echo/upper to succeed", Duration::from_secs(30), || {
        answer = curl(&[&post[..], &[upper.as_str()]].concat()).filter(|(code, _, _)| *code == 200);
        answer.is_some()
    });
    let (_, headers, body) = answer.unwrap();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body, serde_json::json!({"text": "HI"}));
    let trace_id = headers.iter().find(|(name, _)| name == "x-trace-id").map(|(_, v)| v.clone()).expect("X-Trace-Id");
    assert_eq!(trace_id.len(), 32, "{trace_id}");

    let needle = format!("trace_id=\"{trace_id}\"");
    wait_for("the listener to log the event", Duration::from_secs(15), || listener.log().contains(&needle));
    for (name, instance, line) in [
        ("gateway", &web, "POST /echo/upper"),
        ("echo", &echo, "upper-casing"),
        ("listener", &listener, "event received"),
    ] {
        let log = instance.log();
        assert!(
            log.lines().any(|l| l.contains(&needle) && l.contains(line)),
            "no {line:?} line with {needle} in the {name}'s log:\n{log}"
        );
    }
    drop((web, echo, listener));
    let _ = std::fs::remove_dir_all(&dir);
}
