//! Compile tests of `#[lymph::interface]` and `#[lymph::test]`: `ui/pass` must compile (and
//! run), `ui/fail` must fail with exactly the checked-in `.stderr`.
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test -p lymph --test ui -- --ignored` and
//! read every diff: the messages are part of the macros' interface.

#[test]
#[ignore = "compile-fail cases build a crate of their own (minutes on a cold machine): `cargo test -p lymph --test ui -- --ignored`, a CI step of its own"]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
