//! `discover`: the services in the registry and their instances.

use std::collections::BTreeMap;

use lymph_core::{Error, ServiceInstance, Value};

use crate::commands::{Failure, Run};
use crate::output::python_repr;

/// Shows the services in the registry.
///
/// With their instance counts; `--instances` lists each instance.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Only this service (implies --instances).
    name: Option<String>,
    /// Show each instance: identity, version and endpoint.
    #[arg(long)]
    instances: bool,
    /// Print the instances as JSON, `{service: [instance, ...]}`.
    #[arg(long)]
    json: bool,
    /// Show every field each instance published.
    #[arg(long)]
    full: bool,
    /// Also show services that have no instances now.
    #[arg(long)]
    all: bool,
    /// Show the instances of each version separately.
    #[arg(long)]
    versions: bool,
}

pub(crate) async fn run(run: &mut Run<'_>, args: &Args) -> Result<(), Failure> {
    let client = run.client().await?;
    let names = match &args.name {
        Some(name) => vec![name.clone()],
        None => client.discover().await?,
    };
    let mut services: BTreeMap<String, Vec<ServiceInstance>> = BTreeMap::new();
    for name in names {
        let instances = match client.lookup(&name).await {
            Ok(instances) => instances,
            Err(Error::LookupFailure { .. }) if args.name.is_none() => Vec::new(),
            Err(error) => {
                client.stop().await;
                return Err(error.into());
            }
        };
        if instances.is_empty() && !args.all {
            continue;
        }
        services.insert(name, instances);
    }
    client.stop().await;
    if args.json {
        let json = lymph_core::codec::json_dumps(&services).map_err(|e| Failure::Other(e.to_string()))?;
        writeln!(run.out, "{json}")?;
        return Ok(());
    }
    if services.is_empty() {
        writeln!(run.out, "No registered services found")?;
        return Ok(());
    }
    let show_instances = args.instances || args.name.is_some();
    for (name, instances) in &services {
        if args.versions {
            let mut by_version: BTreeMap<String, Vec<&ServiceInstance>> = BTreeMap::new();
            for instance in instances {
                let version = instance.version.clone().unwrap_or_else(|| "None".to_owned());
                by_version.entry(version).or_default().push(instance);
            }
            for (version, instances) in by_version {
                print_service(run, &format!("{name}@{version}"), &instances, show_instances, args.full)?;
            }
        } else {
            let instances: Vec<&ServiceInstance> = instances.iter().collect();
            print_service(run, name, &instances, show_instances, args.full)?;
        }
    }
    Ok(())
}

fn print_service(
    run: &mut Run<'_>,
    label: &str,
    instances: &[&ServiceInstance],
    show_instances: bool,
    full: bool,
) -> Result<(), Failure> {
    let mut identities: Vec<&str> = instances.iter().map(|i| i.identity.as_str()).collect();
    identities.sort_unstable();
    identities.dedup();
    writeln!(run.out, "{label} [{}]", identities.len())?;
    if !show_instances {
        return Ok(());
    }
    let mut sorted = instances.to_vec();
    sorted.sort_by(|a, b| a.identity.cmp(&b.identity));
    for instance in sorted {
        let short: String = instance.identity.chars().take(10).collect();
        let version = instance.version.as_deref().unwrap_or("\u{2013}");
        writeln!(run.out, "[{short}]  {version:<11}  {}", instance.endpoint)?;
        if full {
            let fields = lymph_core::value::to_value(instance).map_err(|e| Failure::Other(e.to_string()))?;
            let Value::Map(mut entries) = fields else { continue };
            entries.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
            for (key, value) in entries {
                let key = key.as_str().unwrap_or_default().to_owned();
                if key != "endpoint" {
                    writeln!(run.out, "   {key}: {}", python_repr(&value))?;
                }
            }
        }
    }
    writeln!(run.out)?;
    Ok(())
}
