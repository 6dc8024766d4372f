//! `change-loglevel`: change a logger's level on every instance of a service for a while.

use lymph_core::Value;

use crate::commands::{Failure, Run, seconds};

/// Changes a logger's level on every instance of a service.
///
/// Calls `lymph.change_loglevel` on each instance: the logger (a Python logger name, or a
/// `tracing` target of a Rust service) logs at the level for the period, then as before.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// The service name.
    address: String,
    /// The logger name or `tracing` target, e.g. `lymph` or `scenarios::echo`.
    #[arg(short = 'n', long)]
    name: String,
    /// DEBUG, INFO, WARNING, ERROR or CRITICAL.
    #[arg(short = 'l', long)]
    level: String,
    /// Seconds until the level goes back.
    #[arg(short = 'p', long, default_value_t = 60.0)]
    period: f64,
}

pub(crate) async fn run(run: &mut Run<'_>, args: &Args) -> Result<(), Failure> {
    seconds("--period", args.period)?;
    let client = run.client().await?;
    let outcome = async {
        let instances = client.lookup(&args.address).await?;
        if instances.is_empty() {
            return Err(Failure::Lookup(format!("service {:?} has no instances", args.address)));
        }
        let body = Value::map([
            ("qualname", Value::from(args.name.as_str())),
            ("loglevel", Value::from(args.level.as_str())),
            ("period", Value::F64(args.period)),
        ]);
        let mut failure = None;
        for instance in instances {
            let proxy = client.proxy(&instance.endpoint).namespace("lymph");
            match proxy.call::<Value, _>("change_loglevel", &body).await {
                Ok(_) => {
                    writeln!(run.out, "{}: {} at {} for {} s", instance.endpoint, args.name, args.level, args.period)?
                }
                Err(error) => {
                    writeln!(run.out, "{}: {error}", instance.endpoint)?;
                    failure = Some(Failure::from(error));
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }
    .await;
    client.stop().await;
    outcome
}
