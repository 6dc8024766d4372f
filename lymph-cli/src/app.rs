//! The [`Application`]: the interfaces and plugins a binary can run, by lymph class name, and
//! how a configuration becomes a container.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use lymph_core::event::{Deliveries, Subscription};
use lymph_core::interface::Interface;
use lymph_core::memory::{MemoryEvents, MemoryNetwork, MemoryRegistry};
use lymph_core::web::WebInterface;
use lymph_core::{Container, ContainerBuilder, Error, Event, EventSystem, Plugin, Value};
use lymph_transports::{AmqpConfig, AmqpEvents, ZkConfig, ZkRegistry, ZmqConfig, ZmqRpc};

use crate::config::{Config, ContainerConfig, EventsConfig, RegistryConfig};

/// What a class name makes: an RPC/event interface or a web interface.
#[derive(Clone)]
enum Factory {
    Interface(Arc<dyn Fn() -> Arc<dyn Interface> + Send + Sync>),
    Web(Arc<dyn Fn() -> Arc<dyn WebInterface> + Send + Sync>),
}

/// What a plugin class name makes, from the plugin's configuration section.
type PluginFactory = Arc<dyn Fn(&Value) -> Result<Arc<dyn Plugin>, String> + Send + Sync>;

/// A service binary: the interfaces and plugins it can run, by lymph class name, and its
/// command line.
#[derive(Clone)]
pub struct Application {
    name: String,
    classes: BTreeMap<String, Factory>,
    plugins: BTreeMap<String, PluginFactory>,
    network: Option<MemoryNetwork>,
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("name", &self.name)
            .field("classes", &self.classes.keys())
            .field("plugins", &self.plugins.keys())
            .finish()
    }
}

/// lymph's instance options: where the container binds, and whether it registers.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InstanceOptions {
    /// The IP address to bind and register (overrides `container.ip`; else `LYMPH_NODE_IP`).
    #[arg(long, env = "LYMPH_NODE_IP")]
    pub ip: Option<String>,
    /// The RPC port (overrides `container.port`; random when neither is set).
    #[arg(long)]
    pub port: Option<u16>,
    /// Do not register in the service registry.
    #[arg(long)]
    pub isolated: bool,
}

/// What can stop an application from running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The configuration file is unreadable or wrong.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The configuration names an interface class this application does not have.
    #[error("interfaces.{key}.class: unknown interface class {class:?}; this application has: {known}")]
    UnknownClass {
        /// The interface key in the configuration.
        key: String,
        /// The class name.
        class: String,
        /// The classes it knows, comma-separated.
        known: String,
    },
    /// The configuration names a plugin class this application does not have.
    #[error("plugins.{key}.class: unknown plugin class {class:?}; this application has: {known}")]
    UnknownPlugin {
        /// The plugin's key in the configuration.
        key: String,
        /// The class name.
        class: String,
        /// The plugin classes it knows, comma-separated (`none` when it knows none).
        known: String,
    },
    /// A plugin's factory refused its configuration.
    #[error("{key}: {message}")]
    Plugin {
        /// The key path it refused: `plugins.<name>`, or `plugins.<name>.<key>`.
        key: String,
        /// Why.
        message: String,
    },
    /// A backend could not be reached or the container failed to start.
    #[error("{what}: {source}")]
    Start {
        /// What was being started.
        what: String,
        /// Why it failed.
        #[source]
        source: Error,
    },
}

impl Application {
    /// An application named `name` (used in messages) with no interfaces yet.
    ///
    /// With the feature `otel`, it knows the plugin class
    /// [`lymph.plugins.otel:OpenTelemetryPlugin`](crate::config::OTEL_PLUGIN) from the start
    /// (keys `endpoint` and `service_name`; see `lymph_transports::otel`).
    pub fn new(name: impl Into<String>) -> Self {
        let app = Self { name: name.into(), classes: BTreeMap::new(), plugins: BTreeMap::new(), network: None };
        #[cfg(feature = "otel")]
        let app = app.plugin(crate::config::OTEL_PLUGIN, crate::otel::plugin);
        app
    }

    /// Makes `class` (a lymph class path such as `echo:Echo`) run the interface `factory` makes;
    /// every instance of the class in a configuration gets a fresh one.
    pub fn interface<I: Interface>(
        mut self,
        class: impl Into<String>,
        factory: impl Fn() -> I + Send + Sync + 'static,
    ) -> Self {
        let factory = Factory::Interface(Arc::new(move || Arc::new(factory()) as Arc<dyn Interface>));
        self.classes.insert(class.into(), factory);
        self
    }

