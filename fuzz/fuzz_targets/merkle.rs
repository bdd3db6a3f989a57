//! Inclusion and consistency proofs of a tree built from the input, changed as it says.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    auditlog_server::fuzzing::merkle(data);
});
