//! `help [<command>]`: the usage of the program or of one command.

use crate::commands::{Failure, Run, command};

/// Shows the usage of a command.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// The command to explain.
    command: Option<String>,
}

pub(crate) fn run(run: &mut Run<'_>, args: &Args) -> Result<(), Failure> {
    let mut command = command(run.app);
    // Builds the tree, so the global options show in every command's help.
    command.build();
    let help = match &args.command {
        None => command.render_long_help(),
        Some(name) => {
            let Some(sub) = command.find_subcommand_mut(name) else {
                return Err(Failure::BadInput(format!("no command named {name:?}; `list` lists them")));
            };
            let mut sub = sub.clone().bin_name(format!("{} {name}", run.app.name()));
            sub.render_long_help()
        }
    };
    write!(run.out, "{help}")?;
    Ok(())
}
