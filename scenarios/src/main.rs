//! `scenarios`: run lymph-rs scenarios in the deterministic simulator and print what happened.
//!
//! ```text
//! scenarios list
//! scenarios run talk [--seed N] [--heartbeats] [--by-trace]
//! scenarios parity food [--schedule N] [--seed N] [--timeline]
//! scenarios instance -c echo.yml [--ip IP] [--port PORT] [--isolated]
//! scenarios hostile --endpoint tcp://127.0.0.1:PORT [--pid PID] [--rounds N] [--seconds S]
//! ```

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use lymph::testing::{RenderOptions, Runner};

const USAGE: &str = "usage:
  scenarios list
  scenarios run <scenario> [--seed N] [--faults none|chaos] [--heartbeats] [--by-trace]
  scenarios parity <scenario> [--schedule N] [--seed N] [--timeline]
  scenarios instance -c <config> [--ip IP] [--port PORT] [--isolated] [--vars FILE] [--loglevel LEVEL]
  scenarios hostile --endpoint tcp://127.0.0.1:PORT [--pid PID] [--rounds N] [--seconds S] [--amqp URL]
                    [--event TYPE]... [--seed N]

`instance` runs the classes echo:Echo and listener:Listener as a lymph service, from a
.lymph.yml written for Python lymph 0.15 (ZooKeeper, RabbitMQ, ZeroMQ); see `instance --help`.
lymph's other commands work too: worker, node, discover, inspect, request, emit, subscribe,
tail, trace, config, help <command>.

`run` runs a scenario in the deterministic simulator and prints its timeline (simulated time, host,
message kind, subject, trace id), the timeline checkers' findings and a one-line verdict (the
scenario's own invariants, which set the exit status). The same seed prints the same output.
  --seed N       the simulation seed (default 0)
  --faults F     food only: `chaos` draws a fault schedule from the seed (default none)
  --heartbeats   include lymph.ping heartbeat traffic in the timeline
  --by-trace     group the timeline by trace id

`parity` runs a scenario under its fixed fault schedules (a crash, a cut from the broker, a
session expiry, a broker restart) in the simulator and, built with `--features real-infra`, on
the real ZeroMQ, RabbitMQ and ZooKeeper of `scripts/infra.sh up`, and prints both outcomes and
their differences; the exit status says whether the verdicts agree.
  --schedule N   only the N-th schedule, from 0 (default all)
  --seed N       the simulation seed (default 1)
  --timeline     print the simulated run's timeline too

`hostile` attacks a running instance's RPC endpoint on loopback (raw ZMTP: 1 TiB frame headers,
oversized and never-ending messages, random bytes, broken handshakes; lymph messages with wrong
frames, msgpack, types, UTF-8, nesting, made-up subjects and unreachable sources; peers that never
read their replies; with --amqp, malformed events), probes `echo.upper` between families and
prints what it sent, the probes' latencies, the metrics series and the memory of --pid. The exit
status is 1 when a probe went unanswered (or took over 2 s), the process exited, or made-up names
added metrics series.
  --endpoint E   the instance's RPC endpoint, tcp://127.0.0.1:PORT (required)
  --pid PID      its process id, to read its memory (VmRSS) before, at the peak and after
  --rounds N     how many times every family runs (default 3)
  --seconds S    the time budget: no family starts after it (default 60)
  --amqp URL     the broker it consumes from, with its virtual host (amqp://guest:guest@127.0.0.1:5672/%2f)
  --event TYPE   an event type it subscribes to (default uppercase_transform_finished and
                 interop.hostile, the listener's); repeat for more
  --seed N       the seed of the random inputs (default 0)";

const SCENARIOS: &[(&str, &str)] = &[
    ("talk", "echo x2, listener and a client: upper, fail, an unknown method, events with trace ids"),
    ("food", "gateway, order x2, restaurant x2, delivery, notification: 8 orders, invariants checked"),
];

fn main() -> ExitCode {
    // lymph's commands, from the application; `list` and `run` are this binary's own.
    let app = scenarios::application();
    if std::env::args().nth(1).is_some_and(|command| command != "list" && app.has_command(&command)) {
        return app.main();
    }
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
        Some("parity") => {
            let name = args.next().context("parity needs a scenario name (see `scenarios list`)")?;
            let (mut only, mut seed, mut timeline) = (None, 1, false);
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "--schedule" => {
                        let value = args.next().context("--schedule needs a value")?;
                        only = Some(
                            value.parse::<usize>().with_context(|| format!("--schedule {value:?} is not a number"))?,
                        );
                    }
                    "--seed" => {
                        let value = args.next().context("--seed needs a value")?;
                        seed = value.parse().with_context(|| format!("--seed {value:?} is not a number"))?;
                    }
                    "--timeline" => timeline = true,
                    other => bail!("unknown option {other:?}\n\n{USAGE}"),
                }
            }
            run_parity(&name, only, seed, timeline)
        }
        Some("hostile") => run_hostile(args.collect()),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(true)
        }
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
        None => bail!("{USAGE}"),
    }
}

