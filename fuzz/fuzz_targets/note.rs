//! A signed checkpoint note edited as the input says, and the input read as a note, a checkpoint and a key.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    auditlog_server::fuzzing::note(data);
});
