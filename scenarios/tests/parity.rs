//! Parity runs: talk and food under fixed fault schedules (a crash, a partition from the broker,
//! a session expiry, broker restarts), in the simulator and on real ZeroMQ,
//! RabbitMQ and ZooKeeper, with the same checks. The verdicts must agree; counts that differ are
//! printed (real timings vary). The timeline checkers run on both runs' timelines (the real one
//! recorded at every transport by `RecordingRpc`); on real servers no request may get two
//! replies.
//!
//! `cargo run -p scenarios --features real-infra -- parity food --schedule 2` runs one of them.
//! A broker restart disturbs every user of the server: the runs go one at a time, in a test
//! binary of their own.
#![cfg(feature = "real-infra")]

use lymph::testing::{Real, Timeline, check};
use scenarios::parity;

fn parity_of(scenario: &'static str) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut disagreements = Vec::new();
    for (index, (name, schedule)) in parity::schedules(scenario).into_iter().enumerate() {
        let (simulated, simulated_timeline) = parity::simulated_with_timeline(scenario, &schedule, 1);
        let simulated = simulated.expect("the simulated run");
        let (real, real_timeline) = on_real(scenario, &schedule);
        eprintln!("{scenario} schedule {index} ({name}):\n  simulated: {simulated}\n  real:      {real}");
        // The timeline checkers read the real run's recorded traffic as they read the simulated one.
        for (what, checker) in CHECKERS {
            let verdict = |timeline| checker(timeline).map_err(|v| v.to_string());
            let (on_sim, on_real) = (verdict(&simulated_timeline), verdict(&real_timeline));
            eprintln!("  {what}: simulated {on_sim:?}, real {on_real:?}");
        }
        let requests = real_timeline.entries().iter().filter(|e| e.kind == "REQ").count();
        assert!(requests > 0, "schedule {index}: the real run's timeline recorded no request");
        if let Err(violation) = check::at_most_one_reply(&real_timeline) {
            disagreements
                .push(format!("schedule {index} ({name}): on real servers a request got two replies: {violation}"));
        }
        let differences = parity::differences(&simulated, &real);
        for difference in &differences {
            eprintln!("  differs: {difference}");
        }
        if simulated.verdict != real.verdict {
            disagreements.push(format!("schedule {index} ({name}): {}", differences.join("; ")));
        }
    }
    assert!(disagreements.is_empty(), "{scenario}: the verdicts differ:\n{}", disagreements.join("\n"));
}

type Checker = fn(&Timeline) -> Result<(), check::Violation>;

/// The timeline checkers compared on both runs.
const CHECKERS: [(&str, Checker); 3] = [
    ("at_most_one_reply", check::at_most_one_reply),
    ("requests_handled_at_most_once", check::requests_handled_at_most_once),
    ("no_reply_after_give_up", check::no_reply_after_give_up),
];

fn on_real(scenario: &'static str, schedule: &lymph::testing::schedule::Schedule) -> (parity::Outcome, Timeline) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let cluster = Real::new().expect("a namespace on the local servers");
        let outcome = parity::run(&cluster, scenario, schedule).await.expect("the real run");
        let timeline = cluster.timeline().clone();
        cluster.shutdown().await;
        (outcome, timeline)
    })
}

#[test]
fn talk_has_the_same_verdicts_in_the_simulator_and_on_real_infrastructure() {
    parity_of("talk");
}

#[test]
fn food_has_the_same_verdicts_in_the_simulator_and_on_real_infrastructure() {
    parity_of("food");
}
