//! `emit`: publish one event.

use lymph_core::Value;

use crate::commands::{Failure, Run, request::parse_json};

/// Emits an event.
///
/// With a JSON body (`{}` when left out).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// The event type, e.g. `order.created`.
    event_type: String,
    /// The body, as JSON (`{}` when left out).
    body: Option<String>,
    /// The trace id to send (a fresh one when left out).
    #[arg(long)]
    trace_id: Option<String>,
}

pub(crate) async fn run(run: &mut Run<'_>, args: &Args) -> Result<(), Failure> {
    if args.event_type.is_empty() {
        return Err(Failure::BadInput("<event_type> is empty: name the event's type, e.g. `order.created`".to_owned()));
    }
    let body = match &args.body {
        Some(text) => parse_json("<body>", text)?,
        None => Value::Map(Vec::new()),
    };
    let client = run.client().await?;
    let ctx = match &args.trace_id {
        Some(trace_id) => client.context_with_trace(trace_id.clone()),
        None => client.context(),
    };
    let emitted = ctx.emit(&args.event_type, body).await;
    client.stop().await;
    emitted?;
    Ok(())
}
