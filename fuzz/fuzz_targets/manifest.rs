//! A manifest file's bytes through the parser and back.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    auditlog_server::fuzzing::manifest(data);
});
