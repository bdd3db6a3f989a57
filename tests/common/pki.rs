//! [`Pki`]: certificates minted for one test (rcgen), as PEM strings and as
//! files in a temp dir, for servers, cluster nodes, NATS and clients that
//! speak TLS.

use std::path::PathBuf;

use auditlog_client::Options;
use auditlog_server::config::TlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A private CA and what it signed, and another CA that signed none of
/// ours. The files in [`Pki::path`]'s folder:
///
/// - `ca.pem`, `other-ca.pem`: the two CAs;
/// - `server.pem`/`server.key`: a server certificate for `localhost` and
///   `127.0.0.1` (server use only);
/// - `node.pem`/`node.key`: a cluster node's, for `127.0.0.1`, for both
///   server and client use (a node presents it when it forwards a call);
/// - `client.pem`/`client.key`: a client certificate from our CA.
///
/// `other_client` (a client certificate from the other CA) is kept in
/// memory only.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
    pub(crate) ca: String,
    pub(crate) other_ca: String,
    /// (certificate, key) PEM, as each of the pairs below.
    pub(crate) server: (String, String),
    pub(crate) client: (String, String),
    pub(crate) other_client: (String, String),
}

impl Pki {
    pub(crate) fn new() -> Pki {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let (ca, issuer) = new_ca("auditlog test CA");
        let (other_ca, other_issuer) = new_ca("someone else's CA");
        let server = new_leaf(&issuer, &["localhost", "127.0.0.1"], vec![ServerAuth]);
        let node = new_leaf(&issuer, &["127.0.0.1"], vec![ServerAuth, ClientAuth]);
        let client = new_leaf(&issuer, &["writer.clients.test"], vec![ClientAuth]);
        let other_client = new_leaf(&other_issuer, &["intruder.clients.test"], vec![ClientAuth]);
        let dir = tempfile::tempdir().unwrap();
        for (file, pem) in [
            ("ca.pem", &ca),
            ("other-ca.pem", &other_ca),
            ("server.pem", &server.0),
            ("server.key", &server.1),
            ("node.pem", &node.0),
            ("node.key", &node.1),
            ("client.pem", &client.0),
            ("client.key", &client.1),
        ] {
            std::fs::write(dir.path().join(file), pem).unwrap();
        }
        Pki {
            dir,
            ca,
            other_ca,
            server,
            client,
            other_client,
        }
    }

    /// The file `file` of the list above.
    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A server's `[tls]` with the server certificate, requiring client
    /// certificates from our CA when `mutual`.
    pub(crate) fn server_tls(&self, mutual: bool) -> TlsConfig {
        TlsConfig {
            cert_file: self.path("server.pem"),
            key_file: self.path("server.key"),
            client_ca_file: mutual.then(|| self.path("ca.pem")),
        }
    }

    /// A tonic TLS setting trusting our CA, for `localhost`, presenting
    /// `identity` if given.
    pub(crate) fn client_tls(&self, identity: Option<&(String, String)>) -> ClientTlsConfig {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .domain_name("localhost");
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        tls
    }

    /// Client options trusting `ca`, presenting `identity` if given.
    pub(crate) fn options(&self, ca: &str, identity: Option<&(String, String)>) -> Options {
        Options {
            ca_cert_pem: Some(ca.as_bytes().to_vec()),
            identity_pem: identity.map(|(c, k)| (c.clone().into_bytes(), k.clone().into_bytes())),
            ..Options::default()
        }
    }
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// (certificate, key) PEM for `names` (an IP address becomes an IP SAN),
/// signed by `ca`, for `usages`.
fn new_leaf(
    ca: &Issuer<'static, KeyPair>,
    names: &[&str],
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}
