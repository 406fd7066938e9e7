//! libFuzzer's entry for the `normalise` target; the invariants are in `fuzz/src/normalise.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    pulse_fuzz::normalise::check(input);
});
