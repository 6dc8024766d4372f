//! Parity runs: one scenario under one fault schedule in the simulator and on real
//! infrastructure, with the same checks, and the differences between the two outcomes.
//!
//! Real timings vary, so what is compared is verdicts and outcomes: whether the invariants held
//! (and, when not, which kind of violation), how many orders ended in each state, how many calls
//! and events went through; never exact timelines.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use lymph::testing::schedule::Schedule;
use lymph::testing::{BROKER_HOST, Cluster, Runner, Timeline, World};

use crate::{food, talk};

/// The scenarios a parity run knows.
pub const SCENARIOS: [&str; 2] = ["talk", "food"];

/// The fixed schedules of the parity runs: a crash, a partition from the broker, a session
/// expiry and broker restarts, each of faults every cluster with faults has.
pub fn schedules(scenario: &str) -> Vec<(&'static str, Schedule)> {
    match scenario {
        "talk" => vec![
            ("crash of echo-1 and restart", Schedule::new().crash(1_000, "echo-1").restart(3_000, "echo-1")),
            (
                "listener cut off from the broker for 3 s",
                Schedule::new().partition(1_000, "listener", BROKER_HOST, 3_000),
            ),
            ("session expiry of echo-2", Schedule::new().expire_session(1_000, "echo-2")),
            ("broker restart", Schedule::new().restart(2_000, BROKER_HOST)),
        ],
        _ => vec![
            ("crash of order-1 and restart", Schedule::new().crash(1_000, "order-1").restart(4_000, "order-1")),
            (
                "restaurant-1 cut off from the broker for 4 s",
                Schedule::new().partition(500, "restaurant-1", BROKER_HOST, 4_000),
            ),
            ("session expiry of order-2", Schedule::new().expire_session(500, "order-2")),
            (
                "broker restart while the restaurants are cut off",
                Schedule::new()
                    .partition(0, "restaurant-1", BROKER_HOST, 4_000)
                    .partition(0, "restaurant-2", BROKER_HOST, 4_000)
                    .restart(3_500, BROKER_HOST),
            ),
            ("broker restart while the restaurants are down", food::stuck_by_a_broker_restart()),
            ("gateway cut off from order-1 for 3 s", Schedule::new().partition(1_000, "gateway", "order-1", 3_000)),
        ],
    }
}

/// What a run of a scenario came to, in terms that compare across clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The verdict: `Ok`, or the kind of violation (the invariant's message without the ids).
    pub verdict: Result<(), String>,
    /// Named counts: orders per final state, calls answered, events seen.
    pub counts: Vec<(String, usize)>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Ok(()) => write!(f, "PASS")?,
            Err(kind) => write!(f, "FAIL ({kind})")?,
        }
        for (name, count) in &self.counts {
            write!(f, ", {name} {count}")?;
        }
        Ok(())
    }
}

/// The kind of an invariant violation: its message with the order ids and counts taken out, so
/// "order 3 is stuck: Placed" and "order 5 is stuck: Accepted" are one kind.
fn violation_kind(message: &str) -> String {
    let words: Vec<&str> = message.split_whitespace().collect();
    let kept: Vec<&str> = words
        .iter()
        .enumerate()
        .filter(|(i, word)| {
            let numbered = |word: &str| word.chars().any(|c| c.is_ascii_digit());
            let names_an_order = **word == "order" && words.get(i + 1).is_some_and(|next| numbered(next));
            !names_an_order && !numbered(word)
        })
        .map(|(_, word)| *word)
        .collect();
    kept.join(" ").split(':').next().unwrap_or_default().trim().to_owned()
}

