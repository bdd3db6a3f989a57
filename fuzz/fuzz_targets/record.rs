//! One line of the log through the record parser, the fixed-position reader
//! verification uses and a verifier, against a fixed key.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    auditlog_server::fuzzing::record(data);
});
