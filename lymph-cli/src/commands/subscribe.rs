//! `subscribe`: print the events of some types as they arrive.

use lymph_core::event::Subscription;

use crate::commands::{Failure, Run};
use crate::output::python_repr;

/// Prints events as they arrive.
///
/// Every event of the given types (`*` and `#` wildcards), as `type: body`, until interrupted
/// or `-n` events.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Event type patterns.
    #[arg(required = true)]
    event_types: Vec<String>,
    /// Stop after this many events.
    #[arg(short = 'n', long)]
    count: Option<usize>,
}

pub(crate) async fn run(run: &mut Run<'_>, args: &Args) -> Result<(), Failure> {
    let client = run.client().await?;
    // A queue of its own, deleted when this subscriber goes (lymph's shared `_client-on_event`
    // queue made concurrent subscribers steal each other's events).
    let subscription = Subscription {
        queue: "_client-on_event".to_owned(),
        patterns: args.event_types.clone(),
        broadcast: true,
        once: false,
    };
    let mut deliveries = client.subscribe(subscription).await?;
    let mut seen = 0;
    while let Some(delivery) = deliveries.recv().await {
        writeln!(run.out, "{}: {}", delivery.event.event_type, python_repr(&delivery.event.body))?;
        run.out.flush()?;
        let _ = delivery.acker.ack().await;
        seen += 1;
        if args.count.is_some_and(|count| seen >= count) {
            break;
        }
    }
    client.stop().await;
    Ok(())
}
