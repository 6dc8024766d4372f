//! Golden tests: lymph-core against captures of Python lymph 0.15.0 traffic.
//!
//! The captures are in `wire/` (see `wire/README.md`). Every ZeroMQ message, msgpack frame and
//! RabbitMQ event body captured must decode and re-encode byte for byte, and the ZooKeeper
//! instance data must parse and carry the ids lymph-core computes.

mod capture;
mod events;
mod messages;
mod registry;

use std::path::Path;

/// A test result; any error fails the test.
type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The text of the capture `name` in `wire/`.
fn wire(name: &str) -> Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/wire").join(name);
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}
