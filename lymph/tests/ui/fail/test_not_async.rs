struct World;

#[lymph::test]
fn not_async(world: World) {
    let _ = world;
}

fn main() {}
