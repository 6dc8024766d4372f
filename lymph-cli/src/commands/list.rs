//! `list`: the commands, one line each.

use crate::commands::{Failure, Run, command};

/// Lists the commands.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(run: &mut Run<'_>, _args: &Args) -> Result<(), Failure> {
    let command = command(run.app);
    let width = command.get_subcommands().map(|c| c.get_name().len()).max().unwrap_or(0);
    for sub in command.get_subcommands() {
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        let first = about.lines().next().unwrap_or_default().trim_end_matches('.');
        writeln!(run.out, "{:<width$}  {first}", sub.get_name())?;
    }
    Ok(())
}