/// `scenarios hostile`: parses its options, runs the suite and prints the report; returns whether
/// the guarantee held.
fn run_hostile(args: Vec<String>) -> anyhow::Result<bool> {
    use scenarios::hostile;

    fn number<T: std::str::FromStr>(option: &str, value: Option<String>) -> anyhow::Result<T> {
        let value = value.with_context(|| format!("{option} needs a value"))?;
        value.parse().map_err(|_| anyhow::anyhow!("{option} {value:?} is not a number"))
    }
    let mut args = args.into_iter();
    let (mut endpoint, mut pid, mut amqp, mut events) = (None, None, None, Vec::new());
    let mut budget = hostile::Budget { rounds: 3, time: std::time::Duration::from_secs(60), ..Default::default() };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--endpoint" => endpoint = Some(args.next().context("--endpoint needs a value")?),
            "--pid" => pid = Some(number::<u32>("--pid", args.next())?),
            "--rounds" => budget.rounds = number("--rounds", args.next())?,
            "--seconds" => {
                let seconds: f64 = number("--seconds", args.next())?;
                if !(seconds > 0.0 && seconds <= 86_400.0) {
                    bail!("--seconds {seconds} is not more than 0 and at most 86400");
                }
                budget.time = std::time::Duration::from_secs_f64(seconds);
            }
            "--amqp" => amqp = Some(args.next().context("--amqp needs a URL")?),
            "--event" => events.push(args.next().context("--event needs an event type")?),
            "--seed" => budget.seed = number("--seed", args.next())?,
            other => bail!("unknown option {other:?}\n\n{USAGE}"),
        }
    }
    let endpoint = endpoint.context("hostile needs --endpoint tcp://127.0.0.1:PORT")?;
    if budget.rounds == 0 {
        bail!("--rounds 0: at least one round");
    }
    let port = endpoint.strip_prefix("tcp://127.0.0.1:").and_then(|port| port.parse::<u16>().ok());
    if port.is_none_or(|port| port == 0) {
        bail!("--endpoint {endpoint:?} is not tcp://127.0.0.1:PORT (the suite attacks loopback only)");
    }
    if let Some(pid) = pid
        && hostile::rss_kib(pid).is_none()
    {
        bail!("--pid {pid}: no such process (or no /proc/{pid}/status to read)");
    }
    let mut target = hostile::Target::new(endpoint);
    target.pid = pid;
    target.amqp = amqp;
    if !events.is_empty() {
        target.event_types = events;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = runtime.block_on(hostile::run(&target, &budget))?;
    print!("{report}");
    let problems = report.problems(std::time::Duration::from_secs(2));
    for problem in &problems {
        println!("PROBLEM: {problem}");
    }
    Ok(problems.is_empty())
}

/// Runs `scenario` in one simulated world and prints its timeline and verdict; returns whether
/// it passed.
fn run_scenario<S, F, Fut>(
    title: &str,
    runner: Runner,
    seed: u64,
    options: &RenderOptions,
    scenario: F,
    passed: impl Fn(&S) -> bool,
) -> anyhow::Result<bool>
where
    S: std::fmt::Display + 'static,
    F: Fn(lymph::testing::World) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<S, Box<dyn std::error::Error>>> + 'static,
{
    let summary = std::rc::Rc::new(std::cell::RefCell::new(None));
    let result = summary.clone();
    let scenario = std::rc::Rc::new(scenario);
    let report = runner.run_seed(seed, &move |world| {
        let (result, scenario) = (result.clone(), scenario.clone());
        async move {
            *result.borrow_mut() = Some(scenario(world).await?);
            Ok::<(), Box<dyn std::error::Error>>(())
        }
    });
    println!("{title}\n");
    print!("{}", report.timeline.render(options));
    println!();
    print_checks(&report.timeline);
    let summary = summary.borrow_mut().take();
    match (&report.outcome, summary) {
        (Ok(()), Some(summary)) => {
            println!("verdict: {summary}");
            Ok(passed(&summary))
        }
        (Err(error), _) => {
            println!("verdict: FAIL: {error}");
            Ok(false)
        }
        (Ok(()), None) => bail!("the scenario finished without a summary"),
    }
}