    /// Makes `class` (such as `web:Gateway`) run the web interface `factory` makes; its
    /// configuration section sets the port and the rest (see [`lymph_core::web::WebConfig`]).
    pub fn web<W: WebInterface>(
        mut self,
        class: impl Into<String>,
        factory: impl Fn() -> W + Send + Sync + 'static,
    ) -> Self {
        let factory = Factory::Web(Arc::new(move || Arc::new(factory()) as Arc<dyn WebInterface>));
        self.classes.insert(class.into(), factory);
        self
    }

    /// Makes `class` (a lymph class path such as `myplugins:Audit`) in a configuration's
    /// `plugins:` install the plugin `factory` makes from the plugin's section (`class` included)
    /// in every container built from that configuration.
    ///
    /// The factory refuses a configuration it cannot use with a message; one about a key of the
    /// section starts with that key and a colon (`endpoint: not a URL`), and is reported as
    /// `plugins.<name>.endpoint: not a URL`, a configuration error.
    pub fn plugin(
        mut self,
        class: impl Into<String>,
        factory: impl Fn(&Value) -> Result<Arc<dyn Plugin>, String> + Send + Sync + 'static,
    ) -> Self {
        self.plugins.insert(class.into(), Arc::new(factory));
        self
    }

    /// The class names this application knows, sorted.
    pub fn classes(&self) -> impl Iterator<Item = &str> {
        self.classes.keys().map(String::as_str)
    }

    /// The plugin class names this application knows, sorted.
    pub fn plugin_classes(&self) -> impl Iterator<Item = &str> {
        self.plugins.keys().map(String::as_str)
    }

    /// Builds a container from `config`: connects its backends, installs its interfaces and its
    /// plugins.
    ///
    /// # Errors
    ///
    /// A configuration error, an unknown interface or plugin class, a plugin configuration its
    /// factory refuses, or a backend that cannot be reached.
    pub async fn container(&self, config: &Config, options: &InstanceOptions) -> Result<ContainerBuilder, AppError> {
        let container = config.container()?;
        let mut interfaces = Vec::new();
        for interface in config.interfaces()? {
            let factory = self.classes.get(&interface.class).ok_or_else(|| AppError::UnknownClass {
                key: interface.key.clone(),
                class: interface.class.clone(),
                known: self.classes.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
            interfaces.push((interface.key, factory.clone(), interface.config));
        }
        let mut plugins = Vec::new();
        for plugin in config.plugins()? {
            let factory = self.plugins.get(&plugin.class).ok_or_else(|| AppError::UnknownPlugin {
                key: plugin.key.clone(),
                class: plugin.class.clone(),
                known: if self.plugins.is_empty() {
                    "none".to_owned()
                } else {
                    self.plugins.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })?;
            plugins.push(factory(&plugin.config).map_err(|message| plugin_error(&plugin.key, message))?);
        }
        let mut builder = match &self.network {
            Some(network) => Container::builder().network(network),
            None => backends(&container, options).await?,
        };
        for (key, factory, config) in interfaces {
            builder = match factory {
                Factory::Interface(make) => builder.interface_arc(key, make(), config),
                Factory::Web(make) => builder.web_arc(key, make(), config),
            };
        }
        for plugin in plugins {
            builder = builder.plugin_arc(plugin);
        }
        Ok(builder.register(!options.isolated))
    }

    /// A client container for `config`: its backends, no interfaces, not registered (lymph's
    /// `lymph.client.Client`). The IP and port are the configuration's, or lymph's defaults.
    ///
    /// # Errors
    ///
    /// A configuration error, or a backend that cannot be reached.
    pub async fn client(&self, config: &Config) -> Result<Container, AppError> {
        let container = config.container()?;
        let options = InstanceOptions { isolated: true, ..InstanceOptions::default() };
        let builder = match &self.network {
            Some(network) => Container::builder().network(network),
            None => backends(&container, &options).await?,
        };
        builder
            .register(false)
            .start()
            .await
            .map_err(|source| AppError::Start { what: "the client".to_owned(), source })
    }

    /// Whether `name` is one of the application's commands (`instance`, `request`, ...), for a
    /// binary that has commands of its own besides.
    pub fn has_command(&self, name: &str) -> bool {
        crate::commands::command(self).find_subcommand(name).is_some()
    }

    /// The application's name, as its binary is called.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Serves every container this application starts on `network` instead of the backends the
    /// configuration names: an embedded cluster for tests of services and commands.
    pub fn with_network(mut self, network: &MemoryNetwork) -> Self {
        self.network = Some(network.clone());
        self
    }

    /// Parses the process's command line and runs it; for `fn main`.
    pub fn main(self) -> ExitCode {
        self.main_from(std::env::args_os())
    }

    /// Parses `args` (the program name first), runs the command on a new runtime and returns
    /// its exit status; output goes to stdout, errors to stderr.
    pub fn main_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        // A panic the ZooKeeper registry catches is not printed as one.
        lymph_transports::quiet_caught_watch_panics();
        let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("{}: cannot start the runtime: {error}", self.name);
                return ExitCode::from(1);
            }
        };
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        let code = runtime.block_on(self.execute(args, &mut out, &mut err));
        ExitCode::from(code)
    }

