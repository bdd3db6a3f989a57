//! A lead copy's index file through its decoder and back.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    auditlog_server::fuzzing::lead_index(data);
});
