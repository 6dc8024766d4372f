#[lymph::interface]
struct Echo;

#[lymph::interface]
fn echo() {}

fn main() {}
