struct World;

#[lymph::test]
async fn no_world() {}

#[lymph::test]
async fn two(world: World, other: u32) {
    let _ = (world, other);
}

fn main() {}
