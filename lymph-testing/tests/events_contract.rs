//! The events contract on every backend: the in-process event system, the simulated RabbitMQ
//! and, with `real-infra`, RabbitMQ itself (`scripts/infra.sh up`).
//!
//! `LYMPH_CONTRACT_CHECK=<part of a name>` runs only the matching checks.

use lymph_testing::Runner;
use lymph_testing::contract::events;

#[test]
fn events_contract_embedded() {
    events::embedded::run().assert_passed();
}

#[test]
fn events_contract_simulated() {
    // A failed seed's replay line reruns every check on that seed; add LYMPH_CONTRACT_CHECK to
    // narrow it to the one that failed (the report names it).
    events::simulated::run(|_check| {
        Runner::new("events_contract_simulated", env!("CARGO_PKG_NAME"), env!("CARGO_CRATE_NAME")).seeds(3)
    })
    .assert_passed();
}

#[cfg(feature = "real-infra")]
#[test]
fn events_contract_real() {
    events::real::run().assert_passed();
}
