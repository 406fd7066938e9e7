//! libFuzzer's entry for the `parquet_footer` target; the invariants are in `fuzz/src/parquet_footer.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    pulse_fuzz::parquet_footer::check(input);
});
