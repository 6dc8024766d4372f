struct World;

#[lymph::test(seed = 1, seeds = 4)]
async fn seed_and_seeds(world: World) {
    let _ = world;
}

#[lymph::test(sedes = 4, seed, seeds = 0, check_determinism = "yes", crate = 1)]
async fn bad_options(world: World) {
    let _ = world;
}

#[lymph::test]
#[test]
async fn second_test_attribute(world: World) {
    let _ = world;
}

fn main() {}
