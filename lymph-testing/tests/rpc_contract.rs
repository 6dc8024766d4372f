//! The RPC contract on every backend: the in-process transport, the simulated one
//! and, with `real-infra`, `ZmqRpc` on loopback.
//!
//! `LYMPH_CONTRACT_CHECK=<part of a name>` runs only the matching checks.

use lymph_testing::Runner;
use lymph_testing::contract::rpc;

#[test]
fn rpc_contract_embedded() {
    rpc::embedded::run().assert_passed();
}

#[test]
fn rpc_contract_simulated() {
    // A failed seed's replay line reruns every check on that seed; add LYMPH_CONTRACT_CHECK to
    // narrow it to the one that failed (the report names it).
    rpc::simulated::run(|_check| {
        Runner::new("rpc_contract_simulated", env!("CARGO_PKG_NAME"), env!("CARGO_CRATE_NAME")).seeds(3)
    })
    .assert_passed();
}

#[cfg(feature = "real-infra")]
#[test]
fn rpc_contract_real() {
    rpc::real::run().assert_passed();
}
