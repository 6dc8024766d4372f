//! `scenarios`: run lymph-rs scenarios in the deterministic simulator and print what happened.
//!
//! ```text
//! scenarios list
//! scenarios run talk [--seed N] [--heartbeats] [--by-trace]
//! ```

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use lymph::testing::{RenderOptions, Runner};

const USAGE: &str = "usage:
  scenarios list
  scenarios run <scenario> [--seed N] [--faults none|chaos] [--heartbeats] [--by-trace]

Runs a scenario in the deterministic simulator and prints its timeline (simulated time, host,
message kind, subject, trace id) and a one-line verdict. The same seed prints the same output.
  --seed N       the simulation seed (default 0)
  --faults F     food only: `chaos` draws a fault schedule from the seed (default none)
  --heartbeats   include lymph.ping heartbeat traffic in the timeline
  --by-trace     group the timeline by trace id";

const SCENARIOS: &[(&str, &str)] = &[
    ("talk", "echo x2, listener and a client: upper, fail, an unknown method, events with trace ids"),
    ("food", "gateway, order x2, restaurant x2, delivery, notification: 8 orders, invariants checked"),
];

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("scenarios: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> anyhow::Result<bool> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        Some("list") => {
            for (name, about) in SCENARIOS {
                println!("{name:<8} {about}");
            }
            Ok(true)
        }
        Some("run") => {
            let name = args.next().context("run needs a scenario name (see `scenarios list`)")?;
            let mut seed = 0;
            let mut options = RenderOptions::default();
            let mut chaos = false;
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "--seed" => {
                        let value = args.next().context("--seed needs a value")?;
                        seed = value.parse().with_context(|| format!("--seed {value:?} is not a number"))?;
                    }
                    "--faults" => match args.next().as_deref() {
                        Some("chaos") => chaos = true,
                        Some("none") => chaos = false,
                        other => bail!("--faults takes `none` or `chaos`, not {:?}", other.unwrap_or("nothing")),
                    },
                    "--heartbeats" => options.heartbeats = true,
                    "--by-trace" => options.group_by_trace = true,
                    other => bail!("unknown option {other:?}\n\n{USAGE}"),
                }
            }
            match name.as_str() {
                "talk" => run_talk(seed, &options),
                "food" => run_food(seed, chaos, &options),
                other => bail!("no scenario named {other:?} (see `scenarios list`)"),
            }
        }
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(true)
        }
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
        None => bail!("{USAGE}"),
    }
}

fn run_talk(seed: u64, options: &RenderOptions) -> anyhow::Result<bool> {
    let summary = std::rc::Rc::new(std::cell::RefCell::new(None));
    let result = summary.clone();
    let runner = Runner::new("scenarios::talk", "scenarios", "scenarios");
    let report = runner.run_seed(seed, &move |world| {
        let result = result.clone();
        async move {
            let summary = scenarios::talk::run(&world, 5).await?;
            *result.borrow_mut() = Some(summary);
            Ok::<(), Box<dyn std::error::Error>>(())
        }
    });
    println!("talk scenario, seed {seed}\n");
    print!("{}", report.timeline.render(options));
    println!();
    let summary = summary.borrow_mut().take();
    match (&report.outcome, summary) {
        (Ok(()), Some(summary)) => {
            println!("verdict: {summary}");
            Ok(summary.passed())
        }
        (Err(error), _) => {
            println!("verdict: FAIL: {error}");
            Ok(false)
        }
        (Ok(()), None) => bail!("the scenario finished without a summary"),
    }
}

fn run_food(seed: u64, chaos: bool, options: &RenderOptions) -> anyhow::Result<bool> {
    use lymph::testing::schedule::{Schedule, generate};

    let schedule = if chaos {
        let strategy =
            Schedule::strategy(&scenarios::food::HOSTS, &["broker", "registry"], std::time::Duration::from_secs(4), 4);
        generate(&strategy, seed)
    } else {
        Schedule::new()
    };
    let summary = std::rc::Rc::new(std::cell::RefCell::new(None));
    let result = summary.clone();
    let runner = Runner::new("scenarios::food", "scenarios", "scenarios").tick(std::time::Duration::from_millis(10));
    let run_schedule = schedule.clone();
    let report = runner.run_seed(seed, &move |world| {
        let (result, schedule) = (result.clone(), run_schedule.clone());
        async move {
            let summary = scenarios::food::run(&world, 8, &schedule).await?;
            *result.borrow_mut() = Some(summary);
            Ok::<(), Box<dyn std::error::Error>>(())
        }
    });
    println!("food scenario, seed {seed}, faults: {schedule:?}\n");
    print!("{}", report.timeline.render(options));
    println!();
    let summary = summary.borrow_mut().take();
    match (&report.outcome, summary) {
        (Ok(()), Some(summary)) => {
            println!("verdict: {summary}");
            Ok(summary.verdict.is_ok())
        }
        (Err(error), _) => {
            println!("verdict: FAIL: {error}");
            Ok(false)
        }
        (Ok(()), None) => bail!("the scenario finished without a summary"),
    }
}
