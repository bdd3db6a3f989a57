//! Plain HTTP/1.1 on the gRPC port gets an HTTP/1.1 answer saying so.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{self, TestServer};

#[tokio::test]
async fn plain_http_gets_an_http1_answer_saying_this_is_a_grpc_port() {
    let server = TestServer::start().await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // The server closes the connection after answering.
    tokio::time::timeout(common::DEADLINE, tcp.read_to_end(&mut answer))
        .await
        .expect("the server kept the connection open")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 426 "), "{text:?}");
    assert!(
        text.to_ascii_lowercase().contains("upgrade: h2c"),
        "{text:?}"
    );
    assert!(text.contains("This is a gRPC port"), "{text:?}");

    // gRPC on the same port is unaffected.
    server.client().await.stats(None).await.unwrap();
}
