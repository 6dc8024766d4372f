//! lymph's commands on the embedded backends: the talk's services in one process, the commands
//! run through `Application::execute` as a binary would run them.

use std::time::Duration;

use lymph::app::Application;
use lymph::memory::MemoryNetwork;
use lymph::testing::eventually;
use lymph::{Container, Value};
use scenarios::echo::Echo;
use scenarios::listener::Listener;

/// What a command printed and its exit status.
struct Outcome {
    code: u8,
    out: String,
    err: String,
}

const CONFIG: &str = "container:
  ip: 127.0.0.1
  registry:
    class: lymph.discovery.static:StaticServiceRegistryHub
  events:
    class: lymph.events.local:LocalEventSystem
";

struct Cluster {
    network: MemoryNetwork,
    app: Application,
    config: std::path::PathBuf,
    listener: Listener,
    _containers: Vec<Container>,
}

impl Cluster {
    async fn new() -> Self {
        let network = MemoryNetwork::new();
        let listener = Listener::default();
        let echo = Container::builder().network(&network).interface(Echo::default()).start().await.unwrap();
        let listening = Container::builder().network(&network).interface(listener.clone()).start().await.unwrap();
        let dir = std::env::temp_dir().join(format!("lymph-cli-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("client.yml");
        std::fs::write(&config, CONFIG).unwrap();
        let app = scenarios::application().with_network(&network);
        Self { network, app, config, listener, _containers: vec![echo, listening] }
    }

    async fn run(&self, args: &[&str]) -> Outcome {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let config = self.config.to_str().unwrap();
        let argv = ["scenarios"].iter().chain(args).copied().chain(["-c", config]);
        let code = self.app.execute(argv, &mut out, &mut err).await;
        Outcome { code, out: String::from_utf8(out).unwrap(), err: String::from_utf8(err).unwrap() }
    }
}

#[tokio::test]
async fn request_prints_the_reply_as_python_repr_or_json() {
    let cluster = Cluster::new().await;
    let upper = cluster.run(&["request", "echo.upper", r#"{"text": "hi"}"#]).await;
    assert_eq!((upper.code, upper.out.as_str()), (0, "'HI'\n"), "{}", upper.err);
    let json = cluster.run(&["request", "--json", "echo.echo", r#"{"text": "it's"}"#]).await;
    assert_eq!(json.out, "\"it's\"\n");
    let headers = cluster.run(&["request", "-D", "--trace-id", "abc", "echo.echo", r#"{"text": "x"}"#]).await;
    assert!(headers.out.starts_with("version: None\ntrace_id: 'abc'\n\n'x'\n"), "{}", headers.out);
    // Unlike Python lymph 0.15's CLI, `lymph.*` through the registry works.
    let status = cluster.run(&["request", "lymph.status", "{}"]).await;
    assert_eq!(status.code, 0, "{}", status.err);
    assert!(status.out.starts_with("{'endpoint': 'mock://127.0.0.1:"), "{}", status.out);
}

#[tokio::test]
async fn request_failures_are_one_line_with_distinct_exit_statuses() {
    let cluster = Cluster::new().await;
    let cases: [(&[&str], u8, &str); 6] = [
        (&["request", "echo.fail", r#"{"message": "boom"}"#], 8, "remote error ValueError: boom"),
        (&["request", "echo.nosuch", "{}"], 7, "NACK"),
        (&["request", "nosuch.method", "{}"], 5, "lookup failure"),
        (&["request", "echo.upper", "{not json"], 9, "<params> is not valid JSON"),
        (&["request", "echo.upper", "[1]"], 9, "JSON object"),
        (&["request", "upper", "{}"], 9, "not `service.method`"),
    ];
    for (args, code, message) in cases {
        let outcome = cluster.run(args).await;
        assert_eq!(outcome.code, code, "{args:?}: {}", outcome.err);
        assert!(outcome.err.contains(message), "{args:?}: {}", outcome.err);
        assert_eq!(outcome.err.lines().count(), 1, "{args:?}: {}", outcome.err);
        assert!(outcome.out.is_empty(), "{args:?}: {}", outcome.out);
    }
    let usage = cluster.run(&["request", "--timeout"]).await;
    assert_eq!(usage.code, 2, "{}", usage.err);
}

#[tokio::test]
async fn numbers_out_of_range_and_an_empty_event_type_are_bad_input() {
    let cluster = Cluster::new().await;
    let trace_id = "0123456789abcdef0123456789abcdef";
    let text = r#"{"text": "x"}"#;
    let cases: [(&[&str], &str); 13] = [
        (&["request", "echo.upper", text, "--timeout", "1e20"], "--timeout 100000000000000000000 is not"),
        (&["request", "echo.upper", text, "--timeout=nan"], "--timeout NaN is not"),
        (&["request", "echo.upper", text, "--timeout", "0"], "--timeout 0 is not"),
        (&["request", "echo.upper", text, "--timeout", "86401"], "at most 86400"),
        (&["request", "echo.upper", text, "-N", "2", "-C", "1000000000000"], "-C 1000000000000 is more than 10000"),
        (&["trace", trace_id, "--for", "1e20"], "--for 100000000000000000000 is not"),
        (&["trace", trace_id, "--for=-1"], "--for -1 is not"),
        (&["top", "-i", "1e20"], "--interval 100000000000000000000 is not"),
        (&["top", "-i", "inf"], "--interval inf is not"),
        (&["change-loglevel", "echo", "-n", "x", "-l", "debug", "-p", "1e300"], "--period"),
        (&["change-loglevel", "echo", "-n", "x", "-l", "debug", "-p", "0"], "--period 0 is not"),
        (&["emit", "", "{}"], "<event_type> is empty"),
        (&["emit", ""], "<event_type> is empty"),
    ];
    for (args, message) in cases {
        let outcome = cluster.run(args).await;
        assert_eq!(outcome.code, 9, "{args:?}: {}", outcome.err);
        assert!(outcome.err.contains(message), "{args:?}: {}", outcome.err);
        assert_eq!(outcome.err.lines().count(), 1, "{args:?}: {}", outcome.err);
        assert!(outcome.out.is_empty(), "{args:?}: {}", outcome.out);
    }
    // The longest period and timeout still work.
    let upper = cluster.run(&["request", "echo.upper", text, "--timeout", "86400"]).await;
    assert_eq!((upper.code, upper.out.as_str()), (0, "'X'\n"), "{}", upper.err);
}

#[tokio::test]
async fn request_with_n_and_c_reports_speed_and_percentiles() {
    let cluster = Cluster::new().await;
    let load = cluster.run(&["request", "-N", "200", "-C", "8", "echo.echo", r#"{"text": "x"}"#]).await;
    assert_eq!(load.code, 0, "{}", load.err);
    assert!(load.out.starts_with("sending 200 requests, concurrency 8\n"), "{}", load.out);
    for line in
        ["Requests per second:", "(#req=200)", "Timeout rate:", "50.0 %", "99.0 %", "(max)", "Latency histogram:"]
    {
        assert!(load.out.contains(line), "{line:?} missing from:\n{}", load.out);
    }
}

#[tokio::test]
async fn discover_lists_services_and_instances() {
    let cluster = Cluster::new().await;
    let plain = cluster.run(&["discover"]).await;
    assert_eq!(plain.code, 0, "{}", plain.err);
    assert_eq!(plain.out, "echo [1]\nlistener [1]\nlymph [2]\n");
    let one = cluster.run(&["discover", "echo"]).await;
    let lines: Vec<&str> = one.out.lines().collect();
    assert_eq!(lines[0], "echo [1]");
    assert!(lines[1].starts_with('[') && lines[1].ends_with("mock://127.0.0.1:1"), "{}", one.out);
    let json = cluster.run(&["discover", "--json"]).await;
    let parsed: serde_json::Value = serde_json::from_str(&json.out).unwrap();
    assert_eq!(parsed["echo"][0]["endpoint"], "mock://127.0.0.1:1");
    assert_eq!(parsed["lymph"].as_array().map(Vec::len), Some(2));
    assert!(json.out.contains("\"endpoint\": "), "Python's separators: {}", json.out);
    let full = cluster.run(&["discover", "echo", "--full"]).await;
    assert!(full.out.contains("   type: False\n") && full.out.contains("   version: None\n"), "{}", full.out);
}

#[tokio::test]
async fn inspect_lists_the_methods_with_their_help() {
    let cluster = Cluster::new().await;
    let inspect = cluster.run(&["inspect", "echo"]).await;
    assert_eq!(inspect.code, 0, "{}", inspect.err);
    assert!(
        inspect.out.contains("rpc echo.upper(text)\n\t Upper-cases `text` and emits uppercase_transform_finished.\n"),
        "{}",
        inspect.out
    );
    assert!(inspect.out.contains("rpc lymph.ping(payload)"), "{}", inspect.out);
    let missing = cluster.run(&["inspect", "nosuch"]).await;
    assert_eq!(missing.code, 5, "{}", missing.err);
}

#[tokio::test]
async fn emit_reaches_the_listener_with_the_trace_id() {
    let cluster = Cluster::new().await;
    let emit =
        cluster.run(&["emit", "interop.cli", r#"{"n": 1}"#, "--trace-id", "0123456789abcdef0123456789abcdef"]).await;
    assert_eq!(emit.code, 0, "{}", emit.err);
    let listener = cluster.listener.clone();
    eventually("the listener got the event", Duration::from_secs(5), move || !listener.received().is_empty())
        .await
        .unwrap();
    let event = &cluster.listener.received()[0];
    assert_eq!(event.get("n"), Some(&Value::Int(1)));
    assert_eq!(event.trace_id(), Some("0123456789abcdef0123456789abcdef"));
    let bad = cluster.run(&["emit", "interop.cli", "{"]).await;
    assert_eq!(bad.code, 9, "{}", bad.err);
}

#[tokio::test]
async fn subscribe_prints_events_as_they_come() {
    let cluster = Cluster::new().await;
    let subscriber = {
        let app = scenarios::application().with_network(&cluster.network);
        let config = cluster.config.clone();
        tokio::spawn(async move {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let argv = ["scenarios", "subscribe", "cli.*", "-n", "2", "-c", config.to_str().unwrap()];
            let code = app.execute(argv, &mut out, &mut err).await;
            (code, String::from_utf8(out).unwrap())
        })
    };
    // The subscriber's queue exists once it runs; emit until both events are in.
    let client = Container::builder().network(&cluster.network).start().await.unwrap();
    let mut n = 0;
    while !subscriber.is_finished() && n < 200 {
        client.emit("cli.tick", Value::map([("n", n)])).await.unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (code, out) = subscriber.await.unwrap();
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines.iter().all(|l| l.starts_with("cli.tick: {'n': ")), "{out}");
}

#[tokio::test]
async fn config_list_and_help() {
    let cluster = Cluster::new().await;
    let config = cluster.run(&["config"]).await;
    assert!(config.out.contains("lymph.discovery.static:StaticServiceRegistryHub"), "{}", config.out);
    let help = cluster.run(&["help", "request"]).await;
    assert_eq!(help.code, 0);
    assert!(help.out.contains("Usage: scenarios request [OPTIONS] <SUBJECT> <PARAMS>"), "{}", help.out);
    assert!(help.out.contains("--loglevel"), "the global options show: {}", help.out);
    let unknown = cluster.run(&["help", "nosuch"]).await;
    assert_eq!(unknown.code, 9);
}

/// Records the log level changes asked of it.
#[derive(Debug, Default)]
struct Recorded(std::sync::Mutex<Vec<(String, String, Duration)>>);

impl lymph::LogLevels for Recorded {
    fn change(&self, target: &str, level: &str, period: Duration) -> Result<(), String> {
        self.0.lock().unwrap().push((target.to_owned(), level.to_owned(), period));
        Ok(())
    }
}

#[tokio::test]
async fn change_loglevel_reaches_every_instance() {
    let cluster = Cluster::new().await;
    let recorded = std::sync::Arc::new(Recorded::default());
    let _second = Container::builder()
        .network(&cluster.network)
        .interface(Echo::default())
        .log_levels(recorded.clone())
        .start()
        .await
        .unwrap();
    // Two echo instances: the first has no way to change its levels, the second records.
    let outcome = cluster.run(&["change-loglevel", "echo", "-n", "scenarios::echo", "-l", "debug", "-p", "5"]).await;
    assert_eq!(outcome.code, 8, "{}{}", outcome.out, outcome.err);
    assert!(outcome.out.contains("cannot be changed"), "{}", outcome.out);
    assert_eq!(outcome.out.lines().count(), 2, "{}", outcome.out);
    assert_eq!(
        *recorded.0.lock().unwrap(),
        vec![("scenarios::echo".to_owned(), "DEBUG".to_owned(), Duration::from_secs(5))]
    );

    let bad = cluster.run(&["change-loglevel", "echo", "-n", "x", "-l", "LOUD"]).await;
    assert_eq!(bad.code, 8, "{}", bad.err);
    assert!(bad.out.contains("unknown loglevel"), "{}", bad.out);

    // A qualname names one logger: no filter directives.
    let directive = cluster.run(&["change-loglevel", "echo", "-n", "trace,x", "-l", "ERROR", "-p", "2"]).await;
    assert_eq!(directive.code, 8, "{}", directive.err);
    assert!(directive.out.contains("bad qualname \"trace,x\""), "{}", directive.out);
    assert_eq!(recorded.0.lock().unwrap().len(), 1, "nothing more was changed");
}

/// `[name, value, tags]` entries of `series` named `name` whose tag `key` is `value`.
fn metric(series: &Value, name: &str, key: &str, value: &str) -> Option<Value> {
    let Value::Array(entries) = series else { return None };
    entries.iter().find_map(|entry| {
        let Value::Array(parts) = entry else { return None };
        (parts[0].as_str() == Some(name) && parts[2].get(key).and_then(Value::as_str) == Some(value))
            .then(|| parts[1].clone())
    })
}

#[tokio::test]
async fn get_metrics_counts_known_traffic_and_top_shows_it() {
    let cluster = Cluster::new().await;
    for text in ["a", "b", "c"] {
        let upper = cluster.run(&["request", "echo.upper", &format!(r#"{{"text": "{text}"}}"#)]).await;
        assert_eq!(upper.code, 0, "{}", upper.err);
    }
    let fail = cluster.run(&["request", "echo.fail", r#"{"message": "x"}"#]).await;
    assert_eq!(fail.code, 8);
    let listener = cluster.listener.clone();
    eventually("three events handled", Duration::from_secs(5), move || listener.received().len() == 3).await.unwrap();

    let client = Container::builder().network(&cluster.network).start().await.unwrap();
    let echo = client.proxy("echo").namespace("lymph");
    let series: Value = echo.call("get_metrics", &Value::Map(Vec::new())).await.unwrap();
    assert_eq!(metric(&series, "rpc", "subject", "echo.upper"), Some(Value::Int(3)), "{series}");
    assert_eq!(metric(&series, "rpc", "subject", "echo.fail"), Some(Value::Int(1)));
    assert_eq!(metric(&series, "rpc.error_count", "kind", "ERROR"), Some(Value::Int(1)));
    assert!(matches!(metric(&series, "rpc.duration_ms", "subject", "echo.upper"), Some(Value::F64(ms)) if ms >= 0.0));
    let listening = client.proxy("listener").namespace("lymph");
    let series: Value = listening.call("get_metrics", &Value::Map(Vec::new())).await.unwrap();
    assert_eq!(metric(&series, "events", "handler", "on_uppercase"), Some(Value::Int(3)), "{series}");

    let top = cluster.run(&["top", "-i", "0.2", "-n", "1"]).await;
    assert_eq!(top.code, 0, "{}", top.err);
    let lines: Vec<&str> = top.out.lines().collect();
    assert!(lines[0].starts_with("ENDPOINT") && lines[0].contains("CALLS/S"), "{}", top.out);
    assert!(lines.iter().any(|l| l.starts_with("mock://127.0.0.1:1") && l.contains("echo")), "{}", top.out);
}
