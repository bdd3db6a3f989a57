//! A cluster replica fed groups cut from an honest chain and edited,
//! asserting that its log is always the chain's first lines.

#![no_main]

mod scratch;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    auditlog_server::fuzzing::apply(scratch::dir(), data);
});
