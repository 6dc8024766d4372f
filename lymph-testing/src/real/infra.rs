//! The shared servers as tests see them, whoever started them.
//!
//! - [`rabbitmqctl`] runs `rabbitmqctl` on the RabbitMQ node that serves `127.0.0.1:5672`: the
//!   one `LYMPH_TEST_RABBITMQ_NODE` names, else the first that answers of `rabbitmqctl`'s
//!   default node (`rabbit@<short hostname>`, what a distribution's service runs) and
//!   `rabbit@localhost` (what `scripts/infra.sh up` starts). The node found is remembered for
//!   the rest of the process.
//! - The restarts go through `scripts/infra.sh`, which holds the restart logic for the Rust tests
//!   and for people alike: RabbitMQ with `rabbitmqctl stop_app` / `start_app` on any node,
//!   ZooKeeper with the command in `LYMPH_TEST_ZOOKEEPER_RESTART`, or, for a server that
//!   `scripts/infra.sh up` started, by its pid.

use std::process::Command;
use std::sync::{Mutex, PoisonError};

use lymph_core::Error;

/// The variable that names the RabbitMQ node, when it is neither `rabbit@<short hostname>` nor
/// `rabbit@localhost`.
pub(super) const RABBITMQ_NODE_VAR: &str = "LYMPH_TEST_RABBITMQ_NODE";

/// A node to name to `rabbitmqctl`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// No `-n`: `rabbitmqctl`'s default, `rabbit@<short hostname>`.
    Default,
    Named(String),
}

impl Node {
    fn describe(&self, stderr: &str) -> String {
        match self {
            // rabbitmqctl names the node it tried: "... on node 'rabbit@vm'. ..."
            Self::Default => match stderr.split('\'').nth(1).filter(|name| name.contains('@')) {
                Some(name) => format!("{name} (rabbitmqctl's default)"),
                None => "rabbit@<short hostname> (rabbitmqctl's default)".to_owned(),
            },
            Self::Named(name) => name.clone(),
        }
    }
}

/// The node found by the last successful call.
static FOUND: Mutex<Option<Node>> = Mutex::new(None);
/// Held while looking for the node, so that parallel tests look once.
static SEARCH: Mutex<()> = Mutex::new(());

enum Outcome {
    /// The node ran the command: its stdout, or its failure.
    Ran(Result<String, String>),
    /// `rabbitmqctl` could not reach the node (not running, another name, another cookie).
    Unreachable(String),
}

fn run(node: &Node, args: &[&str]) -> Result<Outcome, Error> {
    let mut command = Command::new("rabbitmqctl");
    // Should this start epmd (none runs), on loopback only, as `scripts/infra.sh` does; and the
    // CLI's own Erlang distribution on loopback too.
    command
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_CTL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}")
        .arg("-q");
    if let Node::Named(name) = node {
        command.args(["-n", name]);
    }
    let output = command
        .args(args)
        .output()
        .map_err(|e| Error::Config(format!("cannot run rabbitmqctl (is rabbitmq-server installed?): {e}")))?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if output.status.success() {
        Ok(Outcome::Ran(Ok(String::from_utf8_lossy(&output.stdout).into_owned())))
    } else if stderr.contains("unable to perform an operation on node") || stderr.contains("nodedown") {
        Ok(Outcome::Unreachable(stderr))
    } else {
        Ok(Outcome::Ran(Err(stderr)))
    }
}

fn candidates() -> Vec<Node> {
    match std::env::var(RABBITMQ_NODE_VAR) {
        Ok(name) if !name.is_empty() => vec![Node::Named(name)],
        _ => vec![Node::Default, Node::Named("rabbit@localhost".to_owned())],
    }
}

/// What `rabbitmqctl` said about one unreachable node: its first line and the diagnostics.
fn diagnostics(stderr: &str) -> String {
    let mut lines = stderr.lines().take(1).map(str::to_owned).collect::<Vec<_>>();
    lines.extend(stderr.lines().filter(|l| l.starts_with("  * ")).map(str::to_owned));
    lines.join("\n")
}

