//! `#[durable_object]` misuse must be a compile error on the user's own code, saying how to
//! fix it. Each `fail/*.rs` has its expected `.stderr` beside it (regenerate with
//! `TRYBUILD=overwrite cargo test -p durable-ui-tests` and review the diff).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/fail/*.rs");
    t.pass("tests/pass/*.rs");
}
