//! `#[lymph::test]` accepts its options and keeps other attributes. (Outside the test harness
//! the `#[test]` function is compiled out, so this only checks parsing; the expansion itself is
//! exercised by `tests/macro_interface.rs`.)

pub struct World;

mod shim {
    pub mod __private {
        pub struct Runner;
    }
}

#[lymph::test(crate = "crate::shim")]
async fn plain(world: World) {
    let _ = world;
}

/// Documented.
#[lymph::test(seed = 42, check_determinism, crate = "crate::shim")]
#[ignore = "slow"]
async fn with_seed(mut _world: World) -> Result<(), String> {
    Ok(())
}

#[lymph::test(seeds = 16, check_determinism = false, crate = "crate::shim")]
#[should_panic]
async fn with_seeds(_: World) {}

fn main() {}
