//! TLS and mutual TLS with certificates minted here: who trusts the CA or
//! presents a certificate from it gets in, no one else.

use auditlog_client::{Client, NewEvent, Options, pb};

use crate::common::Pki;
use crate::security::server::{Server, within};

/// Connects to `url` with `options` and asks for stats; the error text on
/// failure. Never hangs.
async fn attempt(url: &str, options: Options) -> Result<pb::GetStatsResponse, String> {
    within(&format!("stats from {url}"), async {
        let client = Client::connect_with(url, options)
            .await
            .map_err(|e| e.to_string())?;
        client.stats(None).await.map_err(|e| e.to_string())
    })
    .await
}

fn mentions_tls(error: &str) -> bool {
    let e = error.to_lowercase();
    ["certificate", "tls", "issuer", "handshake"]
        .iter()
        .any(|w| e.contains(w))
}

#[tokio::test]
async fn tls_admits_clients_that_trust_its_ca_and_no_one_else() {
    let pki = Pki::new();
    let server = Server::start(
        |c| c.tls = Some(pki.server_tls(false)),
        Some(pki.client_tls(None)),
    )
    .await;
    let port = server.addr.port();

    // By name, trusting the CA.
    let client = Client::connect_with(
        format!("https://localhost:{port}"),
        pki.options(&pki.ca, None),
    )
    .await
    .unwrap();
    let receipt = client.log(NewEvent::new("tls_check")).await.unwrap();
    assert_eq!(receipt.seq, 1);

    // By address, naming the certificate's host.
    let by_ip = Options {
        domain: Some("localhost".into()),
        ..pki.options(&pki.ca, None)
    };
    let stats = attempt(&format!("https://127.0.0.1:{port}"), by_ip)
        .await
        .unwrap();
    assert_eq!(stats.total_events, 1);

    // Plaintext to a TLS port gets nowhere.
    let plain = attempt(&format!("http://127.0.0.1:{port}"), Options::default()).await;
    assert!(plain.is_err(), "a plaintext client was served: {plain:?}");

    // A client trusting another CA refuses the server's certificate.
    let wrong_ca = attempt(
        &format!("https://localhost:{port}"),
        pki.options(&pki.other_ca, None),
    )
    .await;
    let err = wrong_ca.expect_err("a client trusting another CA was served");
    assert!(mentions_tls(&err), "the error does not say why: {err}");

    // So does one with only the public web roots.
    let public_roots = attempt(&format!("https://localhost:{port}"), Options::default()).await;
    let err = public_roots.expect_err("a client trusting the web roots was served");
    assert!(mentions_tls(&err), "the error does not say why: {err}");

    // None of that hurt the server.
    assert_eq!(client.stats(None).await.unwrap().total_events, 1);
}

#[tokio::test]
async fn mutual_tls_admits_only_client_certificates_from_its_ca() {
    let pki = Pki::new();
    let server = Server::start(
        |c| c.tls = Some(pki.server_tls(true)),
        Some(pki.client_tls(Some(&pki.client))),
    )
    .await;
    let url = format!("https://localhost:{}", server.addr.port());

    let ours = Client::connect_with(&url, pki.options(&pki.ca, Some(&pki.client)))
        .await
        .unwrap();
    let receipt = ours.log(NewEvent::new("mtls_check")).await.unwrap();
    assert_eq!(receipt.seq, 1);

    let mut wrong = Vec::new();
    for (who, identity) in [
        ("no client certificate", None),
        (
            "a client certificate from another CA",
            Some(&pki.other_client),
        ),
        // Signed by the CA, but for a server, not a client.
        ("the server's certificate", Some(&pki.server)),
    ] {
        let options = pki.options(&pki.ca, identity);
        let logged = within(who, async {
            let client = Client::connect_with(&url, options)
                .await
                .map_err(|e| e.to_string())?;
            client
                .log(NewEvent::new("intruder"))
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        match logged {
            Ok(receipt) => wrong.push(format!("{who}: served ({receipt:?})")),
            Err(e) => eprintln!("{who}: refused: {e}"),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Nothing they sent was written, and the refusals did not hurt the
    // server or its good client.
    assert_eq!(ours.stats(None).await.unwrap().total_events, 1);
}
