//! Parity runs: talk and food under fixed fault schedules (a crash, a partition from the broker,
//! a session expiry, broker restarts), in the simulator and on real ZeroMQ,
//! RabbitMQ and ZooKeeper, with the same checks. The verdicts must agree; counts that differ are
//! printed (real timings vary).
//!
//! `cargo run -p scenarios --features real-infra -- parity food --schedule 2` runs one of them.
//! A broker restart disturbs every user of the server: the runs go one at a time, in a test
//! binary of their own.
#![cfg(feature = "real-infra")]

use lymph::testing::Real;
use scenarios::parity;

fn parity_of(scenario: &'static str) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut disagreements = Vec::new();
    for (index, (name, schedule)) in parity::schedules(scenario).into_iter().enumerate() {
        let simulated = parity::simulated(scenario, &schedule, 1).expect("the simulated run");
        let real = on_real(scenario, &schedule);
        eprintln!("{scenario} schedule {index} ({name}):\n  simulated: {simulated}\n  real:      {real}");
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

fn on_real(scenario: &'static str, schedule: &lymph::testing::schedule::Schedule) -> parity::Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let cluster = Real::new().expect("a namespace on the local servers");
        let outcome = parity::run(&cluster, scenario, schedule).await.expect("the real run");
        cluster.shutdown().await;
        outcome
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
