//! libFuzzer's entry for the `envelope` target; the invariants are in `fuzz/src/envelope.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    pulse_fuzz::envelope::check(input);
});
