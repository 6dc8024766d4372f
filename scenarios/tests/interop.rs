//! Rust and Python lymph 0.15 services in one cluster, both directions.
//!
//! Needs ZooKeeper and RabbitMQ (`scripts/infra.sh up`) and the Python lymph 0.15 peer of
//! `interop/python` (its `setup.sh` runs on first use and installs into `LYMPH_PEER_HOME`,
//! `~/.cache/lymph-python-peer` by default). The peer's services use the shared `/lymph` chroot
//! and the default virtual host, so these tests run one at a time.
#![cfg(feature = "real-infra")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

use lymph::app::{Application, InstanceOptions};
use lymph::config::Config;
use lymph::testing::eventually;
use lymph::types::{Date, DateTime, Decimal};
use lymph::{Container, Error, Value};
use scenarios::echo::{Echo, EchoClient};
use scenarios::listener::Listener;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The Python peer: `interop/python` in this repository.
fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/python")
}

/// The peer's state directory (its virtual environment, pid files, logs, recorded events):
/// `LYMPH_PEER_HOME`, else the peer's own default.
fn peer_home() -> PathBuf {
    std::env::var_os("LYMPH_PEER_HOME").map_or_else(
        || Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cache/lymph-python-peer"),
        PathBuf::from,
    )
}

/// One test at a time, and the peer set up once.
async fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    static SETUP: OnceLock<()> = OnceLock::new();
    let guard = LOCK.lock().await;
    SETUP.get_or_init(|| {
        let output = peer_command("setup.sh").output().expect("run the peer's setup.sh");
        assert!(output.status.success(), "the Python peer's setup failed: {}", String::from_utf8_lossy(&output.stderr));
    });
    guard
}

fn peer_command(script: &str) -> Command {
    let mut command = Command::new("bash");
    command.arg(peer_dir().join(script)).env("LYMPH_PEER_HOME", peer_home());
    command
}

/// Python instances started by a test, stopped when it ends.
struct Python {
    names: Vec<String>,
}

impl Python {
    fn new() -> Self {
        Self { names: Vec::new() }
    }

    /// Starts the peer's service `config` as `name`; returns its endpoint.
    fn start(&mut self, name: &str, config: &str) -> String {
        let output = peer_command("start.sh").args([name, config]).output().expect("run start.sh");
        assert!(output.status.success(), "start.sh {name} failed: {}", String::from_utf8_lossy(&output.stderr));
        self.names.push(name.to_owned());
        std::fs::read_to_string(peer_home().join(format!("run/{name}.endpoint")))
            .expect("endpoint file")
            .trim()
            .to_owned()
    }

    /// The events the Python listener `name` recorded, one JSON object per line.
    fn events(&self, name: &str) -> String {
        std::fs::read_to_string(peer_home().join(format!("run/{name}.events.jsonl"))).unwrap_or_default()
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        if !self.names.is_empty() {
            let _ = peer_command("stop.sh").args(&self.names).output();
        }
    }
}

/// Runs the Python `lymph` command line with the peer's client configuration.
fn lymph(args: &[&str]) -> Output {
    peer_command("lymph.sh").args(args).arg("-c").arg(peer_dir().join(".lymph.yml")).output().expect("run lymph.sh")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn peer_config(name: &str) -> Config {
    Config::load(peer_dir().join(name), None).expect("the peer's configuration loads")
}

/// A running Rust container, stopped when the test ends, also when it panics, so that no instance
/// outlives its test in the shared registry.
struct Running(Container);

impl std::ops::Deref for Running {
    type Target = Container;

    fn deref(&self) -> &Container {
        &self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let container = self.0.clone();
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(container.stop()));
    }
}

/// A Rust container from one of the peer's configurations.
async fn rust_instance(app: &Application, config: &str) -> Result<Running> {
    Ok(Running(app.container(&peer_config(config), &InstanceOptions::default()).await?.start().await?))
}

