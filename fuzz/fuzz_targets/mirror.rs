//! A witness's mirror of a small log, edited as the input says and checked offline against the log's checkpoint; and the input read as a mirror.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    auditlog_server::fuzzing::mirror(data);
});
