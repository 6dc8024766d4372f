//! The registry contract on every backend: the in-process registry, the simulated ZooKeeper
//! and, with `real-infra`, ZooKeeper itself (`scripts/infra.sh up`).
//!
//! `LYMPH_CONTRACT_CHECK=<part of a name>` runs only the matching checks.

use lymph_testing::Runner;
use lymph_testing::contract::registry;

#[test]
fn registry_contract_embedded() {
    registry::embedded::run().assert_passed();
}

#[test]
fn registry_contract_simulated() {
    // A failed seed's replay line reruns every check on that seed; add LYMPH_CONTRACT_CHECK to
    // narrow it to the one that failed (the report names it).
    registry::simulated::run(|_check| {
        Runner::new("registry_contract_simulated", env!("CARGO_PKG_NAME"), env!("CARGO_CRATE_NAME")).seeds(3)
    })
    .assert_passed();
}

#[cfg(feature = "real-infra")]
#[test]
fn registry_contract_real() {
    registry::real::run().assert_passed();
}