async fn rust_client() -> Result<Running> {
    rust_instance(&Application::new("interop"), ".lymph.yml").await
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requests_reach_a_rust_echo() -> Result {
    let _one = exclusive().await;
    let _echo = rust_instance(&scenarios::application(), "echo.yml").await?;

    let upper = lymph(&["request", "echo.upper", r#"{"text": "hi"}"#]);
    assert!(upper.status.success(), "{upper:?}");
    assert_eq!(stdout(&upper).trim(), "'HI'");
    let json = lymph(&["request", "--json", "echo.echo", r#"{"text": "x"}"#]);
    assert_eq!(stdout(&json).trim(), r#""x""#, "{json:?}");
    // Python's CLI turns an ERROR reply into a traceback ending in the remote exception.
    let fail = lymph(&["request", "echo.fail", r#"{"message": "boom"}"#]);
    assert!(!fail.status.success());
    let stderr = String::from_utf8_lossy(&fail.stderr);
    assert!(stderr.trim_end().ends_with("boom"), "{stderr}");
    assert!(stderr.contains("ValueError"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_client_calls_a_python_echo() -> Result {
    let _one = exclusive().await;
    let mut python = Python::new();
    let endpoint = python.start("interop-echo", "echo.yml");
    let client = rust_client().await?;
    let echo: EchoClient = client.client();

    assert_eq!(echo.upper("hi".to_owned()).await?, "HI");
    match echo.fail("boom".to_owned()).await {
        Err(Error::RemoteError { type_name, message }) => {
            assert_eq!((type_name.as_str(), message.as_str()), ("ValueError", "boom"))
        }
        other => panic!("expected RemoteError(ValueError), got {other:?}"),
    }
    let nack = client.proxy("echo").call::<Value, _>("nosuchmethod", &Value::Map(Vec::new())).await;
    assert!(matches!(nack, Err(Error::Nack { .. })), "{nack:?}");

    // lymph's tagged types survive Rust → Python → Rust.
    let text = Value::map([
        ("when", Value::from(DateTime::new("2014-09-12T08:33:12+0200")?)),
        ("day", Value::from(Date::new("2014-09-12")?)),
        ("price", Value::from(Decimal::new("2.50")?)),
        ("tags", Value::Set(vec![Value::from("a"), Value::from("b")])),
    ]);
    let back: Value = client.proxy("echo").call("echo", &Value::map([("text", text.clone())])).await?;
    for key in ["when", "day", "price"] {
        assert_eq!(back.get(key), text.get(key), "{key} after the round trip");
    }
    // A set has no order; Python's comes back in its own.
    let Some(Value::Set(mut tags)) = back.get("tags").cloned() else { panic!("tags is not a set: {back}") };
    tags.sort_by_key(|tag| tag.to_string());
    assert_eq!(tags, vec![Value::from("a"), Value::from("b")]);

    // The request went to the Python instance.
    let status: Value = client.proxy(&endpoint).namespace("lymph").call("status", &Value::Map(Vec::new())).await?;
    assert!(!matches!(status, Value::Nil), "lymph.status of the Python instance: {status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_emit_reaches_a_rust_listener() -> Result {
    let _one = exclusive().await;
    let listener = Listener::default();
    let shared = listener.clone();
    let app = Application::new("interop").interface("listener:Listener", move || shared.clone());
    let _rust = rust_instance(&app, "listener.yml").await?;

    let id = unique("run");
    let emit = lymph(&["emit", "interop.hello", &format!(r#"{{"id": "{id}"}}"#)]);
    assert!(emit.status.success(), "{emit:?}");
    let seen = listener.clone();
    let id_value = Value::from(id.as_str());
    eventually("the Rust listener got the Python event", Duration::from_secs(10), || {
        seen.received().iter().any(|e| e.event_type == "interop.hello" && e.get("id") == Some(&id_value))
    })
    .await?;
    let event = listener.received().into_iter().find(|e| e.get("id") == Some(&id_value)).expect("found above");
    assert!(event.trace_id().is_some_and(|t| t.len() == 32), "trace id {:?}", event.trace_id());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_event_reaches_a_python_listener() -> Result {
    let _one = exclusive().await;
    let mut python = Python::new();
    python.start("interop-listener", "listener.yml");
    let echo = rust_instance(&scenarios::application(), "echo.yml").await?;
    let client = rust_client().await?;

    let text = unique("hello");
    let ctx = client.context();
    let upper = ctx.client::<EchoClient>().upper(text.clone()).await?;
    assert_eq!(upper, text.to_uppercase());
    let found = eventually("the Python listener recorded the event", Duration::from_secs(10), || {
        python.events("interop-listener").contains(&text)
    })
    .await;
    found?;
    let line =
        python.events("interop-listener").lines().find(|l| l.contains(&text)).map(str::to_owned).unwrap_or_default();
    let record: serde_json::Value = serde_json::from_str(&line)?;
    assert_eq!(record["type"], "uppercase_transform_finished");
    assert_eq!(record["body"]["text"], text.as_str());
    assert_eq!(record["source"], echo.identity(), "the source is the Rust echo's identity");
    assert_eq!(record["headers"]["trace_id"], ctx.trace_id(), "one trace id from the Rust client to Python");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_discover_and_inspect_show_a_rust_instance() -> Result {
    let _one = exclusive().await;
    let echo = rust_instance(&scenarios::application(), "echo.yml").await?;

    let discover = lymph(&["discover", "echo", "--instances", "--full"]);
    assert!(discover.status.success(), "{discover:?}");
    let listed = stdout(&discover);
    assert!(listed.contains(echo.endpoint()), "discover does not list {}: {listed}", echo.endpoint());
    let all = stdout(&lymph(&["discover", "--all"]));
    assert!(all.contains("echo") && all.contains("lymph"), "{all}");

    // Python's `lymph inspect <endpoint>` fails on any instance (a known lymph 0.15 bug), so by name.
    let inspect = lymph(&["inspect", "echo"]);
    assert!(inspect.status.success(), "{inspect:?}");
    let methods = stdout(&inspect);
    for method in ["echo.upper", "echo.echo", "echo.fail", "lymph.ping"] {
        assert!(methods.contains(method), "inspect does not show {method}: {methods}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_keeps_routing_to_a_rust_echo() -> Result {
    let _one = exclusive().await;
    let echo = rust_instance(&scenarios::application(), "echo.yml").await?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/long_client.py");
    let python = peer_home().join("venv/bin/python");
    // 12 s, idle 4 s between calls: longer than lymph's 3 s liveness timeout each time.
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(peer_dir().join(".lymph.yml"))
            .args(["12", "4"])
            .env("PYTHONWARNINGS", "ignore::UserWarning")
            .output()
    })
    .await??;
    let printed = stdout(&output);
    assert!(output.status.success(), "{printed}\n{}", String::from_utf8_lossy(&output.stderr));
    let calls: Vec<&str> = printed.lines().filter(|l| l.starts_with("ok ")).collect();
    assert!(calls.len() >= 4, "{printed}");
    assert!(calls.iter().all(|l| l.ends_with(echo.endpoint())), "a call went elsewhere: {printed}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_python_echoes_share_the_load() -> Result {
    let _one = exclusive().await;
    let mut python = Python::new();
    let python_endpoint = python.start("interop-echo-mixed", "echo.yml");
    let rust = Echo::default();
    let shared = rust.clone();
    let app = Application::new("interop").interface("echo:Echo", move || shared.clone());
    let _echo = rust_instance(&app, "echo.yml").await?;
    let client = rust_client().await?;
    let proxy = client.proxy("echo");
    for i in 0..40 {
        let reply: String = proxy.call("echo", &Value::map([("text", format!("{i}"))])).await?;
        assert_eq!(reply, format!("{i}"));
    }
    assert!(
        (5..=35).contains(&rust.served()),
        "the Rust echo served {} of 40 (Python at {python_endpoint})",
        rust.served()
    );
    Ok(())
}

/// Runs lymph-rs's command line in this process with the peer's client configuration.
async fn rust_cli(args: &[&str]) -> (u8, String, String) {
    let config = peer_dir().join(".lymph.yml");
    let argv = ["lymph"].iter().copied().chain(args.iter().copied()).chain(["-c", config.to_str().unwrap_or_default()]);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = Application::new("lymph").execute(argv, &mut out, &mut err).await;
    (code, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_command_line_works_against_python_services() -> Result {
    let _one = exclusive().await;
    let mut python = Python::new();
    let endpoint = python.start("interop-cli-echo", "echo.yml");
    python.start("interop-cli-listener", "listener.yml");

    let (code, out, err) = rust_cli(&["discover", "echo"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("echo [1]\n") && out.contains(&endpoint), "{out}");

    let (code, out, err) = rust_cli(&["request", "echo.upper", r#"{"text": "hi"}"#]).await;
    assert_eq!((code, out.as_str()), (0, "'HI'\n"), "{err}");
    // lymph 0.15's own CLI crashes on --address; this one sends to the instance.
    let (code, out, err) =
        rust_cli(&["request", "--address", &endpoint, "--json", "echo.echo", r#"{"text": "x"}"#]).await;
    assert_eq!((code, out.as_str()), (0, "\"x\"\n"), "{err}");
    let (code, _, err) = rust_cli(&["request", "echo.fail", r#"{"message": "boom"}"#]).await;
    assert_eq!(code, 8, "{err}");
    assert!(err.contains("ValueError: boom") && err.lines().count() == 1, "{err}");

    let (code, out, err) = rust_cli(&["inspect", "echo"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rpc echo.upper(text)") && out.contains("rpc lymph.ping"), "{out}");

    // Python's lymph.get_metrics feeds `top` too (calls only).
    let (code, out, err) = rust_cli(&["top", "-i", "0.3", "-n", "1"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with(&endpoint) && l.contains("echo")), "{out}");

    // Python's lymph.change_loglevel takes the same arguments.
    let (code, out, err) = rust_cli(&["change-loglevel", "echo", "-n", "lymph", "-l", "DEBUG", "-p", "1"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&endpoint), "{out}");

    let id = unique("cli");
    let (code, _, err) = rust_cli(&["emit", "interop.cli", &format!(r#"{{"id": "{id}"}}"#)]).await;
    assert_eq!(code, 0, "{err}");
    eventually("the Python listener recorded the emitted event", Duration::from_secs(10), || {
        python.events("interop-cli-listener").contains(&id)
    })
    .await?;
    Ok(())
}

/// A `scenarios instance` process, stopped with SIGTERM (gracefully) when dropped.
struct RustProcess(std::process::Child);

impl Drop for RustProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_the_log_streams_of_rust_and_python_instances() -> Result {
    let _one = exclusive().await;
    let mut python = Python::new();
    let python_endpoint = python.start("interop-tail-echo", "echo.yml");
    let rust = RustProcess(
        Command::new(env!("CARGO_BIN_EXE_scenarios"))
            .args(["instance", "--loglevel", "INFO", "-c"])
            .arg(peer_dir().join("echo.yml"))
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    // Both instances registered.
    let client = rust_client().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client.lookup("echo").await.map(|instances| instances.len()).unwrap_or(0) < 2 {
        assert!(std::time::Instant::now() < deadline, "the Rust instance did not register");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let endpoints: Vec<String> = client.lookup("echo").await?.into_iter().map(|i| i.endpoint).collect();
    let rust_endpoint = endpoints.iter().find(|e| **e != python_endpoint).cloned().ok_or("the Rust instance")?;

    let tail = tokio::spawn(rust_cli_owned(vec!["tail".into(), "echo".into(), "-n".into(), "40".into()]));
    let echo: EchoClient = client.client();
    for i in 0..200 {
        if tail.is_finished() {
            break;
        }
        echo.upper(format!("tail-{i}")).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, out, err) = tail.await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with(&format!("[{python_endpoint}]"))), "no Python record:\n{out}");
    assert!(out.lines().any(|l| l.starts_with(&format!("[{rust_endpoint}]"))), "no Rust record:\n{out}");
    assert!(out.contains("trace_id=\""), "{out}");
    drop(rust);
    Ok(())
}

async fn rust_cli_owned(args: Vec<String>) -> (u8, String, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    rust_cli(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_follows_one_trace_id_from_python_to_rust() -> Result {
    let _one = exclusive().await;
    let mut python = Python::new();
    let python_endpoint = python.start("interop-trace-echo", "echo.yml");
    let _listener = RustProcess(
        Command::new(env!("CARGO_BIN_EXE_scenarios"))
            .args(["instance", "--loglevel", "INFO", "-c"])
            .arg(peer_dir().join("listener.yml"))
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let client = rust_client().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let listener_endpoint = loop {
        if let Some(instance) = client.lookup("listener").await.ok().and_then(|i| i.into_iter().next()) {
            break instance.endpoint;
        }
        assert!(std::time::Instant::now() < deadline, "the Rust listener did not register");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let trace_id = format!("{:032x}", rand::random::<u128>());
    let trace = tokio::spawn(rust_cli_owned(vec![
        "trace".into(),
        trace_id.clone(),
        "-l".into(),
        "INFO".into(),
        "--for".into(),
        "15".into(),
        "-n".into(),
        "6".into(),
    ]));
    // The Python echo handles the request and emits; the Rust listener handles the event.
    for _ in 0..40 {
        if trace.is_finished() {
            break;
        }
        let (code, _, err) =
            rust_cli(&["request", "--trace-id", &trace_id, "echo.upper", r#"{"text": "traced"}"#]).await;
        assert_eq!(code, 0, "{err}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (code, out, err) = trace.await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().all(|l| l.contains(&trace_id)), "{out}");
    assert!(out.lines().any(|l| l.starts_with(&format!("[{python_endpoint}]"))), "no Python echo record:\n{out}");
    assert!(out.lines().any(|l| l.starts_with(&format!("[{listener_endpoint}]"))), "no Rust listener record:\n{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_prints_what_python_emits_through_rabbitmq() -> Result {
    let _one = exclusive().await;
    let event_type = format!("interop.subscribe.{}", unique("t"));
    let subscriber =
        tokio::spawn(rust_cli_owned(vec!["subscribe".into(), event_type.clone(), "-n".into(), "2".into()]));
    // The subscriber's queue exists once it runs: Python emits until two events are in.
    let mut emitted = 0;
    while !subscriber.is_finished() && emitted < 30 {
        let output = lymph(&["emit", &event_type, &format!(r#"{{"n": {emitted}}}"#)]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        emitted += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (code, out, err) = subscriber.await?;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines.iter().all(|l| l.starts_with(&format!("{event_type}: {{'n': "))), "{out}");
    Ok(())
}
