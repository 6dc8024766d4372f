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