fn unreachable(tried: &[(Node, String)]) -> Error {
    let names: Vec<String> = tried.iter().map(|(node, stderr)| node.describe(stderr)).collect();
    let last = tried.last().map(|(_, stderr)| diagnostics(stderr)).unwrap_or_default();
    Error::Config(format!(
        "rabbitmqctl reaches no RabbitMQ node; tried {}. Is RabbitMQ running (`scripts/infra.sh up`)? \
         rabbitmqctl must read the server's Erlang cookie: run as root, it uses root's \
         ~/.erlang.cookie unless HOME is the rabbitmq user's home (Debian's rabbitmqctl switches to \
         that user itself). If the node has another name, set {RABBITMQ_NODE_VAR}=<name@host>. \
         rabbitmqctl said:\n{last}",
        names.join(", "),
    ))
}

fn ran(args: &[&str], result: Result<String, String>) -> Result<String, Error> {
    result.map_err(|stderr| Error::Config(format!("rabbitmqctl {} failed: {stderr}", args.join(" "))))
}

/// Runs `rabbitmqctl -q <args>` on the RabbitMQ node of the suite (see the [module](self)) and
/// returns its standard output.
///
/// # Errors
///
/// When `rabbitmqctl` is missing, when it reaches no node (the error names the nodes tried, the
/// Erlang cookie and [`RABBITMQ_NODE_VAR`]), or when the command fails.
pub(crate) fn rabbitmqctl(args: &[&str]) -> Result<String, Error> {
    let known = FOUND.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if let Some(node) = &known {
        match run(node, args)? {
            Outcome::Ran(result) => return ran(args, result),
            // The node went away (a restart under another name?): look again.
            Outcome::Unreachable(_) => {}
        }
    }
    let _search = SEARCH.lock().unwrap_or_else(PoisonError::into_inner);
    let found = FOUND.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if found.is_some() && found != known {
        // Another thread found it meanwhile.
        if let Some(node) = &found
            && let Outcome::Ran(result) = run(node, args)?
        {
            return ran(args, result);
        }
    }
    let mut tried = Vec::new();
    for node in candidates() {
        match run(&node, args)? {
            Outcome::Ran(result) => {
                *FOUND.lock().unwrap_or_else(PoisonError::into_inner) = Some(node);
                return ran(args, result);
            }
            Outcome::Unreachable(stderr) => tried.push((node, stderr)),
        }
    }
    *FOUND.lock().unwrap_or_else(PoisonError::into_inner) = None;
    Err(unreachable(&tried))
}

/// Runs `scripts/infra.sh <args>`; its log goes to the test's output, or into the error.
fn script(args: &[&str]) -> Result<(), Error> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/infra.sh");
    let output = Command::new("bash")
        .arg(path)
        .args(args)
        .output()
        .map_err(|e| Error::Config(format!("cannot run scripts/infra.sh: {e}")))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        eprint!("{stderr}");
        Ok(())
    } else {
        Err(Error::Config(format!(
            "scripts/infra.sh {} failed ({}):\n{}",
            args.join(" "),
            output.status,
            stderr.trim()
        )))
    }
}

/// Stops the RabbitMQ broker (`rabbitmqctl stop_app`, on any node) and returns once
/// `127.0.0.1:5672` refuses connections. [`start_rabbitmq`] starts it again.
///
/// # Errors
///
/// When no node can be reached or the broker does not stop.
pub(super) fn stop_rabbitmq() -> Result<(), Error> {
    script(&["stop", "rabbitmq"])
}

/// Starts the RabbitMQ broker again (`rabbitmqctl start_app`) and returns once it has booted and
/// `127.0.0.1:5672` accepts connections; does nothing when it already listens.
///
/// # Errors
///
/// When it does not come back.
pub(super) fn start_rabbitmq() -> Result<(), Error> {
    script(&["start", "rabbitmq"])
}

/// [`stop_rabbitmq`], then [`start_rabbitmq`].
///
/// # Errors
///
/// As theirs.
pub(crate) fn restart_rabbitmq() -> Result<(), Error> {
    script(&["restart", "rabbitmq"])
}

/// Restarts ZooKeeper: with the command in `LYMPH_TEST_ZOOKEEPER_RESTART` if set, else the server
/// `scripts/infra.sh up` started; returns once `127.0.0.1:2181` accepts connections again.
///
/// # Errors
///
/// When the server was started some other way and `LYMPH_TEST_ZOOKEEPER_RESTART` is not set (the
/// error says how to set it; a server the script did not start is never killed), or when it does
/// not come back.
pub(crate) fn restart_zookeeper() -> Result<(), Error> {
    script(&["restart", "zookeeper"])
}
