//! A whole file of arbitrary bytes through the verifier: the active log, or
//! (odd first byte) a compressed segment.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    auditlog_server::fuzzing::verify(data);
});
