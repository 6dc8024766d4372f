struct Echo;

trait Service {}

#[lymph::interface]
impl Service for Echo {}

fn main() {}
