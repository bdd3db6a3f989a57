//! Log, LogBatch and Query requests decoded from the bytes (the first byte
//! picks which) through the handlers' validation.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    auditlog_server::fuzzing::validation(data);
});
