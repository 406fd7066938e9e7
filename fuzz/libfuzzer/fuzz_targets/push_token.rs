//! libFuzzer's entry for the `push_token` target; the invariants are in `fuzz/src/push_token.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    pulse_fuzz::push_token::check(input);
});
