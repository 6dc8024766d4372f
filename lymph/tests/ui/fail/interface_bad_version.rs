struct Echo;

#[lymph::interface(version = "1.2")]
impl Echo {}

struct Other;

#[lymph::interface(version = "v1.2.x", version = "1.0.0")]
impl Other {}

struct Third;

#[lymph::interface(name = "", version = 1, crate = "not a path")]
impl Third {}

fn main() {}