/// Runs `scenario` under `schedule` on `cluster`.
///
/// # Errors
///
/// When the services do not start.
pub async fn run(cluster: &impl Cluster, scenario: &str, schedule: &Schedule) -> Result<Outcome, String> {
    match scenario {
        "talk" => {
            let started = talk::start(cluster).await.map_err(|e| e.to_string())?;
            let (summary, ()) =
                tokio::join!(talk::exercise(&started, 20, Duration::from_millis(250)), schedule.run(cluster));
            // As an orchestrator would, restart what the schedule left crashed.
            for name in ["echo-1", "echo-2", "listener"] {
                if !cluster.is_running(name) {
                    cluster.restart(name).await.map_err(|e| e.to_string())?;
                }
            }
            let verdict = if summary.declared_error && summary.unknown_nacked {
                Ok(())
            } else {
                Err("an error reply was not what lymph promises".to_owned())
            };
            Ok(Outcome {
                verdict,
                counts: vec![
                    ("upper calls answered".to_owned(), summary.upper_ok),
                    ("events with their trace id".to_owned(), summary.traced_events),
                ],
            })
        }
        "food" => {
            let summary = food::run(cluster, 8, schedule).await.map_err(|e| e.to_string())?;
            let mut counts = vec![("orders confirmed".to_owned(), summary.confirmed)];
            for status in ["Delivered", "Cancelled", "Accepted", "Placed"] {
                counts.push((
                    format!("orders {}", status.to_lowercase()),
                    summary.by_status.get(status).copied().unwrap_or(0),
                ));
            }
            Ok(Outcome { verdict: summary.verdict.map_err(|message| violation_kind(&message)), counts })
        }
        other => Err(format!("no scenario named {other:?} (parity knows {SCENARIOS:?})")),
    }
}

/// Runs `scenario` under `schedule` in the simulator, with `seed`.
///
/// # Errors
///
/// When the simulation fails or the services do not start.
pub fn simulated(scenario: &'static str, schedule: &Schedule, seed: u64) -> Result<Outcome, String> {
    simulated_with_timeline(scenario, schedule, seed).0
}

/// Runs `scenario` under `schedule` in the simulator, with `seed`, and returns its outcome with
/// the run's timeline.
pub fn simulated_with_timeline(
    scenario: &'static str,
    schedule: &Schedule,
    seed: u64,
) -> (Result<Outcome, String>, Timeline) {
    let outcome: Rc<RefCell<Option<Result<Outcome, String>>>> = Rc::default();
    let (slot, schedule) = (outcome.clone(), schedule.clone());
    let body = move |world: World| {
        let (slot, schedule) = (slot.clone(), schedule.clone());
        async move {
            let ran = run(&world, scenario, &schedule).await;
            *slot.borrow_mut() = Some(ran);
        }
    };
    let report = Runner::new("scenarios parity", env!("CARGO_PKG_NAME"), "scenarios")
        .tick(Duration::from_millis(10))
        .run_seed(seed, &body);
    let outcome = match report.outcome {
        Err(error) => Err(error),
        Ok(()) => outcome.borrow_mut().take().unwrap_or_else(|| Err("the simulated run did not finish".to_owned())),
    };
    (outcome, report.timeline)
}

/// The differences between two outcomes, one line each: the verdicts (which must agree) and
/// every count that differs (which real timings may explain).
pub fn differences(simulated: &Outcome, real: &Outcome) -> Vec<String> {
    let mut differences = Vec::new();
    if simulated.verdict != real.verdict {
        differences.push(format!("verdict: simulated {:?}, real {:?}", simulated.verdict, real.verdict));
    }
    for ((name, sim), (_, real)) in simulated.counts.iter().zip(&real.counts) {
        if sim != real {
            differences.push(format!("{name}: simulated {sim}, real {real}"));
        }
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_of_one_kind_compare_equal() {
        assert_eq!(violation_kind("order 3 is stuck: Placed, neither delivered nor cancelled"), "is stuck");
        assert_eq!(violation_kind("order 12 was charged 2 times"), "was charged times");
        assert_ne!(violation_kind("order 1 was charged 2 times"), violation_kind("order 1 is stuck: Placed"));
    }

    #[test]
    fn every_scenario_has_a_crash_a_partition_a_session_expiry_and_a_broker_restart() {
        for scenario in SCENARIOS {
            let schedules = format!("{:?}", schedules(scenario));
            for fault in [".crash(", ".partition(", ".expire_session(", "\"broker\")"] {
                assert!(schedules.contains(fault), "{scenario}: no {fault} in {schedules}");
            }
        }
    }
}
