//! The command line: global options, one module per command, exit statuses.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::app::{AppError, Application};
use crate::config::Config;

mod config;
mod discover;
mod emit;
mod help;
mod inspect;
mod instance;
mod list;
mod loglevel;
mod node;
mod request;
mod subscribe;
mod tail;
mod top;
mod trace;

/// lymph's options of every command.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Global {
    /// The configuration file (else `LYMPH_CONFIG`, else `.lymph.yml`).
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE", help_heading = "Global options")]
    pub(crate) config: Option<PathBuf>,
    /// A YAML file of values for `$(var.*)` in the configuration (else `LYMPH_VARS`).
    #[arg(long, global = true, value_name = "FILE", help_heading = "Global options")]
    pub(crate) vars: Option<PathBuf>,
    /// The log level: DEBUG, INFO, WARNING, ERROR, or a `tracing` filter.
    #[arg(long, global = true, default_value = "WARNING", value_name = "LEVEL", help_heading = "Global options")]
    pub(crate) loglevel: String,
    /// Write the log to this file instead of stderr.
    #[arg(long, global = true, value_name = "FILE", help_heading = "Global options")]
    pub(crate) logfile: Option<PathBuf>,
    /// Colour the log even when it does not go to a terminal.
    #[arg(long, global = true, overrides_with = "no_color", help_heading = "Global options")]
    pub(crate) color: bool,
    /// Never colour the log.
    #[arg(long = "no-color", global = true, help_heading = "Global options")]
    pub(crate) no_color: bool,
}

#[derive(Debug, Parser)]
#[command(
    about = "Runs, calls and inspects lymph services",
    disable_help_subcommand = true,
    version,
    after_help = "`help <command>` shows a command's options; `list` lists the commands."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Instance(instance::Args),
    Worker(instance::WorkerArgs),
    Node(node::Args),
    Discover(discover::Args),
    Inspect(inspect::Args),
    Request(request::Args),
    Emit(emit::Args),
    Subscribe(subscribe::Args),
    Tail(tail::Args),
    Trace(trace::Args),
    Top(top::Args),
    Config(config::Args),
    ChangeLoglevel(loglevel::Args),
    List(list::Args),
    Help(help::Args),
}

/// The clap command of an application, named after it.
pub(crate) fn command(app: &Application) -> clap::Command {
    Cli::command().name(app.name().to_owned()).bin_name(app.name().to_owned())
}

/// Why a command failed, and the exit status that says so.
///
/// | status | meaning |
/// |---|---|
/// | 1 | anything else |
/// | 2 | bad command-line arguments |
/// | 3 | a configuration error |
/// | 4 | ZooKeeper or RabbitMQ cannot be reached |
/// | 5 | no such service, or no instance of it to call |
/// | 6 | the request timed out |
/// | 7 | the service refused the request (NACK) |
/// | 8 | the service raised an error (ERROR reply) |
/// | 9 | bad input, e.g. JSON that does not parse |
#[derive(Debug)]
#[non_exhaustive]
pub enum Failure {
    /// Anything else.
    Other(String),
    /// A configuration error.
    Config(String),
    /// ZooKeeper or RabbitMQ cannot be reached.
    Unreachable(String),
    /// No such service, or no instance of it.
    Lookup(String),
    /// The request timed out.
    Timeout(String),
    /// The service refused the request.
    Nack(String),
    /// The service raised an error.
    Remote(String),
    /// Bad input.
    BadInput(String),
}

impl Failure {
    /// The process exit status.
    pub fn code(&self) -> u8 {
        match self {
            Self::Other(_) => 1,
            Self::Config(_) => 3,
            Self::Unreachable(_) => 4,
            Self::Lookup(_) => 5,
            Self::Timeout(_) => 6,
            Self::Nack(_) => 7,
            Self::Remote(_) => 8,
            Self::BadInput(_) => 9,
        }
    }

    /// The one line that explains it.
    pub fn message(&self) -> &str {
        match self {
            Self::Other(m)
            | Self::Config(m)
            | Self::Unreachable(m)
            | Self::Lookup(m)
            | Self::Timeout(m)
            | Self::Nack(m)
            | Self::Remote(m)
            | Self::BadInput(m) => m,
        }
    }
}

impl From<lymph_core::Error> for Failure {
    fn from(error: lymph_core::Error) -> Self {
        use lymph_core::Error;
        let message = error.to_string();
        match error {
            Error::Timeout { .. } => Self::Timeout(message),
            Error::Nack { .. } => Self::Nack(message),
            Error::RemoteError { .. } => Self::Remote(message),
            Error::LookupFailure { .. } | Error::NotConnected { .. } => Self::Lookup(message),
            Error::Transport(_) => Self::Unreachable(message),
            Error::Config(_) => Self::Config(message),
            _ => Self::Other(message),
        }
    }
}

impl From<AppError> for Failure {
    fn from(error: AppError) -> Self {
        let message = error.to_string();
        match error {
            AppError::Start { source, .. } => match Self::from(source) {
                Self::Other(_) => Self::Other(message),
                Self::Unreachable(_) => Self::Unreachable(message),
                other => other,
            },
            _ => Self::Config(message),
        }
    }
}

