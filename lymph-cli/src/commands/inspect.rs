//! `inspect`: the methods of a service, from its `lymph.inspect`.

use std::time::Duration;

use lymph_core::Value;

use crate::commands::{Failure, Run};

/// Shows the RPC methods of a service.
///
/// The methods of a service (a name or an endpoint), with their parameters and help, from its
/// `lymph.inspect`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// A service name, or an instance's endpoint such as `tcp://127.0.0.1:40000`.
    address: String,
}

pub(crate) async fn run(run: &mut Run<'_>, args: &Args) -> Result<(), Failure> {
    let client = run.client().await?;
    let reply: Result<Value, _> = client
        .proxy(&args.address)
        .namespace("lymph")
        .timeout(Duration::from_secs(5))
        .call("inspect", &Value::Map(Vec::new()))
        .await;
    client.stop().await;
    let reply = reply?;
    let methods = match reply.get("methods") {
        Some(Value::Array(methods)) => methods.clone(),
        _ => return Err(Failure::Other(format!("{}: lymph.inspect gave no method list", args.address))),
    };
    let mut methods: Vec<(String, Vec<String>, String)> = methods
        .iter()
        .map(|method| {
            let name = method.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            let params = match method.get("params") {
                Some(Value::Array(params)) => params.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
                _ => Vec::new(),
            };
            let help = method.get("help").and_then(Value::as_str).unwrap_or_default().to_owned();
            (name, params, help)
        })
        .collect();
    methods.sort();
    for (name, params, help) in methods {
        writeln!(run.out, "rpc {name}({})", params.join(", "))?;
        let help = help.trim();
        if !help.is_empty() {
            for line in help.lines() {
                writeln!(run.out, "\t {}", line.trim())?;
            }
        }
        writeln!(run.out)?;
    }
    Ok(())
}