/// Prints the verdict of each timeline checker that applies to any scenario. They describe the
/// run (a fault can make a reply late, a broker restart can lose events); the scenario's own
/// invariants decide whether it passed.
fn print_checks(timeline: &lymph::testing::Timeline) {
    use lymph::testing::check;

    println!("checks:");
    let verdict = |result: Result<(), check::Violation>| match result {
        Ok(()) => "ok".to_owned(),
        Err(violation) => format!("VIOLATED: {violation}"),
    };
    println!("  at_most_one_reply:             {}", verdict(check::at_most_one_reply(timeline)));
    println!("  requests_handled_at_most_once: {}", verdict(check::requests_handled_at_most_once(timeline)));
    println!("  no_reply_after_give_up:        {}", verdict(check::no_reply_after_give_up(timeline)));
    let events = match check::every_event_delivered(timeline) {
        Ok(lost) if lost.is_empty() => "ok".to_owned(),
        Ok(lost) => {
            let restarts = lost.iter().filter(|l| l.cause == check::LossCause::BrokerRestart).count();
            format!(
                "ok, but lost by lymph's design: {restarts} in broker restarts (queues are not durable), {} with \
                 broadcast or once queues deleted with their consumer",
                lost.len() - restarts
            )
        }
        Err(violation) => format!("VIOLATED: {violation}"),
    };
    println!("  every_event_delivered:         {events}");
    println!();
}

fn run_talk(seed: u64, options: &RenderOptions) -> anyhow::Result<bool> {
    let runner = Runner::new("scenarios::talk", "scenarios", "scenarios");
    let title = format!("talk scenario, seed {seed}");
    run_scenario(
        &title,
        runner,
        seed,
        options,
        |world| async move { scenarios::talk::run(&world, 5).await },
        scenarios::talk::Summary::passed,
    )
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
    let runner = Runner::new("scenarios::food", "scenarios", "scenarios").tick(std::time::Duration::from_millis(10));
    let title = format!("food scenario, seed {seed}, faults: {schedule:?}");
    run_scenario(
        &title,
        runner,
        seed,
        options,
        move |world| {
            let schedule = schedule.clone();
            async move { Ok(scenarios::food::run(&world, 8, &schedule).await?) }
        },
        |summary: &scenarios::food::Summary| summary.verdict.is_ok(),
    )
}

/// Runs the parity schedules of `scenario` (or only the `only`-th) in the simulator and, with the
/// `real-infra` feature, on real infrastructure; returns whether every verdict agreed.
fn run_parity(scenario: &str, only: Option<usize>, seed: u64, timeline: bool) -> anyhow::Result<bool> {
    use scenarios::parity;

    let Some(&scenario) = parity::SCENARIOS.iter().find(|known| **known == scenario) else {
        bail!("no scenario named {scenario:?} (parity knows {:?})", parity::SCENARIOS);
    };
    let schedules = parity::schedules(scenario);
    if let Some(index) = only.filter(|index| *index >= schedules.len()) {
        bail!("--schedule {index}: {scenario} has schedules 0 to {}", schedules.len() - 1);
    }
    let mut agreed = true;
    for (index, (name, schedule)) in schedules.into_iter().enumerate() {
        if only.is_some_and(|only| only != index) {
            continue;
        }
        println!("{scenario} schedule {index}: {name}\n  faults: {schedule:?}");
        let (simulated, recorded) = parity::simulated_with_timeline(scenario, &schedule, seed);
        if timeline {
            print!("{}", recorded.render(&RenderOptions::default()));
        }
        let simulated = simulated.map_err(|error| anyhow::anyhow!("the simulated run: {error}"))?;
        println!("  simulated (seed {seed}): {simulated}");
        match on_real(scenario, &schedule)? {
            None => println!("  real: not run (build with `--features real-infra` and run `scripts/infra.sh up`)"),
            Some(real) => {
                println!("  real:                  {real}");
                for difference in parity::differences(&simulated, &real) {
                    println!("  differs: {difference}");
                }
                agreed &= simulated.verdict == real.verdict;
            }
        }
    }
    Ok(agreed)
}

#[cfg(feature = "real-infra")]
fn on_real(
    scenario: &str,
    schedule: &lymph::testing::schedule::Schedule,
) -> anyhow::Result<Option<scenarios::parity::Outcome>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let cluster = lymph::testing::Real::new().context("a namespace on the local ZooKeeper and RabbitMQ")?;
        let outcome = scenarios::parity::run(&cluster, scenario, schedule).await;
        cluster.shutdown().await;
        outcome.map(Some).map_err(|error| anyhow::anyhow!("the real run: {error}"))
    })
}

#[cfg(not(feature = "real-infra"))]
#[allow(clippy::unnecessary_wraps)]
fn on_real(_: &str, _: &lymph::testing::schedule::Schedule) -> anyhow::Result<Option<scenarios::parity::Outcome>> {
    Ok(None)
}
