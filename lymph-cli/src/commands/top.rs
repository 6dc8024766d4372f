//! `top`: a live table of every instance's calls/s, errors, latency and memory, from
//! `lymph.get_metrics` (the job of lymph's `lymph-top` plugin).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use lymph_core::{Container, Error, Value};

use crate::commands::{Failure, Run, seconds};

/// Shows calls/s, errors, latency and memory of every instance.
///
/// Polls `lymph.get_metrics` of every container in the registry each interval and prints a
/// table (redrawn in place on a terminal). Python instances report calls only.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Seconds between two samples.
    #[arg(short = 'i', long, default_value_t = 2.0)]
    interval: f64,
    /// Stop after this many tables.
    #[arg(short = 'n', long)]
    iterations: Option<usize>,
}

/// What one instance reported, summed over subjects (the built-in `lymph.*` left out).
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    calls: f64,
    errors: Option<f64>,
    duration_ms: Option<f64>,
    in_flight: Option<f64>,
    rss: Option<f64>,
}

fn number(value: &Value) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    match value {
        Value::Int(n) => Some(*n as f64),
        Value::UInt(n) => Some(*n as f64),
        Value::F32(x) => Some(f64::from(*x)),
        Value::F64(x) => Some(*x),
        _ => None,
    }
}

fn sample(series: &Value) -> Sample {
    let mut sample = Sample::default();
    let Value::Array(entries) = series else { return sample };
    for entry in entries {
        let Value::Array(parts) = entry else { continue };
        let [name, value, tags] = parts.as_slice() else { continue };
        let (Some(name), Some(value)) = (name.as_str(), number(value)) else { continue };
        let subject = tags.get("subject").and_then(Value::as_str).unwrap_or_default();
        if subject.starts_with("lymph.") {
            continue;
        }
        match name {
            "rpc" => sample.calls += value,
            "rpc.error_count" => *sample.errors.get_or_insert(0.0) += value,
            "rpc.duration_ms" => *sample.duration_ms.get_or_insert(0.0) += value,
            "rpc.in_flight" => sample.in_flight = Some(value),
            "process.memory.rss" => sample.rss = Some(value),
            _ => {}
        }
    }
    sample
}

/// Every container's endpoint with the services it hosts.
async fn containers(client: &Container) -> Result<BTreeMap<String, Vec<String>>, Failure> {
    let mut hosted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for service in client.discover().await? {
        let instances = match client.lookup(&service).await {
            Ok(instances) => instances,
            Err(Error::LookupFailure { .. }) => continue,
            Err(error) => return Err(error.into()),
        };
        for instance in instances {
            let services = hosted.entry(instance.endpoint).or_default();
            if service != "lymph" {
                services.push(service.clone());
            }
        }
    }
    Ok(hosted)
}

async fn poll(client: &Container, endpoints: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Sample> {
    let mut samples = BTreeMap::new();
    for endpoint in endpoints.keys() {
        let proxy = client.proxy(endpoint).namespace("lymph").timeout(Duration::from_secs(2));
        if let Ok(series) = proxy.call::<Value, _>("get_metrics", &Value::Map(Vec::new())).await {
            samples.insert(endpoint.clone(), sample(&series));
        }
    }
    samples
}

pub(crate) async fn run(run: &mut Run<'_>, args: &Args) -> Result<(), Failure> {
    let interval = seconds("--interval", args.interval)?;
    let client = run.client().await?;
    let outcome = async {
        let live = std::io::stdout().is_terminal();
        let mut endpoints = containers(&client).await?;
        let mut before = poll(&client, &endpoints).await;
        let mut at = Instant::now();
        let mut shown = 0;
        while args.iterations.is_none_or(|n| shown < n) {
            tokio::time::sleep(interval).await;
            let now = poll(&client, &endpoints).await;
            let elapsed = at.elapsed().as_secs_f64();
            at = Instant::now();
            if live {
                write!(run.out, "\x1b[2J\x1b[H")?;
            }
            writeln!(
                run.out,
                "{:<28} {:<20} {:>9} {:>7} {:>8} {:>9} {:>8}",
                "ENDPOINT", "SERVICES", "CALLS/S", "ERRORS", "AVG MS", "IN FLIGHT", "RSS MB"
            )?;
            for (endpoint, services) in &endpoints {
                let Some(sample) = now.get(endpoint) else { continue };
                let previous = before.get(endpoint).copied().unwrap_or_default();
                let calls = (sample.calls - previous.calls).max(0.0);
                let dash = || "-".to_owned();
                let errors = sample.errors.map_or_else(dash, |e| format!("{:.0}", e - previous.errors.unwrap_or(0.0)));
                let avg = match (sample.duration_ms, previous.duration_ms) {
                    (Some(total), before) if calls > 0.0 => format!("{:.2}", (total - before.unwrap_or(0.0)) / calls),
                    (Some(_), _) => "0.00".to_owned(),
                    (None, _) => dash(),
                };
                let in_flight = sample.in_flight.map_or_else(dash, |n| format!("{n:.0}"));
                let rss = sample.rss.map_or_else(dash, |b| format!("{:.1}", b / 1_048_576.0));
                writeln!(
                    run.out,
                    "{endpoint:<28} {:<20} {:>9.1} {errors:>7} {avg:>8} {in_flight:>9} {rss:>8}",
                    services.join(","),
                    calls / elapsed,
                )?;
            }
            run.out.flush()?;
            shown += 1;
            before = now;
            // Instances come and go.
            endpoints = containers(&client).await?;
        }
        Ok(())
    }
    .await;
    client.stop().await;
    outcome
}
