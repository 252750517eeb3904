//! Compile-time tests of `#[rpc_endpoint]` and `#[rpc_client]`: programs under `tests/ui/pass/`
//! must compile and run, and each program under `tests/ui/fail/<topic>/` must fail to compile
//! with exactly the diagnostics in the `.stderr` file beside it.
//!
//! After changing a diagnostic on purpose, regenerate the expected output and review the diff:
//!
//! ```text
//! TRYBUILD=overwrite cargo test -p amqp-rpc-macros --test ui
//! git diff macros/tests/ui
//! ```
//!
//! A new failing case needs no `.stderr` to start with: a plain run fails it and writes the
//! actual output to `macros/wip/NAME.stderr` (move it next to the case, then
//! delete `wip/`); with `TRYBUILD=overwrite` it is written next to the case directly. Read every
//! `.stderr` before committing it: each error should point at the offending tokens, and one
//! mistake should produce one error, not a cascade from the generated code. The expected output
//! is that of the toolchain CI uses; another rustc version may word or order notes differently.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*/*.rs");
}
