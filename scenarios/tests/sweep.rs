//! Fault schedules found by proptest: a handler that is not idempotent under redelivery charges an
//! order twice, the sweep finds a schedule that shows it and shrinks it to a minimal one, and
//! the idempotent handler passes the same sweep.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lymph::testing::schedule::Schedule;
use lymph::testing::{Runner, World, eventually};
use lymph::{Container, Context, Event};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// The bank: how many times each order was charged. It outlives crashes, as a real one would.
type Ledger = Arc<Mutex<BTreeMap<i64, u32>>>;

/// Charges orders when they are placed; slow, so a crash or a lost session can hit it midway.
#[derive(Debug, Clone)]
struct Payments {
    ledger: Ledger,
    idempotent: bool,
}

#[lymph::interface(name = "payments")]
impl Payments {
    /// Charges the order, then takes a while to finish.
    #[event("order.placed")]
    async fn charge(&self, _ctx: &Context, event: Event) -> lymph::Result<()> {
        let order = event["order"].as_i64().unwrap_or(-1);
        {
            let mut ledger = self.ledger.lock().expect("ledger");
            let charges = ledger.entry(order).or_insert(0);
            if !self.idempotent || *charges == 0 {
                *charges += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }
}

const ORDERS: i64 = 8;

/// Places the orders while `schedule` runs; no order may ever be charged twice (an invariant,
/// checked at every step) and every order must end up charged.
fn run(schedule: &Schedule, idempotent: bool) -> Result<(), String> {
    let schedule = schedule.clone();
    let runner = Runner::new("sweep::run", "scenarios", "sweep");
    let report = runner.run_seed(1, &move |world: World| {
        let schedule = schedule.clone();
        async move {
            let ledger = Ledger::default();
            let watched = ledger.clone();
            world.invariant("no order charged twice", move || {
                match watched.lock().expect("ledger").iter().find(|(_, charges)| **charges > 1) {
                    Some((order, charges)) => Err(format!("order {order} was charged {charges} times")),
                    None => Ok(()),
                }
            });
            for host in ["payments-1", "payments-2"] {
                let payments = Payments { ledger: ledger.clone(), idempotent };
                world
                    .start(host, move || Container::builder().interface(payments.clone()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let client = world.client().await.map_err(|e| e.to_string())?;
            let orders = async {
                for order in 0..ORDERS {
                    let _ = client.emit("order.placed", serde_json::json!({ "order": order })).await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            };
            tokio::join!(orders, schedule.run(&world));
            let _ = eventually("every order charged", Duration::from_secs(30), || {
                ledger.lock().expect("ledger").len() == ORDERS as usize
            })
            .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            // A second charge ends the run at once, through the invariant.
            let charged = ledger.lock().expect("ledger").len();
            if charged < ORDERS as usize {
                Err(format!("only {charged} of {ORDERS} orders were charged"))
            } else {
                Ok(())
            }
        }
    });
    report.outcome
}

fn sweep(idempotent: bool, cases: u32) -> Result<(), TestError<Schedule>> {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy = Schedule::strategy(&["payments-1", "payments-2"], &["broker"], Duration::from_secs(4), 3);
    runner.run(&strategy, |schedule| run(&schedule, idempotent).map_err(TestCaseError::fail))
}

#[test]
fn the_sweep_finds_a_double_charge_and_shrinks_it() {
    match sweep(false, 48) {
        Err(TestError::Fail(reason, minimal)) => {
            println!("minimal failing schedule: {minimal:?} ({reason})");
            assert!(reason.message().contains("charged 2 times"), "{reason}");
            // Shrunk to a minimal schedule: at most two faults, and without any one of them it
            // passes. (A shrinker finds a local minimum: which one depends on the path it takes,
            // so the number of faults is not fixed, but every fault left is needed.)
            assert!(minimal.steps().len() <= 2, "not shrunk to at most two faults: {minimal:?}");
            for index in 0..minimal.steps().len() {
                let fewer = minimal.without(index);
                assert!(run(&fewer, false).is_ok(), "{minimal:?} still fails without fault {index}: {fewer:?}");
            }
            assert!(run(&minimal, false).is_err(), "the minimal schedule does not fail again: {minimal:?}");
            assert!(run(&minimal, true).is_ok(), "the idempotent handler fails the minimal schedule: {minimal:?}");
        }
        Err(other) => panic!("the sweep failed in another way: {other}"),
        Ok(()) => panic!("48 schedules did not find the double charge"),
    }
}

#[test]
fn the_idempotent_handler_passes_the_sweep() {
    if let Err(error) = sweep(true, 16) {
        panic!("{error}");
    }
}
