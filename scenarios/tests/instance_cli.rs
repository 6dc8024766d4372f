//! `scenarios instance`: configuration mistakes and unreachable servers give one clear line and a
//! distinct exit status (3 configuration, 4 unreachable, 2 usage), before anything starts. Needs
//! no infrastructure.

use std::path::PathBuf;
use std::process::{Command, Output};

fn config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lymph-cli-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn instance(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scenarios")).arg("instance").args(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const UNREACHABLE: &str = "container:
  registry:
    class: lymph.discovery.zookeeper:ZookeeperServiceRegistry
    zkclient:
      class: kazoo.client:KazooClient
      hosts: 127.0.0.1:1
  events:
    class: lymph.events.null:NullEventSystem
interfaces:
  echo:
    class: CLASS
";

#[test]
fn an_unknown_class_is_named_with_its_key_and_the_known_classes() {
    let path = config("echo.yml", &UNREACHABLE.replace("CLASS", "echo:Nope"));
    let output = instance(&["-c", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(message.contains("interfaces.echo.class") && message.contains("echo:Nope"), "{message}");
    assert!(message.contains("echo:Echo, listener:Listener"), "{message}");
}

#[test]
fn an_unreachable_zookeeper_is_one_line_naming_it() {
    let path = config("echo.yml", &UNREACHABLE.replace("CLASS", "echo:Echo"));
    let output = instance(&["-c", path.to_str().unwrap(), "--loglevel", "ERROR"]);
    assert_eq!(output.status.code(), Some(4));
    let message = stderr(&output);
    assert!(message.contains("container.registry: ZooKeeper at 127.0.0.1:1"), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "{message}");
}

#[test]
fn a_missing_file_and_a_missing_section_are_errors_naming_them() {
    let output = instance(&["-c", "/nonexistent/echo.yml"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("/nonexistent/echo.yml"), "{}", stderr(&output));

    let path = config("echo.yml", "container:\n  ip: 127.0.0.1\ninterfaces: {}\n");
    let output = instance(&["-c", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("container.registry"), "{}", stderr(&output));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let output = instance(&["--port", "many"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--port"), "{}", stderr(&output));
}

fn alive(pid: &str) -> bool {
    Command::new("kill").args(["-0", pid]).status().is_ok_and(|s| s.success())
}

/// The pids the node's log says it started, in order.
fn started_pids(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("started"))
        .filter_map(|l| l.split("pid=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|pid| pid.trim_end_matches(|c: char| !c.is_ascii_digit()).to_owned())
        .collect()
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn node_runs_the_instances_restarts_the_dead_and_stops_them_all() {
    let path = config("node.yml", "instances:\n  sleeper:\n    command: sleep 60\n    numprocesses: 2\n");
    let log = path.with_file_name("node.log");
    let mut node = Command::new(env!("CARGO_BIN_EXE_scenarios"))
        .args(["node", "--loglevel", "INFO", "--no-color", "--logfile"])
        .arg(&log)
        .arg("-c")
        .arg(&path)
        .spawn()
        .unwrap();
    wait_for("two children", || started_pids(&log).len() == 2);
    let first = started_pids(&log);
    assert!(first.iter().all(|pid| alive(pid)), "{first:?}");

    Command::new("kill").args(["-KILL", &first[0]]).status().unwrap();
    wait_for("a third start", || started_pids(&log).len() == 3);
    let replacement = started_pids(&log)[2].clone();
    assert!(alive(&replacement));
    assert!(std::fs::read_to_string(&log).unwrap().contains("exited; starting it again"));

    Command::new("kill").args(["-TERM", &node.id().to_string()]).status().unwrap();
    let status = node.wait().unwrap();
    assert!(status.success(), "{status}");
    for pid in [&first[1], &replacement] {
        wait_for("the children to end", || !alive(pid));
    }
}

#[test]
fn node_without_instances_is_a_configuration_error() {
    let path = config("node.yml", "container: {}\n");
    let output =
        Command::new(env!("CARGO_BIN_EXE_scenarios")).args(["node", "-c", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("instances"), "{}", stderr(&output));
}

/// `curl` the health check of `port`: its HTTP status, 0 if nothing answered.
fn health(port: u16) -> u16 {
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/_health/"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0)
}

/// A `node` process, stopped (with its children) if the test fails.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

#[test]
fn node_shares_a_listening_socket_between_two_web_instances() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let web = config(
        "web.yml",
        &format!(
            "container:
  registry: {{class: 'lymph.discovery.static:StaticServiceRegistryHub'}}
  events: {{class: 'lymph.events.null:NullEventSystem'}}
interfaces:
  web:
    class: web:Gateway
    port: {port}
"
        ),
    );
    let node_config = web.with_file_name("node.yml");
    std::fs::write(
        &node_config,
        format!(
            "container:\n  ip: 127.0.0.1\nsockets:\n  - port: {port}\ninstances:\n  web:\n    command: {} instance -c {}\n    numprocesses: 2\n",
            env!("CARGO_BIN_EXE_scenarios"),
            web.display()
        ),
    )
    .unwrap();
    let log = web.with_file_name("node.log");
    let mut node = Node(
        Command::new(env!("CARGO_BIN_EXE_scenarios"))
            .args(["node", "--loglevel", "INFO", "--no-color", "--logfile"])
            .arg(&log)
            .arg("-c")
            .arg(&node_config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("two children", || started_pids(&log).len() == 2);
    wait_for("the shared port to answer", || health(port) == 200);
    // Without the shared socket the second instance could not bind the port, would exit and be
    // started again; with it, both keep running and keep answering.
    std::thread::sleep(std::time::Duration::from_secs(3));
    for _ in 0..10 {
        assert_eq!(health(port), 200);
    }
    let pids = started_pids(&log);
    assert_eq!(pids.len(), 2, "{}", std::fs::read_to_string(&log).unwrap());
    assert!(pids.iter().all(|pid| alive(pid)), "{pids:?}");
    Command::new("kill").args(["-TERM", &node.0.id().to_string()]).status().unwrap();
    assert!(node.0.wait().unwrap().success());
    wait_for("the port to close", || health(port) == 0);
}

// --- the metrics stream -------------------------------------------------------------------------

/// A `scenarios instance` process, stopped with SIGKILL when dropped (SIGTERM is the test's job).
struct Instance {
    child: std::process::Child,
    /// The lines of its log, read as they come so that the pipe never fills.
    log: std::sync::mpsc::Receiver<String>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Instance {
    /// Starts `scenarios instance -c <config> --loglevel INFO`.
    fn start(config: &std::path::Path) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scenarios"))
            .args(["instance", "--loglevel", "INFO", "--no-color", "-c"])
            .arg(config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (line, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for text in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = line.send(text);
            }
        });
        Instance { child, log }
    }

    /// The first log line that contains `text`, within 15 s.
    fn log_line(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.log.recv_timeout(left).unwrap_or_else(|_| panic!("no log line with {text:?}"));
            if line.contains(text) {
                return line;
            }
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn terminate(mut self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
    }
}

/// The next `stats` message on `socket`, decoded, within 10 s.
async fn stats(socket: &mut zeromq::SubSocket) -> lymph::Value {
    use zeromq::SocketRecv;
    let message = tokio::time::timeout(std::time::Duration::from_secs(10), socket.recv())
        .await
        .expect("a stats message within 10 s")
        .unwrap();
    assert_eq!(message.len(), 2, "{message:?}");
    assert_eq!(message.get(0).unwrap().as_ref(), b"stats");
    let body = message.get(1).unwrap();
    let value = lymph::Value::from_msgpack(body).unwrap();
    assert_eq!(*body, lymph::codec::to_legacy_msgpack(&value), "lymph's legacy msgpack");
    let time = value.get("time").and_then(lymph::Value::as_f64).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - time).abs() < 30.0, "time {time}, now {now}");
    value
}

/// The value of the series entry `name` whose tag `key` is `value`.
fn metric(stats: &lymph::Value, name: &str, key: &str, value: &str) -> Option<lymph::Value> {
    stats.get("series")?.as_array()?.iter().find_map(|entry| {
        let parts = entry.as_array()?;
        let tagged = parts.get(2)?.get(key).and_then(lymph::Value::as_str) == Some(value);
        (parts.first()?.as_str() == Some(name) && tagged).then(|| parts[1].clone())
    })
}

async fn subscribe(endpoint: &str) -> zeromq::SubSocket {
    use zeromq::Socket;
    let mut socket = zeromq::SubSocket::new();
    socket.subscribe("").await.unwrap();
    socket.connect(endpoint).await.unwrap();
    socket
}

#[tokio::test]
async fn an_instance_pushes_its_metrics_at_the_configured_interval() {
    let path = config(
        "echo.yml",
        "container:\n  ip: 127.0.0.1\n  monitoring:\n    interval: 0.2\n  registry:\n    \
         class: lymph.discovery.static:StaticServiceRegistryHub\n  events:\n    \
         class: lymph.events.null:NullEventSystem\ninterfaces:\n  echo:\n    class: echo:Echo\n",
    );
    let instance = Instance::start(&path);
    // The endpoint, from the log line of its binding (the registry is in the process).
    let line = instance.log_line("metrics stream bound");
    let endpoint = line.split("endpoint=").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap_or_default();
    let endpoint = endpoint.trim_matches('"');
    assert!(endpoint.starts_with("tcp://127.0.0.1:"), "{line}");

    let line = instance.log_line(" started");
    let rpc = line.split("endpoint=").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap_or_default();
    let client = lymph::Container::builder().rpc(lymph::transports::ZmqRpc::default()).start().await.unwrap();
    let echo = client.proxy(rpc.trim_matches('"')).namespace("echo");
    for text in ["a", "b"] {
        let _: String = echo.call("upper", &lymph::Value::map([("text", text)])).await.unwrap();
    }

    let mut socket = subscribe(endpoint).await;
    let first = stats(&mut socket).await;
    assert_eq!(metric(&first, "rpc", "subject", "echo.upper"), Some(lymph::Value::Int(2)), "{first}");
    let started = std::time::Instant::now();
    let second = stats(&mut socket).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "pushed every 0.2 s: {:?}", started.elapsed());
    let time = |stats: &lymph::Value| stats.get("time").and_then(lymph::Value::as_f64).unwrap();
    assert!(time(&second) > time(&first), "{first} then {second}");
    let series = second.get("series").and_then(lymph::Value::as_array).unwrap();
    let names: Vec<&str> = series.iter().filter_map(|entry| entry.as_array()?.first()?.as_str()).collect();
    assert!(names.contains(&"rpc.connection_count") && names.contains(&"rpc.in_flight"), "{second}");
    assert!(series.iter().all(|entry| entry.as_array().is_some_and(|p| p.len() == 3)), "{second}");
    client.stop().await;
    instance.terminate();
}

/// On ZooKeeper: the instance registers `monitoring_endpoint`, and its stream counts the requests
/// it served.
#[cfg(feature = "real-infra")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_instance_streams_metrics_that_count_its_requests() {
    use lymph::testing::{Cluster, Real};
    use lymph::{Container, Value};

    let cluster = Real::new().unwrap();
    let (hosts, chroot) = cluster.zookeeper().split_once('/').unwrap();
    let path = config(
        "echo.yml",
        &format!(
            "container:\n  ip: 127.0.0.1\n  monitoring:\n    interval: 0.2\n  registry:\n    \
             class: lymph.discovery.zookeeper:ZookeeperServiceRegistry\n    zkclient:\n      \
             class: kazoo.client:KazooClient\n      hosts: {hosts}/{chroot}\n  events:\n    \
             class: lymph.events.null:NullEventSystem\ninterfaces:\n  echo:\n    class: echo:Echo\n"
        ),
    );
    let instance = Instance::start(&path);
    let client: Container = cluster.client().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let registered = loop {
        if let Some(found) = client.lookup("echo").await.ok().and_then(|found| found.into_iter().next()) {
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "echo never registered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let endpoint = registered.monitoring_endpoint.clone().expect("monitoring_endpoint is registered");
    assert!(endpoint.starts_with("tcp://127.0.0.1:") && endpoint != registered.endpoint, "{registered:?}");
    // The instance registers its interfaces one after the other: `lymph` may come after `echo`.
    let builtin = loop {
        let instances = client.lookup("lymph").await.unwrap_or_default();
        if let Some(builtin) = instances.into_iter().find(|i| i.identity == registered.identity) {
            break builtin;
        }
        assert!(std::time::Instant::now() < deadline, "the builtin lymph interface never registered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(builtin.monitoring_endpoint.as_deref(), Some(endpoint.as_str()), "on every registration");

    let echo = client.proxy("echo");
    for text in ["a", "b", "c"] {
        let upper: String = echo.call("upper", &Value::map([("text", text)])).await.unwrap();
        assert_eq!(upper, text.to_uppercase());
    }
    let mut socket = subscribe(&endpoint).await;
    let counted = async {
        loop {
            let stats = stats(&mut socket).await;
            if metric(&stats, "rpc", "subject", "echo.upper") == Some(Value::Int(3)) {
                return stats;
            }
        }
    };
    let stats =
        tokio::time::timeout(std::time::Duration::from_secs(10), counted).await.expect("rpc = 3 for echo.upper");
    assert_eq!(metric(&stats, "rpc", "identity", &registered.identity), Some(Value::Int(3)), "{stats}");
    instance.terminate();
    cluster.shutdown().await;
}