impl From<crate::config::ConfigError> for Failure {
    fn from(error: crate::config::ConfigError) -> Self {
        Self::Config(error.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Self::Other(format!("cannot write the output: {error}"))
    }
}

/// The most seconds an option of a command takes (`--timeout`, `--for`, `-i`, `-p`): one day.
pub(crate) const MAX_SECONDS: u64 = 24 * 60 * 60;

/// `value` seconds of the option `option` as a duration: more than 0 and at most
/// [`MAX_SECONDS`], else bad input.
pub(crate) fn seconds(option: &str, value: f64) -> Result<std::time::Duration, Failure> {
    std::time::Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero() && d.as_secs_f64() <= MAX_SECONDS as f64)
        .ok_or_else(|| {
            Failure::BadInput(format!(
                "{option} {value} is not a number of seconds more than 0 and at most {MAX_SECONDS}"
            ))
        })
}

/// What a command runs with.
pub(crate) struct Run<'a> {
    pub(crate) app: &'a Application,
    pub(crate) global: &'a Global,
    pub(crate) out: &'a mut (dyn Write + Send + Sync),
}

impl Run<'_> {
    /// The configuration the global options name.
    pub(crate) fn config(&self) -> Result<Config, Failure> {
        Ok(Config::from_cli(self.global.config.as_deref(), self.global.vars.as_deref())?)
    }

    /// A client container of the configuration.
    pub(crate) async fn client(&self) -> Result<lymph_core::Container, Failure> {
        let config = self.config()?;
        Ok(self.app.client(&config).await?)
    }
}

pub(crate) async fn execute<I, T>(
    app: &Application,
    args: I,
    out: &mut (dyn Write + Send + Sync),
    err: &mut (dyn Write + Send + Sync),
) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let parsed = command(app).try_get_matches_from(args).and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { 2 } else { 0 };
            let rendered = error.render().to_string();
            let _ = if code == 0 { out.write_all(rendered.as_bytes()) } else { err.write_all(rendered.as_bytes()) };
            return code;
        }
    };
    if let Err(error) = init_logging(&cli.global) {
        let _ = writeln!(err, "{}: {error}", app.name());
        return 1;
    }
    let mut run = Run { app, global: &cli.global, out };
    let result = match cli.command {
        Command::Instance(args) => instance::run(&mut run, &args, false).await,
        Command::Worker(args) => instance::run(&mut run, &args.instance, true).await,
        Command::Node(args) => node::run(&mut run, &args).await,
        Command::Discover(args) => discover::run(&mut run, &args).await,
        Command::Inspect(args) => inspect::run(&mut run, &args).await,
        Command::Request(args) => request::run(&mut run, &args).await,
        Command::Emit(args) => emit::run(&mut run, &args).await,
        Command::Subscribe(args) => subscribe::run(&mut run, &args).await,
        Command::Tail(args) => tail::run(&mut run, &args).await,
        Command::Trace(args) => trace::run(&mut run, &args).await,
        Command::Top(args) => top::run(&mut run, &args).await,
        Command::Config(args) => config::run(&mut run, &args),
        Command::ChangeLoglevel(args) => loglevel::run(&mut run, &args).await,
        Command::List(args) => list::run(&mut run, &args),
        Command::Help(args) => help::run(&mut run, &args),
    };
    let _ = run.out.flush();
    match result {
        Ok(()) => 0,
        Err(failure) => {
            let _ = writeln!(err, "{}: {}", app.name(), failure.message());
            failure.code()
        }
    }
}

/// Logs to stderr or `--logfile`, and to the instance's log stream once it has one, at
/// `--loglevel` (lymph's level names or a `tracing` filter).
fn init_logging(global: &Global) -> Result<(), String> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = match global.loglevel.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug".to_owned(),
        "INFO" => "info".to_owned(),
        "WARNING" | "WARN" => "warn".to_owned(),
        "ERROR" | "CRITICAL" => "error".to_owned(),
        _ => global.loglevel.clone(),
    };
    let base = filter;
    let filter =
        tracing_subscriber::EnvFilter::try_new(&base).map_err(|e| format!("--loglevel {}: {e}", global.loglevel))?;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let output = match &global.logfile {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("--logfile {}: {e}", path.display()))?;
            tracing_subscriber::fmt::layer().with_ansi(global.color).with_writer(std::sync::Mutex::new(file)).boxed()
        }
        None => {
            let ansi = !global.no_color && (global.color || std::io::IsTerminal::is_terminal(&std::io::stderr()));
            tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr).boxed()
        }
    };
    // A subscriber set already (a second command in one process, e.g. in tests) is kept.
    let installed =
        tracing_subscriber::registry().with(filter).with(output).with(crate::log_stream::LogStreamLayer).try_init();
    if installed.is_ok() {
        crate::log_stream::set_filter(handle, base);
    }
    Ok(())
}
