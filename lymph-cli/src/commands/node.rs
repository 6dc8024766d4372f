//! `node`: lymph's process manager for a development machine.

use std::time::Duration;

use lymph_core::Value;
use tokio::process::{Child, Command};

use crate::commands::{Failure, Run};

/// The most processes `numprocesses` starts of one instance.
const MAX_PROCESSES: i64 = 1024;

/// Runs the configuration's `instances`, restarting those that exit.
///
/// Starts `instances.<name>.command` (split on spaces, no shell) `numprocesses` times, once by
/// default, with `LYMPH_NODE`, `LYMPH_NODE_IP` and `LYMPH_SERVICE_NAME` set. Every second it
/// starts the children that exited again. On SIGINT or SIGTERM it passes the signal on, waits
/// up to 10 s for the children, then kills what is left. The listening sockets of `sockets:` (a
/// list or map of `{host, port}`) are bound by the node and shared with every child through
/// `LYMPH_SHARED_SOCKET_FDS`, so several instances of a web service serve one port.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {}

/// One managed child process.
struct Managed {
    service: String,
    argv: Vec<String>,
    child: Option<Child>,
    restarts: u32,
}

impl Managed {
    fn start(&mut self, ip: &str, sockets: &str) -> Result<(), Failure> {
        let child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .env("LYMPH_NODE", "1")
            .env("LYMPH_NODE_IP", ip)
            .env("LYMPH_SERVICE_NAME", &self.service)
            .env(crate::shared_sockets::ENV, sockets)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Failure::Config(format!("instances.{}.command {:?}: {e}", self.service, self.argv.join(" ")))
            })?;
        tracing::info!(service = self.service, pid = child.id(), restarts = self.restarts, "started");
        self.child = Some(child);
        Ok(())
    }
}

pub(crate) async fn run(run: &mut Run<'_>, _args: &Args) -> Result<(), Failure> {
    let config = run.config()?;
    let Some(Value::Map(instances)) = config.get("instances").cloned() else {
        return Err(Failure::Config(format!("{}: instances: has no services to run", config.file())));
    };
    let ip = config.get("container.ip").and_then(Value::as_str).unwrap_or("127.0.0.1").to_owned();
    let sockets = crate::shared_sockets::bind(config.get("sockets").unwrap_or(&Value::Nil), &ip)
        .map_err(|e| Failure::Config(format!("{}: {e}", config.file())))?;
    let mut managed = Vec::new();
    for (name, settings) in instances {
        let name = name.as_str().unwrap_or_default().to_owned();
        let command = settings.get("command").and_then(Value::as_str).unwrap_or_default();
        let argv: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
        if argv.is_empty() {
            return Err(Failure::Config(format!("{}: instances.{name}.command is missing", config.file())));
        }
        let count = match settings.get("numprocesses") {
            None | Some(Value::Nil) => 1,
            Some(value) => value.as_i64().filter(|n| (1..=MAX_PROCESSES).contains(n)).ok_or_else(|| {
                Failure::Config(format!(
                    "{}: instances.{name}.numprocesses must be an integer from 1 to {MAX_PROCESSES}",
                    config.file()
                ))
            })?,
        };
        for _ in 0..count {
            managed.push(Managed { service: name.clone(), argv: argv.clone(), child: None, restarts: 0 });
        }
    }
    for process in &mut managed {
        process.start(&ip, &sockets.env)?;
    }
    let mut check = tokio::time::interval(Duration::from_secs(1));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let signal = super::instance::shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            biased;
            () = &mut signal => break,
            _ = check.tick() => {
                for process in &mut managed {
                    let exited = match process.child.as_mut().map(Child::try_wait) {
                        Some(Ok(Some(status))) => Some(status.to_string()),
                        Some(Err(error)) => Some(error.to_string()),
                        Some(Ok(None)) => None,
                        None => Some("not running".to_owned()),
                    };
                    if let Some(status) = exited {
                        tracing::warn!(service = process.service, %status, "exited; starting it again");
                        process.restarts += 1;
                        if let Err(failure) = process.start(&ip, &sockets.env) {
                            tracing::error!(service = process.service, error = failure.message(), "cannot start");
                            process.child = None;
                        }
                    }
                }
            }
        }
    }
    stop_all(&mut managed).await;
    Ok(())
}

/// Passes SIGTERM on to every child, waits up to 10 s, then kills the rest.
async fn stop_all(managed: &mut [Managed]) {
    for process in managed.iter() {
        if let Some(pid) = process.child.as_ref().and_then(Child::id) {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for process in managed.iter_mut() {
        if let Some(child) = process.child.as_mut() {
            match tokio::time::timeout_at(deadline, child.wait()).await {
                Ok(_) => tracing::info!(service = process.service, "stopped"),
                Err(_) => {
                    let _ = child.kill().await;
                    tracing::warn!(service = process.service, "killed after 10 s");
                }
            }
        }
    }
}
