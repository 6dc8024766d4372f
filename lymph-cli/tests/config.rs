//! `lymph::config`: the `.lymph.yml` files of Python lymph 0.15, interpolation, `dep:`, and the
//! typed views a container is built from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lymph_cli::config::{
    Config, ConfigError, ConfigLoader, EventsConfig, InterfaceConfig, KOMBU_EVENTS, RegistryConfig, ZOOKEEPER_REGISTRY,
};
use lymph_core::Value;

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// The configs of the Python lymph 0.15 peer, `interop/python` in this repository.
fn peer(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/python").join(file)
}

/// A file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("lymph-config-{}-{name}", std::process::id()));
        std::fs::write(&path, text)?;
        Ok(TempFile(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A minimal valid `container:` section, for tests about something else.
const CONTAINER: &str = "
container:
  registry: {class: 'lymph.discovery.static:StaticServiceRegistryHub'}
  events: {class: 'lymph.events.null:NullEventSystem'}
";

/// Loads `yaml` with a fixed environment instead of the process's.
fn with_env(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    ConfigLoader::new().env(env.iter().copied()).from_yaml_str(yaml)
}

/// The error of a load or a view that must fail.
fn error<T: std::fmt::Debug>(result: Result<T, ConfigError>) -> ConfigError {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => error,
    }
}

fn zookeeper(hosts: &str, chroot: Option<&str>, session_timeout: Option<Duration>) -> RegistryConfig {
    RegistryConfig::Zookeeper { hosts: hosts.to_owned(), chroot: chroot.map(str::to_owned), session_timeout }
}

fn kombu(url: &str, exchange: &str) -> EventsConfig {
    EventsConfig::Kombu { url: url.to_owned(), exchange: exchange.to_owned() }
}

// --- the Python peer's files (interop/python) ----------------------------------------------

#[test]
fn echo_yml_loads() -> Result {
    let config = Config::load(peer("echo.yml"), None)?;
    assert!(config.file().ends_with("echo.yml"));

    let container = config.container()?;
    assert_eq!(container.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(container.port, None);
    assert_eq!(container.service_name.as_deref(), Some("echo"), "falls back to the top-level name");
    assert_eq!(container.registry, zookeeper("127.0.0.1:2181", None, None));
    assert_eq!(container.events, kombu("amqp://guest:guest@127.0.0.1:5672//", "lymph"));
    assert_eq!(container.connection.to_connection_config(), lymph_core::ConnectionConfig::default());

    let interfaces = config.interfaces()?;
    assert_eq!(interfaces.len(), 1);
    let echo = &interfaces[0];
    assert_eq!((echo.key.as_str(), echo.name.as_str(), echo.version.as_deref()), ("echo", "echo", None));
    assert_eq!(echo.class, "echo:Echo");
    assert_eq!(echo.config, Value::map([("class", "echo:Echo")]));

    assert_eq!(config.get("container.registry.class"), Some(&Value::from(ZOOKEEPER_REGISTRY)));
    assert_eq!(config.get("container.registry.zkclient.hosts"), Some(&Value::from("127.0.0.1:2181")));
    assert_eq!(config.get("container.nothing.here"), None);
    Ok(())
}

#[test]
fn listener_yml_loads() -> Result {
    let config = Config::load(peer("listener.yml"), None)?;
    let container = config.container()?;
    assert_eq!(container.service_name.as_deref(), Some("listener"));
    assert_eq!(container.registry, zookeeper("127.0.0.1:2181", None, None));
    assert_eq!(container.events, kombu("amqp://guest:guest@127.0.0.1:5672//", "lymph"));
    let interfaces = config.interfaces()?;
    let keys: Vec<_> = interfaces.iter().map(|i| (i.key.as_str(), i.class.as_str())).collect();
    assert_eq!(keys, [("listener", "listener:Listener")]);
    Ok(())
}

#[test]
fn client_lymph_yml_loads() -> Result {
    let config = Config::load(peer(".lymph.yml"), None)?;
    let container = config.container()?;
    assert_eq!(container.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(container.service_name, None);
    assert_eq!(container.registry, zookeeper("127.0.0.1:2181", None, None));
    assert!(matches!(container.events, EventsConfig::Kombu { .. }));
    assert!(config.interfaces()?.is_empty());
    Ok(())
}

// --- interpolation ---------------------------------------------------------------------------

#[test]
fn env_placeholders_replace_whole_values_and_parts_of_strings() -> Result {
    let yaml = "
container:
  ip: $(env.NODE_IP)
  port: $(env.PORT)
  registry: {class: 'lymph.discovery.static:StaticServiceRegistryHub'}
  events:
    class: lymph.events.kombu:KombuEventSystem
    hostname: amqp://$(env.RABBIT_USER):secret@$(env.RABBIT_HOST):5672//
    exchange: $(env.EXCHANGE)-events
";
    let env =
        [("NODE_IP", "10.0.0.7"), ("PORT", "4242"), ("RABBIT_USER", "svc"), ("RABBIT_HOST", "mq"), ("EXCHANGE", "x")];
    let config = with_env(yaml, &env)?;
    assert_eq!(config.get("container.ip"), Some(&Value::from("10.0.0.7")));
    assert_eq!(config.get("container.port"), Some(&Value::from("4242")), "environment values are strings");

    let container = config.container()?;
    assert_eq!(container.ip.as_deref(), Some("10.0.0.7"));
    assert_eq!(container.port, Some(4242));
    assert_eq!(container.events, kombu("amqp://svc:secret@mq:5672//", "x-events"));
    Ok(())
}

#[test]
fn a_missing_env_variable_is_an_error_naming_the_key_and_the_variable() {
    for hostname in ["$(env.RABBIT_HOST)", "amqp://$(env.RABBIT_HOST)//"] {
        let yaml = format!("container:\n  events:\n    hostname: '{hostname}'\n");
        let err = error(with_env(&yaml, &[("OTHER", "1")]));
        let ConfigError::MissingEnv { key, variable, .. } = &err else { panic!("{err:?}") };
        assert_eq!((key.as_str(), variable.as_str()), ("container.events.hostname", "RABBIT_HOST"));
        assert_eq!(err.to_string(), "<string>: container.events.hostname: environment variable RABBIT_HOST is not set");
    }
}

#[test]
fn var_placeholders_come_from_the_vars_file_typed() -> Result {
    let vars = TempFile::new(
        "vars.yml",
        "port: 4000\nzk:\n  client: {class: 'kazoo.client:KazooClient', hosts: 'zk1:2181,zk2:2181/app', timeout: 2.5}\nname: billing\n",
    )?;
    let yaml = "
name: $(var.name)-service
container:
  port: $(var.port)
  registry:
    class: lymph.discovery.zookeeper:ZookeeperServiceRegistry
    zkclient: $(var.zk.client)
  events: {class: 'lymph.events.local:LocalEventSystem'}
missing: $(var.no.such.key)
embedded: [a-$(var.port), $(var.no_such_key)!]
";
    let config = Config::from_yaml_str(yaml, Some(vars.path()))?;
    assert_eq!(config.get("container.port"), Some(&Value::Int(4000)), "a whole placeholder keeps the type");
    assert_eq!(config.get("missing"), Some(&Value::Nil), "a missing var is null");
    assert_eq!(
        config.get("embedded"),
        Some(&Value::Array(vec![Value::from("a-4000"), Value::from("None!")])),
        "inside a string, values are written as Python's str()"
    );

    let container = config.container()?;
    assert_eq!(container.service_name.as_deref(), Some("billing-service"));
    assert_eq!(container.port, Some(4000));
    assert_eq!(container.registry, zookeeper("zk1:2181,zk2:2181", Some("/app"), Some(Duration::from_millis(2500))));
    assert_eq!(container.events, EventsConfig::Local);
    Ok(())
}

#[test]
fn placeholder_look_alikes_stay_as_written() -> Result {
    let yaml = "a: 'costs $(5'\nb: '$(env.UNCLOSED'\nc: '$(env)'\nd: '$env.X'\n";
    let config = with_env(yaml, &[])?;
    for (key, text) in [("a", "costs $(5"), ("b", "$(env.UNCLOSED"), ("c", "$(env)"), ("d", "$env.X")] {
        assert_eq!(config.get(key), Some(&Value::from(text)));
    }
    let err = error(with_env("a: {b: '$(foo.bar)'}\n", &[]));
    assert_eq!(err.key(), Some("a.b"));
    assert!(err.to_string().contains("\"foo\""), "{err}");
    Ok(())
}

// --- dep: and deprecated sections ---------------------------------------------------------------

#[test]
fn dep_strings_resolve_to_dependencies() -> Result {
    let yaml = "
dependencies:
  kazoo:
    class: kazoo.client:KazooClient
    hosts: zk:2181/services
    timeout: 4
  zk: dep:kazoo
container:
  registry:
    class: lymph.discovery.zookeeper:ZookeeperServiceRegistry
    zkclient: dep:zk
  events: {class: 'lymph.events.null:NullEventSystem'}
";
    let config = Config::from_yaml_str(yaml, None)?;
    assert_eq!(config.get("container.registry.zkclient.hosts"), Some(&Value::from("zk:2181/services")));
    assert_eq!(config.get_raw("container.registry.zkclient"), Some(&Value::from("dep:zk")));
    assert_eq!(config.container()?.registry, zookeeper("zk:2181", Some("/services"), Some(Duration::from_secs(4))));
    Ok(())
}

#[test]
fn broken_dep_strings_are_errors_naming_the_key() {
    let registry = |zkclient: &str, dependencies: &str| {
        format!(
            "{dependencies}\ncontainer:\n  registry:\n    class: {ZOOKEEPER_REGISTRY}\n    zkclient: {zkclient}\n  events: {{class: 'lymph.events.null:NullEventSystem'}}\n"
        )
    };

    let err = error(Config::from_yaml_str(&registry("dep:nope", ""), None).and_then(|c| c.container()));
    assert_eq!(err.key(), Some("container.registry.zkclient"));
    assert!(err.to_string().contains("dependencies.nope"), "{err}");

    let cycle = "dependencies: {a: 'dep:b', b: 'dep:a'}";
    let err = error(Config::from_yaml_str(&registry("dep:a", cycle), None).and_then(|c| c.container()));
    assert!(err.to_string().contains("cycle"), "{err}");

    let wrong_class = "dependencies: {kazoo: {class: 'my.zk:Client', hosts: 'zk:2181'}}";
    let err = error(Config::from_yaml_str(&registry("dep:kazoo", wrong_class), None).and_then(|c| c.container()));
    assert_eq!(err.key(), Some("dependencies.kazoo.class"), "an error inside a dependency names where it is");
    assert!(err.to_string().contains("kazoo.client:KazooClient"), "{err}");
}

#[test]
fn deprecated_top_level_sections_move_into_the_container() -> Result {
    let yaml = "
registry:
  class: lymph.discovery.zookeeper:ZookeeperServiceRegistry
  zkclient: {class: 'kazoo.client:KazooClient', hosts: 'zk:2181'}
event_system:
  class: lymph.events.kombu:KombuEventSystem
  hostname: rabbit
container:
  ip: 10.1.1.1
  registry: {class: 'lymph.discovery.static:StaticServiceRegistryHub'}
";
    let config = Config::from_yaml_str(yaml, None)?;
    assert_eq!(config.get_raw("registry"), None);
    assert_eq!(config.get_raw("event_system"), None);
    let container = config.container()?;
    assert_eq!(container.ip.as_deref(), Some("10.1.1.1"));
    assert_eq!(container.registry, zookeeper("zk:2181", None, None), "the top-level section wins, as in lymph");
    assert_eq!(container.events, kombu("amqp://guest:guest@rabbit:5672/%2f", "lymph"));
    Ok(())
}

// --- the typed views -----------------------------------------------------------------------------

#[test]
fn interfaces_keep_file_order_and_versions() -> Result {
    let yaml = format!(
        "{CONTAINER}interfaces:\n  echo: {{class: 'echo:Echo'}}\n  'echo@2.0.0': {{class: 'echo:Echo2', greeting: hi}}\n  web: {{class: 'web:Web', port: 8080}}\n"
    );
    let config = Config::from_yaml_str(&yaml, None)?;
    let interfaces = config.interfaces()?;
    let seen: Vec<_> = interfaces
        .iter()
        .map(|InterfaceConfig { key, name, version, class, .. }| {
            (key.as_str(), name.as_str(), version.as_deref(), class.as_str())
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("echo", "echo", None, "echo:Echo"),
            ("echo@2.0.0", "echo", Some("2.0.0"), "echo:Echo2"),
            ("web", "web", None, "web:Web"),
        ]
    );
    assert_eq!(interfaces[1].config, Value::map([("class", "echo:Echo2"), ("greeting", "hi")]));
    assert_eq!(interfaces[2].config.get("port"), Some(&Value::Int(8080)));
    Ok(())
}

#[test]
fn kombu_urls_are_built_from_kombus_keys() -> Result {
    let events = |keys: &str| -> Result<EventsConfig, ConfigError> {
        let yaml = format!(
            "container:\n  registry: {{class: 'lymph.discovery.static:StaticServiceRegistry'}}\n  events: {{class: '{KOMBU_EVENTS}', {keys}}}\n"
        );
        Ok(Config::from_yaml_str(&yaml, None)?.container()?.events)
    };
    assert_eq!(events("transport: amqp")?, kombu("amqp://guest:guest@localhost:5672/%2f", "lymph"));
    assert_eq!(
        events("hostname: mq, userid: app, password: 'p@ss/w', virtual_host: prod, port: 5673, exchange: ev")?,
        kombu("amqp://app:p%40ss%2fw@mq:5673/prod", "ev")
    );
    assert_eq!(events("hostname: mq, ssl: true")?, kombu("amqps://guest:guest@mq:5671/%2f", "lymph"));
    assert_eq!(
        events("hostname: 'pyamqp://u:p@a:5672/v;amqp://u:p@b:5672/v'")?,
        kombu("amqp://u:p@a:5672/v", "lymph"),
        "the first failover alternate, with kombu's transport names mapped to amqp"
    );
    assert_eq!(events("hostname: [a, b]")?, kombu("amqp://guest:guest@a:5672/%2f", "lymph"));

    let err = error(events("transport: memory"));
    assert_eq!(err.key(), Some("container.events.transport"));
    assert!(err.to_string().contains("memory"), "{err}");
    let err = error(events("hostname: 'redis://localhost:6379/0'"));
    assert_eq!(err.key(), Some("container.events.hostname"));
    Ok(())
}

#[test]
fn rpc_connection_timing_is_read() -> Result {
    let yaml = format!("{CONTAINER}  rpc:\n    connection: {{heartbeat_interval: 0.5, timeout: 2}}\n");
    let config = Config::from_yaml_str(&yaml, None)?;
    let timing = config.container()?.connection;
    assert_eq!(timing.heartbeat_interval, Some(Duration::from_millis(500)));
    assert_eq!(timing.timeout, Some(Duration::from_secs(2)));
    assert_eq!(timing.idle_timeout, None);
    let connection = timing.to_connection_config();
    assert_eq!(connection.heartbeat_interval, Duration::from_millis(500));
    assert_eq!(connection.idle_timeout, Duration::from_secs(10), "lymph's default");

    let yaml = format!("{CONTAINER}  rpc:\n    connection: {{idle_timeout: -1}}\n");
    let err = error(Config::from_yaml_str(&yaml, None)?.container());
    assert_eq!(err.key(), Some("container.rpc.connection.idle_timeout"));
    Ok(())
}

#[test]
fn durations_are_at_most_a_year() -> Result {
    for seconds in ["1e19", "1e300", "31536001"] {
        let yaml = format!("{CONTAINER}  rpc:\n    connection: {{timeout: {seconds}}}\n");
        let err = error(Config::from_yaml_str(&yaml, None)?.container());
        assert_eq!(err.key(), Some("container.rpc.connection.timeout"), "{seconds}");
        assert!(err.to_string().contains("from 0 to 31536000"), "{seconds}: {err}");
    }
    let yaml = format!("{CONTAINER}  rpc:\n    connection: {{timeout: 31536000}}\n");
    let timing = Config::from_yaml_str(&yaml, None)?.container()?.connection;
    assert_eq!(timing.timeout, Some(Duration::from_secs(31_536_000)));
    Ok(())
}

#[test]
fn the_monitoring_interval_is_read_and_must_be_positive() -> Result {
    assert_eq!(Config::from_yaml_str(CONTAINER, None)?.container()?.monitoring_interval, None);
    let yaml = format!("{CONTAINER}  monitoring:\n    interval: 0.25\n");
    let interval = Config::from_yaml_str(&yaml, None)?.container()?.monitoring_interval;
    assert_eq!(interval, Some(Duration::from_millis(250)));
    for bad in ["0", "-1", "soon"] {
        let yaml = format!("{CONTAINER}  monitoring:\n    interval: {bad}\n");
        let err = error(Config::from_yaml_str(&yaml, None)?.container());
        assert_eq!(err.key(), Some("container.monitoring.interval"), "{bad}: {err}");
    }
    Ok(())
}

#[test]
fn the_message_and_queue_limits_are_read_and_must_be_positive() -> Result {
    let container = Config::from_yaml_str(CONTAINER, None)?.container()?;
    assert_eq!((container.max_message_size, container.max_queued_bytes), (None, None));
    let yaml = format!("{CONTAINER}  max_message_size: 1048576\n  max_queued_bytes: \"65536\"\n");
    let container = Config::from_yaml_str(&yaml, None)?.container()?;
    assert_eq!((container.max_message_size, container.max_queued_bytes), (Some(1 << 20), Some(1 << 16)));
    for bad in ["0", "-1", "lots"] {
        let yaml = format!("{CONTAINER}  max_queued_bytes: {bad}\n");
        let err = error(Config::from_yaml_str(&yaml, None)?.container());
        assert_eq!(err.key(), Some("container.max_queued_bytes"), "{bad}: {err}");
    }
    Ok(())
}

#[test]
fn static_registry_and_in_process_events() -> Result {
    let container = Config::from_yaml_str(CONTAINER, None)?.container()?;
    assert_eq!(container.registry, RegistryConfig::Static);
    assert_eq!(container.events, EventsConfig::Null);
    assert_eq!((container.ip, container.port, container.service_name), (None, None, None));
    Ok(())
}

// --- errors -------------------------------------------------------------------------------------

/// The error of `container()` for a file with `container:` set to `section`.
fn container_error(section: &str) -> ConfigError {
    error(Config::from_yaml_str(&format!("container:\n{section}"), None).and_then(|config| config.container()))
}

#[test]
fn unknown_classes_are_errors_listing_the_known_ones() {
    let err = container_error(
        "  registry: {class: 'my.registry:Consul'}\n  events: {class: 'lymph.events.null:NullEventSystem'}\n",
    );
    assert_eq!(err.key(), Some("container.registry.class"));
    let message = err.to_string();
    assert!(
        message.starts_with("<string>: container.registry.class: unknown class \"my.registry:Consul\""),
        "{message}"
    );
    assert!(message.contains(ZOOKEEPER_REGISTRY) && message.contains("StaticServiceRegistryHub"), "{message}");

    let err = container_error(
        "  registry: {class: 'lymph.discovery.static:StaticServiceRegistryHub'}\n  events: {class: 'my:Kafka'}\n",
    );
    assert_eq!(err.key(), Some("container.events.class"));
    let message = err.to_string();
    assert!(
        message.contains("my:Kafka") && message.contains(KOMBU_EVENTS) && message.contains("NullEventSystem"),
        "{message}"
    );
}

#[test]
fn missing_sections_and_classes_are_errors_naming_the_key() -> Result {
    let err = container_error("  events: {class: 'lymph.events.null:NullEventSystem'}\n");
    assert_eq!(err.to_string(), "<string>: container.registry is missing");

    let err = container_error("  registry: {class: 'lymph.discovery.static:StaticServiceRegistryHub'}\n");
    assert_eq!(err.to_string(), "<string>: container.events is missing");

    let err =
        container_error("  registry: {hosts: 'zk:2181'}\n  events: {class: 'lymph.events.null:NullEventSystem'}\n");
    assert_eq!(err.to_string(), "<string>: container.registry.class is missing");

    let err = container_error(&format!(
        "  registry: {{class: '{ZOOKEEPER_REGISTRY}'}}\n  events: {{class: 'lymph.events.null:NullEventSystem'}}\n"
    ));
    assert_eq!(err.to_string(), "<string>: container.registry.zkclient is missing");

    let err =
        error(Config::from_yaml_str(&format!("{CONTAINER}interfaces:\n  echo: {{port: 1}}\n"), None)?.interfaces());
    assert_eq!(err.to_string(), "<string>: interfaces.echo.class is missing");
    let err =
        error(Config::from_yaml_str(&format!("{CONTAINER}interfaces:\n  echo:\n"), None).and_then(|c| c.interfaces()));
    assert_eq!(err.key(), Some("interfaces.echo.class"));
    Ok(())
}

#[test]
fn bad_ports_are_errors_naming_the_key() {
    for port in ["70000", "-1", "http", "[1]"] {
        let err = container_error(&format!("  port: {port}\n{}", CONTAINER.trim_start_matches("\ncontainer:\n")));
        assert_eq!(err.key(), Some("container.port"), "{port}");
        assert!(err.to_string().contains("bad port"), "{err}");
    }
}

#[test]
fn bad_interface_versions_are_errors_naming_the_key() -> Result {
    let config =
        Config::from_yaml_str(&format!("{CONTAINER}interfaces:\n  'echo@two': {{class: 'echo:Echo'}}\n"), None)?;
    let err = error(config.interfaces());
    assert_eq!(err.key(), Some("interfaces.echo@two"));
    assert!(err.to_string().contains("bad version"), "{err}");
    Ok(())
}

#[test]
fn unreadable_files_and_bad_yaml_are_errors_naming_the_file() -> Result {
    let err = error(Config::load("/nonexistent/lymph.yml", None));
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().starts_with("/nonexistent/lymph.yml: cannot read the file"), "{err}");

    let err = error(Config::load(peer("echo.yml"), Some(Path::new("/nonexistent/vars.yml"))));
    assert_eq!(err.file(), "/nonexistent/vars.yml");

    let broken = TempFile::new("broken.yml", "container:\n  ip: 127.0.0.1\n  registry: [unclosed\n")?;
    let err = error(Config::load(broken.path(), None));
    let ConfigError::Syntax { line, .. } = &err else { panic!("{err:?}") };
    assert!(matches!(line, Some(3) | Some(4)), "{err}");
    assert!(err.to_string().starts_with(&format!("{}: line ", broken.path().display())), "{err}");

    let err = error(Config::from_yaml_str("- a list\n", None));
    assert!(err.to_string().contains("mapping"), "{err}");
    Ok(())
}

// --- resolution ---------------------------------------------------------------------------------

#[test]
fn the_config_path_is_cli_then_lymph_config_then_dot_lymph_yml() {
    let cli = Path::new("cli.yml");
    assert_eq!(Config::resolve_path(Some(cli)), cli);
    let env = ConfigLoader::new().env([("LYMPH_CONFIG", "env.yml")]);
    assert_eq!(env.resolve_path(Some(cli)), cli);
    assert_eq!(env.resolve_path(None), Path::new("env.yml"));
    assert_eq!(ConfigLoader::new().env([("LYMPH_CONFIG", "")]).resolve_path(None), Path::new(".lymph.yml"));

    let env = ConfigLoader::new().env([("LYMPH_VARS", "vars.yml")]);
    assert_eq!(env.resolve_vars(Some(Path::new("cli-vars.yml"))).as_deref(), Some(Path::new("cli-vars.yml")));
    assert_eq!(env.resolve_vars(None).as_deref(), Some(Path::new("vars.yml")));
    assert_eq!(ConfigLoader::new().env::<&str, &str>([]).resolve_vars(None), None);
}

#[test]
fn load_cli_reads_lymph_variables_and_merges_the_node_config() -> Result {
    let vars = TempFile::new("cli-vars.yml", "exchange: from-vars\n")?;
    let node = TempFile::new(
        "node.yml",
        &format!(
            "container:\n  ip: 10.0.0.1\n  port: 1000\n  events: {{class: '{KOMBU_EVENTS}', hostname: rabbit}}\ndependencies:\n  kazoo: {{class: 'kazoo.client:KazooClient', hosts: 'zk:2181'}}\ninterfaces:\n  ignored: {{class: 'x:Y'}}\n"
        ),
    )?;
    let service = TempFile::new(
        "service.yml",
        &format!(
            "container:\n  port: 2000\n  registry: {{class: '{ZOOKEEPER_REGISTRY}', zkclient: 'dep:kazoo'}}\n  events: {{class: '{KOMBU_EVENTS}', hostname: rabbit, exchange: $(var.exchange)}}\ninterfaces:\n  echo: {{class: 'echo:Echo'}}\n"
        ),
    )?;
    let env = [
        ("LYMPH_CONFIG", service.path().to_str().ok_or("path")?),
        ("LYMPH_VARS", vars.path().to_str().ok_or("path")?),
        ("LYMPH_NODE_CONFIG", node.path().to_str().ok_or("path")?),
        ("LYMPH_SERVICE_NAME", "echo-svc"),
    ];
    let config = ConfigLoader::new().env(env).load_cli(None, None)?;
    assert_eq!(config.file(), service.path().display().to_string());
    let container = config.container()?;
    assert_eq!(container.ip.as_deref(), Some("10.0.0.1"), "kept from the node config");
    assert_eq!(container.port, Some(2000), "the service file wins key by key");
    assert_eq!(container.service_name.as_deref(), Some("echo-svc"));
    assert_eq!(container.registry, zookeeper("zk:2181", None, None), "dependencies come from the node config");
    assert_eq!(container.events, kombu("amqp://guest:guest@rabbit:5672/%2f", "from-vars"));
    let keys: Vec<_> = config.interfaces()?.into_iter().map(|i| i.key).collect();
    assert_eq!(keys, ["echo"], "only the node config's container sections are merged");

    let config =
        ConfigLoader::new().env([("LYMPH_NODE_IP", "192.168.0.9")]).load_cli(Some(&peer(".lymph.yml")), None)?;
    assert_eq!(config.container()?.ip.as_deref(), Some("127.0.0.1"), "the file's ip wins over LYMPH_NODE_IP");
    let config = ConfigLoader::new()
        .env([("LYMPH_NODE_IP", "192.168.0.9")])
        .load_cli(Some(service.path()), Some(vars.path()))?;
    assert_eq!(config.get("container.ip"), Some(&Value::from("192.168.0.9")));
    let config = ConfigLoader::new().env::<&str, &str>([]).load_cli(Some(service.path()), Some(vars.path()))?;
    assert_eq!(config.get("container.ip"), Some(&Value::from("127.0.0.1")), "lymph's default ip");
    Ok(())
}
