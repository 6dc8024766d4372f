//! Running services from lymph configuration files: the [`Application`] and its command line.
//!
//! An application maps the class names of a `.lymph.yml` (`interfaces.<name>.class`) to Rust
//! interfaces, builds a container with the backends the file names (ZooKeeper or the static
//! registry; RabbitMQ, local or null events; ZeroMQ RPC) and gives a binary lymph's
//! `instance` and `worker` commands:
//!
//! ```text
//! myservice instance -c echo.yml [--ip IP] [--port PORT] [--isolated] [--vars FILE] [--loglevel LEVEL]
//! myservice worker -c echo.yml [same options]      # runs the interfaces' #[task]s only
//! ```
//!
//! ```no_run
//! # mod echo {
//! #     #[derive(Default)]
//! #     pub struct Echo;
//! #     #[lymph::interface(name = "echo")]
//! #     impl Echo {
//! #         #[rpc]
//! #         async fn echo(&self, text: String) -> lymph::Result<String> { Ok(text) }
//! #     }
//! # }
//! fn main() -> std::process::ExitCode {
//!     lymph::app::Application::new("myservice").interface("echo:Echo", echo::Echo::default).main()
//! }
//! ```
//!
//! Python lymph's configs work as they are: the same file starts a Python or a Rust instance of
//! a service, as long as the Rust application knows the class names it mentions.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures::future::BoxFuture;
use lymph_core::event::{Deliveries, Subscription};
use lymph_core::interface::Interface;
use lymph_core::memory::{MemoryEvents, MemoryRegistry};
use lymph_core::{Container, ContainerBuilder, Error, Event, EventSystem};
use lymph_transports::{AmqpConfig, AmqpEvents, ZkConfig, ZkRegistry, ZmqConfig, ZmqRpc};

use crate::config::{Config, ContainerConfig, EventsConfig, RegistryConfig};

type Factory = Arc<dyn Fn() -> Arc<dyn Interface> + Send + Sync>;

/// A service binary: the interfaces it can run, by lymph class name, and its command line.
#[derive(Clone)]
pub struct Application {
    name: String,
    classes: BTreeMap<String, Factory>,
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application").field("name", &self.name).field("classes", &self.classes.keys()).finish()
    }
}

/// The options of `instance`: which configuration, and lymph's overrides.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InstanceOptions {
    /// The configuration file (else `LYMPH_CONFIG`, else `.lymph.yml`).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// A YAML file of values for `$(var.*)` in the configuration (else `LYMPH_VARS`).
    #[arg(long)]
    pub vars: Option<PathBuf>,
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

#[derive(Debug, Parser)]
#[command(about = "Runs lymph services", disable_help_subcommand = true)]
struct Cli {
    /// The log level: DEBUG, INFO, WARNING, ERROR (or a tracing filter).
    #[arg(long, global = true, default_value = "INFO")]
    loglevel: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one service instance: the interfaces of the configuration in one container.
    Instance(InstanceOptions),
    /// Runs a worker: only the interfaces that have tasks, registered as `<name>.worker`,
    /// consuming only their tasks.
    Worker(InstanceOptions),
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
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), classes: BTreeMap::new() }
    }

    /// Makes `class` (a lymph class path such as `echo:Echo`) run the interface `factory` makes;
    /// every instance of the class in a configuration gets a fresh one.
    pub fn interface<I: Interface>(
        mut self,
        class: impl Into<String>,
        factory: impl Fn() -> I + Send + Sync + 'static,
    ) -> Self {
        self.classes.insert(class.into(), Arc::new(move || Arc::new(factory()) as Arc<dyn Interface>));
        self
    }

    /// The class names this application knows, sorted.
    pub fn classes(&self) -> impl Iterator<Item = &str> {
        self.classes.keys().map(String::as_str)
    }

    /// Builds a container from `config`: connects its backends, installs its interfaces.
    ///
    /// # Errors
    ///
    /// A configuration error, an unknown interface class, or a backend that cannot be reached.
    pub async fn container(&self, config: &Config, options: &InstanceOptions) -> Result<ContainerBuilder, AppError> {
        let container = config.container()?;
        let mut interfaces = Vec::new();
        for interface in config.interfaces()? {
            let factory = self.classes.get(&interface.class).ok_or_else(|| AppError::UnknownClass {
                key: interface.key.clone(),
                class: interface.class.clone(),
                known: self.classes.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
            interfaces.push((interface.key, factory(), interface.config));
        }
        let mut builder = backends(&container, options).await?;
        for (key, interface, config) in interfaces {
            builder = builder.interface_arc(key, interface, config);
        }
        Ok(builder.register(!options.isolated))
    }

    /// Runs one instance: starts the container the configuration describes, serves until
    /// SIGINT or SIGTERM, then stops gracefully (deregisters, stops consuming, finishes the
    /// requests in flight).
    ///
    /// # Errors
    ///
    /// As [`container`](Self::container), or when the container fails to start.
    pub async fn run_instance(&self, options: &InstanceOptions) -> Result<(), AppError> {
        self.run(options, false).await
    }

    /// Runs one worker, as [`run_instance`](Self::run_instance) runs an instance: only the
    /// interfaces that have tasks, registered as `<name>.worker`, consuming only their tasks
    /// (lymph's `lymph worker`).
    ///
    /// # Errors
    ///
    /// As [`run_instance`](Self::run_instance).
    pub async fn run_worker(&self, options: &InstanceOptions) -> Result<(), AppError> {
        self.run(options, true).await
    }

    async fn run(&self, options: &InstanceOptions, worker: bool) -> Result<(), AppError> {
        let config = Config::from_cli(options.config.as_deref(), options.vars.as_deref())?;
        let builder = self.container(&config, options).await?.worker(worker);
        let container = builder.start().await.map_err(|source| AppError::Start {
            what: format!("starting the instance of {}", config.file()),
            source,
        })?;
        tracing::info!(
            endpoint = container.endpoint(),
            identity = container.identity(),
            "{} instance started",
            self.name
        );
        shutdown_signal().await;
        tracing::info!("stopping");
        container.stop().await;
        Ok(())
    }

    /// Parses the process's command line and runs it; for `fn main`.
    pub fn main(self) -> ExitCode {
        self.main_from(std::env::args_os())
    }

    /// Parses `args` (the program name first) and runs the command.
    pub fn main_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = match Cli::try_parse_from(args) {
            Ok(cli) => cli,
            Err(error) => {
                let _ = error.print();
                return if error.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
            }
        };
        init_logging(&cli.loglevel);
        let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("{}: cannot start the runtime: {error}", self.name);
                return ExitCode::from(1);
            }
        };
        let result = runtime.block_on(async {
            match &cli.command {
                Command::Instance(options) => self.run_instance(options).await,
                Command::Worker(options) => self.run_worker(options).await,
            }
        });
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{}: {error}", self.name);
                ExitCode::from(1)
            }
        }
    }
}

/// The container's backends as the configuration names them.
async fn backends(container: &ContainerConfig, options: &InstanceOptions) -> Result<ContainerBuilder, AppError> {
    let ip = options.ip.clone().or_else(|| container.ip.clone()).unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = options.port.or(container.port);
    let mut builder = Container::builder().rpc(ZmqRpc::new(ZmqConfig::new().with_ip(ip).with_port(port)));
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

fn init_logging(level: &str) {
    let filter = match level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug".to_owned(),
        "INFO" => "info".to_owned(),
        "WARNING" | "WARN" => "warn".to_owned(),
        "ERROR" | "CRITICAL" => "error".to_owned(),
        _ => level.to_owned(),
    };
    let filter =
        tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
