//! `config`: the effective configuration, interpolated and merged, as YAML.

use crate::commands::{Failure, Run};

/// Prints the effective configuration.
///
/// As YAML, with variables interpolated and the node configuration merged.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(run: &mut Run<'_>, _args: &Args) -> Result<(), Failure> {
    let config = run.config()?;
    let yaml = serde_norway::to_string(config.root())
        .map_err(|e| Failure::Other(format!("cannot print the configuration: {e}")))?;
    write!(run.out, "{yaml}")?;
    Ok(())
}
