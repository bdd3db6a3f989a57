//! Arbitrary Query page tokens through the decoder.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    auditlog_server::fuzzing::page_token(data);
});
