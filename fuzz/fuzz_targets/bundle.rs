//! A bundle exported honestly, edited as the input says, read back and verified; and the input read as a bundle.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    auditlog_server::fuzzing::bundle(data);
});
