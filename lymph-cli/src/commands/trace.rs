//! `trace`: the log records of one trace id, from every instance, as they happen.

use crate::commands::{Failure, Run, seconds, tail};

/// Follows one trace id through the cluster.
///
/// Prints the log records carrying the trace id from the log streams of every instance in the
/// registry (every container registers the `lymph` service), as they arrive, until
/// interrupted, `-n` records or `--for` seconds.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// The trace id, 32 hex digits.
    trace_id: String,
    /// The lowest level shown: DEBUG, INFO, WARNING, ERROR or CRITICAL.
    #[arg(short = 'l', long, default_value = "DEBUG")]
    level: String,
    /// Stop after this many records.
    #[arg(short = 'n', long)]
    count: Option<usize>,
    /// Stop after this many seconds.
    #[arg(long = "for", value_name = "SECONDS")]
    seconds: Option<f64>,
}

pub(crate) async fn run(run: &mut Run<'_>, args: &Args) -> Result<(), Failure> {
    let threshold =
        tail::rank(&args.level).ok_or_else(|| Failure::BadInput(format!("unknown log level {:?}", args.level)))?;
    let within = args.seconds.map(|value| seconds("--for", value)).transpose()?;
    let needle = format!("trace_id=\"{}\"", args.trace_id);
    tail::follow(run, &["lymph".to_owned()], threshold, args.count, within, |text| text.contains(&needle)).await
}
