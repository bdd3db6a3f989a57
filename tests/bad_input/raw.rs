//! Raw requests: a codec that sends the test's bytes as they are, a `Log`
//! request to send that way, and the status a refused request answers with.

use auditlog_client::pb;
use prost::Message as _;
use prost::bytes::{Buf as _, BufMut as _};
use prost_types::Struct;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Request, Status};

use crate::common::TestServer;

/// A codec that sends the test's bytes as they are and reads answers as
/// bytes, so a request can be anything.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// Sends `bytes` as the request message of AuditService method `rpc`.
pub(crate) async fn send_raw(
    server: &TestServer,
    rpc: &str,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let path = PathAndQuery::try_from(format!("/auditlog.v1.AuditService/{rpc}")).unwrap();
    grpc.unary(Request::new(bytes), path, Raw)
        .await
        .map(|r| r.into_inner())
}

pub(crate) fn log_request(actor: &str, details: Option<Struct>) -> Vec<u8> {
    pb::LogRequest {
        event: Some(pb::EventInput {
            event_type: "lead_ingested".into(),
            actor: actor.into(),
            details,
            ..Default::default()
        }),
        with_proof: false,
    }
    .encode_to_vec()
}

/// The status of `result`, failing the test on success.
pub(crate) fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, Status>) -> Status {
    match result {
        Ok(v) => panic!("{what}: accepted ({v:?})"),
        Err(status) => status,
    }
}
