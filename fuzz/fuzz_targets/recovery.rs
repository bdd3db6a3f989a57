//! Tail recovery on a log of arbitrary bytes in a temporary directory,
//! asserting that it only cuts what was never acknowledged.

#![no_main]

mod scratch;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    auditlog_server::fuzzing::recovery(scratch::dir(), data);
});
