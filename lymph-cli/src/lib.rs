//! lymph's command line and the application type service binaries are built on.
//!
//! An [`Application`] maps the class names of a `.lymph.yml` (`interfaces.<name>.class`) to
//! Rust interfaces and gives its binary lymph's commands:
//!
//! ```text
//! myservice instance -c echo.yml [--ip IP] [--port PORT] [--isolated]   # serve until SIGINT/SIGTERM
//! myservice worker -c echo.yml                                          # run the #[task]s only
//! myservice node -c node.yml                 # run `instances:` × numprocesses, restart the dead
//! myservice discover [<name>] [--instances] [--json] [--full] [--all] [--versions]
//! myservice inspect <address>
//! myservice request <subject> <params|-> [--timeout S] [--address A] [--trace-id T] [--json] [-D] [-N n -C c]
//! myservice emit <type> [<body>] [--trace-id T]
//! myservice subscribe <type>...
//! myservice tail [-l LEVEL] <service>...                                 # follow the log streams
//! myservice trace <trace-id> [-n N] [--for S]                            # one trace id, every instance
//! myservice change-loglevel <service> -n <logger> -l <level> [-p seconds]
//! myservice top [-i seconds] [-n tables]                               # calls/s, errors, latency, memory
//! myservice config | list | help [<command>]
//! ```
//!
//! Every command takes lymph's global options (`-c/--config`, `LYMPH_CONFIG`, `--vars`,
//! `--loglevel`, `--logfile`, `--color/--no-color`). The `lymph` binary of this crate is an
//! application with no interfaces. Python lymph 0.15's configuration files work as they are (see
//! [`config`]); a failure is one line on stderr and an exit status that tells its kind apart
//! ([`Failure`]).
//!
//! A service binary, through the `lymph` facade (feature `app`), with an `Echo` interface made
//! by `#[lymph::interface]`:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     lymph::app::Application::new("myservice").interface("echo:Echo", echo::Echo::default).main()
//! }
//! ```
//!
//! # Layout
//!
//! - `app.rs`: [`Application`]: classes, containers from configurations, the backends.
//! - `config.rs`: [`config`], lymph's configuration files.
//! - `commands/`: one file per command, and `mod.rs` with the global options and exit statuses.
//! - `output.rs`: Python `repr` and lymph JSON output.
//! - `log_stream.rs`: the instance's log records on its ZeroMQ log stream (`log_endpoint`).
//! - `otel.rs`: the OpenTelemetry plugin's configuration (feature `otel`).
//!
//! # Feature flags
//!
//! - `otel`: every [`Application`] knows the plugin class
//!   `lymph.plugins.otel:OpenTelemetryPlugin` (`lymph_transports::otel::OtelPlugin`).

mod app;
mod commands;
pub mod config;
mod log_stream;
#[cfg(feature = "otel")]
mod otel;
pub mod output;
mod shared_sockets;

pub use app::{AppError, Application, InstanceOptions};
pub use commands::Failure;
