//! `tail`: follow the log streams of services.

use std::collections::BTreeMap;
use std::time::Duration;

use lymph_core::{Error, ServiceInstance};
use zeromq::SubSocket;
use zeromq::prelude::*;

use crate::commands::{Failure, Run};

/// Follows the log streams of services.
///
/// Prints each record of every instance of the named services (and of instances that appear
/// later) as `[endpoint][identity] [LEVEL] message`, until interrupted or `-n` records.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Service names.
    #[arg(required = true)]
    addresses: Vec<String>,
    /// The lowest level shown: DEBUG, INFO, WARNING, ERROR or CRITICAL.
    #[arg(short = 'l', long, default_value = "INFO")]
    level: String,
    /// Stop after this many records.
    #[arg(short = 'n', long)]
    count: Option<usize>,
}

pub(crate) fn rank(level: &str) -> Option<u8> {
    match level.to_ascii_uppercase().as_str() {
        "DEBUG" => Some(10),
        "INFO" => Some(20),
        "WARNING" | "WARN" => Some(30),
        "ERROR" => Some(40),
        "CRITICAL" => Some(50),
        _ => None,
    }
}

pub(crate) async fn run(run: &mut Run<'_>, args: &Args) -> Result<(), Failure> {
    let threshold =
        rank(&args.level).ok_or_else(|| Failure::BadInput(format!("unknown log level {:?}", args.level)))?;
    follow(run, &args.addresses, threshold, args.count, None, |_| true).await
}

/// Prints the records of the log streams of every instance of `addresses` that are at least
/// `threshold` and that `keep` accepts, until `count` records or `within` has passed.
pub(crate) async fn follow(
    run: &mut Run<'_>,
    addresses: &[String],
    threshold: u8,
    count: Option<usize>,
    within: Option<Duration>,
    keep: impl Fn(&str) -> bool,
) -> Result<(), Failure> {
    let deadline = within.map(|within| tokio::time::Instant::now() + within);
    let client = run.client().await?;
    // A log record is a line; a peer that declares more is not a lymph log stream.
    let mut options = zeromq::SocketOptions::default();
    options.max_message_size(lymph_transports::DEFAULT_MAX_MESSAGE_SIZE);
    let mut socket = SubSocket::with_options(options);
    socket.subscribe("").await.map_err(|e| Failure::Other(format!("cannot subscribe: {e}")))?;
    // Instances by log endpoint.
    let mut followed: BTreeMap<String, ServiceInstance> = BTreeMap::new();
    let outcome = async {
        follow_new(&client, addresses, &mut socket, &mut followed).await?;
        if followed.is_empty() {
            return Err(Failure::Lookup(format!("no instance of {} has a log stream", addresses.join(", "))));
        }
        let mut lookup = tokio::time::interval(Duration::from_secs(2));
        lookup.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut printed = 0;
        loop {
            let message = tokio::select! {
                biased;
                () = until(deadline) => return Ok(()),
                message = socket.recv() => message,
                _ = lookup.tick() => {
                    follow_new(&client, addresses, &mut socket, &mut followed).await?;
                    continue;
                }
            };
            let frames = message.map_err(|e| Failure::Other(format!("the log stream failed: {e}")))?.into_vec();
            let [level, endpoint, text] = frames.as_slice() else { continue };
            let level = String::from_utf8_lossy(level);
            if rank(&level).unwrap_or(0) < threshold {
                continue;
            }
            let text = String::from_utf8_lossy(text);
            if !keep(&text) {
                continue;
            }
            let endpoint = String::from_utf8_lossy(endpoint).into_owned();
            let (service_endpoint, identity) = followed.get(&endpoint).map_or_else(
                || (endpoint.clone(), String::new()),
                |i| (i.endpoint.clone(), i.identity.chars().take(10).collect()),
            );
            writeln!(run.out, "[{service_endpoint}][{identity}] [{level}] {text}")?;
            run.out.flush()?;
            printed += 1;
            if count.is_some_and(|count| printed >= count) {
                return Ok(());
            }
        }
    }
    .await;
    client.stop().await;
    outcome
}

/// Waits until `deadline`, or forever.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Connects to the log streams of instances not followed yet.
async fn follow_new(
    client: &lymph_core::Container,
    addresses: &[String],
    socket: &mut SubSocket,
    followed: &mut BTreeMap<String, ServiceInstance>,
) -> Result<(), Failure> {
    for address in addresses {
        let instances = match client.lookup(address).await {
            Ok(instances) => instances,
            Err(Error::LookupFailure { .. }) => continue,
            Err(error) => return Err(error.into()),
        };
        for instance in instances {
            let Some(endpoint) = instance.log_endpoint.clone() else { continue };
            if followed.contains_key(&endpoint) {
                continue;
            }
            match socket.connect(&endpoint).await {
                Ok(()) => {
                    tracing::debug!(endpoint, "following");
                    followed.insert(endpoint, instance);
                }
                Err(error) => tracing::warn!(%error, endpoint, "cannot connect to a log stream"),
            }
        }
    }
    Ok(())
}
