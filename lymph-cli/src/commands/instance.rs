//! `instance` and `worker`: run the configuration's interfaces until SIGINT or SIGTERM.

use crate::app::InstanceOptions;
use crate::commands::{Failure, Run};

/// Runs one service instance.
///
/// The interfaces of the configuration run in one container until SIGINT or SIGTERM; then it
/// deregisters, stops consuming and finishes the requests in flight.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) options: InstanceOptions,
}

/// Runs a worker: the interfaces' tasks only.
///
/// Only the interfaces that have tasks run, registered as `<name>.worker`, and they consume
/// only their tasks.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    pub(crate) instance: Args,
}

pub(crate) async fn run(run: &mut Run<'_>, args: &Args, worker: bool) -> Result<(), Failure> {
    let config = run.config()?;
    let builder = run.app.container(&config, &args.options).await?.worker(worker);
    let container = builder.start().await.map_err(|e| {
        Failure::from(crate::app::AppError::Start { what: format!("starting {}", config.file()), source: e })
    })?;
    tracing::info!(
        endpoint = container.endpoint(),
        identity = container.identity(),
        worker,
        "{} started",
        run.app.name()
    );
    shutdown_signal().await;
    tracing::info!("stopping");
    container.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    biased;
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
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
