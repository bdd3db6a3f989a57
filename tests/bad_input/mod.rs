//! What callers send wrong, through a real server on 127.0.0.1: requests
//! that do not decode, nest too deep or are too large (sent as raw bytes
//! with a codec of the test's own), HTTP/2 requests that are not gRPC as
//! the server reads it (sent with `h2` as they are), plain HTTP/1.1 on the
//! gRPC port, control characters in short fields, formula cells in CSV
//! exports and escapes in CLI tables, and an inverted time range.
//!
//! One file per concern. Shared: the raw codec, a `Log` request to send
//! with it and the status a refusal answers with (`raw.rs`). The tests:
//! requests that do not decode or nest too deep (`decoding.rs`), oversized
//! requests (`oversized.rs`), HTTP/2 requests that are not gRPC
//! (`http2.rs`), HTTP/1.1 on the gRPC port (`http1.rs`), control characters
//! in short fields and filters (`control_characters.rs`), CLI tables and CSV
//! exports (`cli_output.rs`), and an inverted time range (`ranges.rs`).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod cli_output;
mod control_characters;
mod decoding;
mod http1;
mod http2;
mod oversized;
mod ranges;
mod raw;
