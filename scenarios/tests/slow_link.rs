//! A slow link finds a retry bug: a payments service credits a wallet over RPC from an event
//! handler that is retried when it fails. The credit is not idempotent, so a call whose caller
//! times out while its request is still on its way is credited once by the late request and once
//! more by the retry. On ZeroMQ over TCP a slow link delivers the request late, not never, and
//! the simulator does the same: a sweep over link latencies alone finds the double credit and
//! shrinks it to one slow link.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lymph::testing::schedule::{Kind, Schedule, Step};
use lymph::testing::{Runner, World, eventually};
use lymph::{Container, Context, Event};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use serde_json::json;

/// Cents per account: what was paid, and what the wallet credited.
type Book = Arc<Mutex<BTreeMap<String, i64>>>;

/// Credits accounts; not idempotent: every call adds.
#[derive(Debug, Clone, Default)]
struct Wallet {
    credited: Book,
}

#[lymph::interface(name = "wallet")]
impl Wallet {
    /// Adds `amount` to `account`.
    #[rpc]
    async fn credit(&self, account: String, amount: i64) -> lymph::Result<i64> {
        let mut credited = self.credited.lock().expect("book");
        let balance = credited.entry(account).or_default();
        *balance += amount;
        Ok(*balance)
    }
}

/// Credits each accepted payment to the wallet, with a 1 s timeout; a failed call fails the
/// handler, and the event is redelivered (three times at most).
#[derive(Debug, Clone, Default)]
struct Payments;

#[lymph::interface(name = "payments")]
impl Payments {
    #[event("payment.accepted", retry = 3)]
    async fn on_payment(&self, ctx: &Context, event: Event) -> lymph::Result<()> {
        let params = json!({ "account": event["account"].as_str().unwrap_or_default(), "amount": event["amount"].as_i64().unwrap_or(0) });
        ctx.proxy("wallet").timeout(Duration::from_secs(1)).call::<i64, _>("credit", &params).await.map(drop)
    }
}

const PAYMENTS: i64 = 4;

/// Pays `PAYMENTS` times 10 cents into `acct-<n>` while `schedule` runs; no account may ever be
/// credited more than was paid into it (an invariant, checked at every step).
fn run(schedule: &Schedule) -> Result<(), String> {
    let schedule = schedule.clone();
    let runner = Runner::new("slow_link::run", "scenarios", "slow_link");
    let report = runner.run_seed(3, &move |world: World| {
        let schedule = schedule.clone();
        async move {
            let (paid, credited) = (Book::default(), Book::default());
            let (watched_paid, watched_credited) = (paid.clone(), credited.clone());
            world.invariant("never credited more than paid", move || {
                let paid = watched_paid.lock().expect("book");
                match watched_credited
                    .lock()
                    .expect("book")
                    .iter()
                    .find(|(a, c)| **c > paid.get(*a).copied().unwrap_or(0))
                {
                    Some((account, credit)) => Err(format!(
                        "{account} was credited {credit} for {} paid",
                        paid.get(account).copied().unwrap_or(0)
                    )),
                    None => Ok(()),
                }
            });
            let wallet = Wallet { credited: credited.clone() };
            world
                .start("wallet-1", move || Container::builder().interface(wallet.clone()))
                .await
                .map_err(|e| e.to_string())?;
            world.start("payments-1", || Container::builder().interface(Payments)).await.map_err(|e| e.to_string())?;
            let client = world.client().await.map_err(|e| e.to_string())?;
            let pay = async {
                for n in 0..PAYMENTS {
                    let account = format!("acct-{n}");
                    *paid.lock().expect("book").entry(account.clone()).or_default() += 10;
                    let _ = client.emit("payment.accepted", json!({ "account": account, "amount": 10 })).await;
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                }
            };
            tokio::join!(pay, schedule.run(&world));
            let _ = eventually("every payment credited", Duration::from_secs(20), || {
                credited.lock().expect("book").len() == PAYMENTS as usize
            })
            .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let credited = credited.lock().expect("book").len();
            if credited < PAYMENTS as usize {
                return Err(format!("only {credited} of {PAYMENTS} accounts were credited"));
            }
            Ok(())
        }
    });
    report.outcome
}

#[test]
fn a_sweep_over_slow_links_finds_the_double_credit_and_shrinks_it() {
    assert_eq!(run(&Schedule::new()), Ok(()), "the clean run credits every payment once");
    let config = Config { cases: 32, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy = Schedule::strategy(&["payments-1"], &["wallet-1"], Duration::from_secs(4), 2).only(&[Kind::Latency]);
    match runner.run(&strategy, |schedule| run(&schedule).map_err(TestCaseError::fail)) {
        Err(TestError::Fail(reason, minimal)) => {
            println!("minimal failing schedule: {minimal:?} ({reason})");
            assert!(reason.message().contains("never credited more than paid"), "{reason}");
            let [(_, Step::Latency(..))] = minimal.steps() else {
                panic!("not shrunk to one slow link: {minimal:?}");
            };
            assert!(run(&minimal).is_err(), "the minimal schedule does not fail again: {minimal:?}");
        }
        Err(other) => panic!("the sweep failed in another way: {other}"),
        Ok(()) => panic!("32 schedules of slow links did not find the double credit"),
    }
}
