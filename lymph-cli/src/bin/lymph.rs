//! `lymph`: the command line of lymph-rs, for Rust and Python lymph services alike.
//!
//! It has every command but `instance`'s interfaces: it knows no interface classes, so it runs
//! clients (`discover`, `inspect`, `request`, `emit`, `subscribe`, `config`). A service binary
//! built on `lymph::app::Application` has the same commands and can run its instances too.

fn main() -> std::process::ExitCode {
    lymph_cli::Application::new("lymph").main()
}