    /// Parses `args` (the program name first) and runs the command on the current runtime,
    /// writing its output to `out` and its errors to `err`; returns the exit status (see
    /// [`Failure`](crate::Failure) for the codes).
    pub async fn execute<I, T>(
        &self,
        args: I,
        out: &mut (dyn Write + Send + Sync),
        err: &mut (dyn Write + Send + Sync),
    ) -> u8
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        crate::commands::execute(self, args, out, err).await
    }
}

/// A plugin factory's refusal, keyed `plugins.<name>.<key>` when the message starts with a key.
fn plugin_error(name: &str, message: String) -> AppError {
    let is_key =
        |head: &str| !head.is_empty() && head.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    match message.split_once(": ") {
        Some((head, rest)) if is_key(head) => {
            AppError::Plugin { key: format!("plugins.{name}.{head}"), message: rest.to_owned() }
        }
        _ => AppError::Plugin { key: format!("plugins.{name}"), message },
    }
}

/// The container's backends as the configuration names them.
async fn backends(container: &ContainerConfig, options: &InstanceOptions) -> Result<ContainerBuilder, AppError> {
    let ip = options.ip.clone().or_else(|| container.ip.clone()).unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = options.port.or(container.port);
    let mut zmq = ZmqConfig::new().with_ip(ip).with_port(port);
    if let Some(limit) = container.max_message_size {
        zmq = zmq.with_max_message_size(limit);
    }
    if let Some(limit) = container.max_queued_bytes {
        zmq = zmq.with_max_queued_bytes(limit);
    }
    let mut builder = Container::builder().rpc(ZmqRpc::new(zmq));
    builder = builder.connection(container.connection.to_connection_config());
    builder = match &container.registry {
        RegistryConfig::Zookeeper { hosts, chroot, session_timeout } => {
            let mut zk = ZkConfig::new(format!("{hosts}{}", chroot.as_deref().unwrap_or_default()));
            if let Some(timeout) = session_timeout {
                zk = zk.with_session_timeout(*timeout);
            }
            let registry = ZkRegistry::connect(zk).await.map_err(|source| AppError::Start {
                what: format!("container.registry: ZooKeeper at {hosts}"),
                source,
            })?;
            builder.registry(registry)
        }
        RegistryConfig::Static => builder.registry(MemoryRegistry::new()),
    };
    builder = match &container.events {
        EventsConfig::Kombu { url, exchange } => {
            let events = AmqpEvents::connect(AmqpConfig::new(url.clone()).with_exchange(exchange.clone()))
                .await
                .map_err(|source| AppError::Start { what: format!("container.events: RabbitMQ at {url}"), source })?;
            builder.events(events)
        }
        EventsConfig::Local => builder.events(MemoryEvents::new()),
        EventsConfig::Null => builder.events(NullEvents),
    };
    Ok(builder)
}

/// lymph's `NullEventSystem`: emitted events go nowhere, subscriptions receive nothing.
#[derive(Debug, Clone, Copy)]
struct NullEvents;

impl EventSystem for NullEvents {
    fn emit(&self, _event: Event, _delay: Duration) -> BoxFuture<'_, lymph_core::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn subscribe(&self, _subscription: Subscription) -> BoxFuture<'_, lymph_core::Result<Deliveries>> {
        // A closed stream would end the consumer, so a task keeps the sender until shutdown.
        Box::pin(async {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                let _keep = tx;
                futures::future::pending::<()>().await;
            });
            Ok(rx)
        })
    }
}
