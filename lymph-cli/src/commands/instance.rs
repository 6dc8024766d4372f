//! `instance` and `worker`: run the configuration's interfaces until SIGINT or SIGTERM.

use lymph_transports::MetricsPublisher;

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
    let mut builder = run.app.container(&config, &args.options).await?.worker(worker);
    // The log stream, registered as `log_endpoint` for `lymph tail`.
    let ip = args
        .options
        .ip
        .clone()
        .or_else(|| config.get("container.ip").and_then(lymph_core::Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let wanted = config.get("container.log_endpoint").and_then(lymph_core::Value::as_str).map(str::to_owned);
    let publisher = lymph_transports::LogPublisher::bind(&ip, wanted.as_deref())
        .await
        .map_err(|e| Failure::Config(format!("container.log_endpoint: {e}")))?;
    crate::log_stream::publish_to(publisher.clone());
    // The metrics stream, registered as `monitoring_endpoint`, as lymph's `MonitorPusher`.
    let interval = config.container()?.monitoring_interval.unwrap_or(MetricsPublisher::DEFAULT_INTERVAL);
    let metrics = MetricsPublisher::bind(&ip, None).await.map_err(|e| Failure::Config(format!("container.ip: {e}")))?;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".to_owned());
    // Listening sockets a `lymph node` shares with this process serve the web interfaces.
    let shared = crate::shared_sockets::inherited();
    if !shared.is_empty() {
        let network = lymph_core::web::TcpWebNetwork::new(ip.clone()).with_shared(shared);
        builder = builder.web_network(std::sync::Arc::new(network));
    }
    builder = builder
        .log_endpoint(publisher.endpoint())
        .monitoring_endpoint(metrics.endpoint())
        .host(ip, hostname.clone(), hostname)
        .log_levels(std::sync::Arc::new(crate::log_stream::Levels));
    let container = builder.start().await.map_err(|e| {
        Failure::from(crate::app::AppError::Start { what: format!("starting {}", config.file()), source: e })
    })?;
    tokio::spawn(metrics.run(container.clone(), interval));
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

pub(crate) async fn shutdown_signal() {
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
