//! TLS and tokens between nodes, and a secured NATS (issue 16): nodes that
//! serve gRPC with certificates from a private CA minted here (rcgen) and
//! require tokens, a follower forwarding writes to the leader over that TLS
//! (presenting its certificate where the leader requires one), a follower
//! that does not trust the leader's CA refusing with the reason, and a node
//! reaching a NATS server that requires TLS client certificates and a
//! password. Skipped without a `nats-server` binary, unless `REQUIRE_NATS=1`.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use async_nats::jetstream;
use auditlog_client::{Client, NewEvent, Options};
use common::cluster::{lease, spawn};
use common::endpoints::closed_port;
use common::{NatsCluster, TEST_KEY, all_events, nats_server_bin, wait_until, workspace_bin};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sha2::Digest as _;
use tonic::Code;

/// The tests here take turns: each runs NATS and several nodes on two cores.
static TURN: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// The token every node knows (writer and reader), and its name, which the
/// leader records as the event's `caller`.
const TOKEN: &str = "pl-9b4a2d7f01-secret";
const TOKEN_NAME: &str = "pipeline";

/// Certificates minted for one test, in PEM files in a temp dir: `ca.pem`
/// (the private CA), `node.pem`/`node.key` (every node, for 127.0.0.1, both
/// server and client use), `client.pem`/`client.key` (the test's client),
/// `nats.pem`/`nats.key` (a NATS server), and `other-ca.pem`, a CA that
/// signed none of them.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let (ca, issuer) = new_ca("auditlog cluster test CA");
        let (other_ca, _) = new_ca("someone else's CA");
        let node = new_leaf(
            &issuer,
            "127.0.0.1",
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let client = new_leaf(
            &issuer,
            "writer.clients.test",
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        let nats = new_leaf(
            &issuer,
            "127.0.0.1",
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        );
        let dir = tempfile::tempdir().unwrap();
        for (file, pem) in [
            ("ca.pem", &ca),
            ("other-ca.pem", &other_ca),
            ("node.pem", &node.0),
            ("node.key", &node.1),
            ("client.pem", &client.0),
            ("client.key", &client.1),
            ("nats.pem", &nats.0),
            ("nats.key", &nats.1),
        ] {
            std::fs::write(dir.path().join(file), pem).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).unwrap()
    }

    /// What the test's client uses: our CA, the token, and its client
    /// certificate (for nodes requiring mutual TLS).
    fn client_options(&self) -> Options {
        Options {
            token: Some(TOKEN.to_owned()),
            ca_cert_pem: Some(self.read("ca.pem")),
            identity_pem: Some((self.read("client.pem"), self.read("client.key"))),
            domain: None,
        }
    }
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// (certificate, key) PEM for `name` (an IP address becomes an IP SAN),
/// signed by `ca`, for `usages`.
fn new_leaf(
    ca: &Issuer<'static, KeyPair>,
    name: &str,
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> (String, String) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// An `auditlog-server` serving gRPC over TLS as a cluster node.
struct TlsNode {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsNode {
    /// Node `name` on `nats` (`replicas` copies), serving with the node
    /// certificate (requiring client certificates from our CA when
    /// `mutual`), requiring [`TOKEN`], its `[cluster]` ending with `peer`.
    /// Waits until it answers over TLS.
    async fn start(
        nats: &NatsCluster,
        pki: &Pki,
        name: &str,
        replicas: usize,
        mutual: bool,
        peer: &str,
    ) -> TlsNode {
        let dir = tempfile::tempdir().unwrap();
        let port = closed_port();
        let url = format!("https://127.0.0.1:{port}");
        let urls: Vec<String> = nats.urls().iter().map(|u| format!("{u:?}")).collect();
        let client_ca = if mutual {
            format!("client_ca_file = {:?}\n", pki.path("ca.pem"))
        } else {
            String::new()
        };
        let config = format!(
            "{}[cluster]\nnats_urls = [{}]\nnode_name = {name:?}\nadvertise = {url:?}\n\
             lease_ttl_ms = 1000\nreplicas = {replicas}\n{peer}\n\
             [tls]\ncert_file = {:?}\nkey_file = {:?}\n{client_ca}\n\
             [[tokens]]\nname = {TOKEN_NAME:?}\nsha256 = {:?}\nroles = [\"writer\", \"reader\"]\n",
            nats.checkpoint_toml(),
            urls.join(", "),
            pki.path("node.pem"),
            pki.path("node.key"),
            hex::encode(sha2::Sha256::digest(TOKEN.as_bytes())),
        );
        let file = dir.path().join("auditlog.toml");
        std::fs::write(&file, config).unwrap();
        let child = Command::new(workspace_bin("auditlog-server", "auditlog-server"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&file)
            .env("AUDITLOG_HMAC_KEY", TEST_KEY)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let node = TlsNode {
            child,
            url,
            _dir: dir,
        };
        let options = pki.client_options();
        wait_until(&format!("{} to serve over TLS", node.url), || async {
            node.client(options.clone())
                .await?
                .stats(None)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await;
        node
    }

    async fn client(&self, options: Options) -> Result<Client, String> {
        Client::connect_with(self.url.clone(), options)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The lease holder's (name, advertised URL), once there is one.
async fn leader_of(nats: &NatsCluster) -> (String, String) {
    let js = jetstream::new(nats.client().await);
    let (name, advertise, _) = wait_until("a leader", || lease(&js)).await;
    (name, advertise)
}

#[tokio::test]
async fn a_write_to_a_follower_reaches_the_leader_over_mutual_tls_with_its_token() {
    let _turn = TURN.acquire().await.unwrap();
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let pki = Pki::new();
    // Every node trusts the private CA for the others and requires client
    // certificates from it; a forwarding node presents its own `[tls]`
    // certificate, the default.
    let peer = format!("peer_ca_file = {:?}", pki.path("ca.pem"));
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(TlsNode::start(&nats, &pki, &format!("node{i}"), 3, true, &peer).await);
    }
    let (_, advertise) = leader_of(&nats).await;
    let at = nodes.iter().position(|n| n.url == advertise).unwrap();
    let follower = &nodes[(at + 1) % 3];
    let other = &nodes[(at + 2) % 3];

    // Until the follower has seen the lease it refuses (UNAVAILABLE); the
    // key makes a repeat after an unknown outcome the same event.
    let client = follower.client(pki.client_options()).await.unwrap();
    let receipt = wait_until("a write through the follower", || async {
        client
            .log(NewEvent::new("forwarded_over_tls").idempotency_key("tls-1"))
            .await
            .map_err(|e| e.to_string())
    })
    .await;

    let reader = other.client(pki.client_options()).await.unwrap();
    let events = wait_until("the write on the third node", || async {
        let events = all_events(&reader).await;
        match events.iter().find(|e| e.id == receipt.id) {
            Some(_) => Ok(events),
            None => Err(format!("{} events, not yet {}", events.len(), receipt.id)),
        }
    })
    .await;
    let event = events.iter().find(|e| e.id == receipt.id).unwrap();
    assert_eq!(event.seq, receipt.seq);
    assert_eq!(event.signature, receipt.signature);
    // The leader authenticated the caller's token that came with the
    // forwarded call, and recorded whose it was.
    assert_eq!(event.caller, TOKEN_NAME);

    // Without the token, the follower refuses before forwarding anything.
    let tokenless = Options {
        token: None,
        ..pki.client_options()
    };
    let refused = follower
        .client(tokenless)
        .await
        .unwrap()
        .log(NewEvent::new("no_token"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(Code::Unauthenticated), "{refused}");
}

#[tokio::test]
async fn a_follower_not_trusting_the_leaders_ca_says_so_and_keeps_serving() {
    let _turn = TURN.acquire().await.unwrap();
    let Some(nats) = NatsCluster::start(1).await else {
        return;
    };
    let pki = Pki::new();
    let peer = format!("peer_ca_file = {:?}", pki.path("other-ca.pem"));
    let mut nodes = Vec::new();
    for i in 0..2 {
        nodes.push(TlsNode::start(&nats, &pki, &format!("node{i}"), 1, false, &peer).await);
    }
    let (leader, advertise) = leader_of(&nats).await;
    let at = nodes.iter().position(|n| n.url == advertise).unwrap();
    let follower = &nodes[1 - at];

    let client = follower.client(pki.client_options()).await.unwrap();
    // Before the follower has seen the lease it refuses for that reason;
    // then for the leader's certificate.
    let message = wait_until(
        "the follower to refuse for the leader's certificate",
        || async {
            match client.log(NewEvent::new("untrusted_leader")).await {
                Err(e)
                    if e.code() == Some(Code::Unavailable) && e.to_string().contains(&leader) =>
                {
                    Ok(e.to_string())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(message.contains(&advertise), "{message}");
    let lower = message.to_lowercase();
    assert!(
        lower.contains("certificate") && lower.contains("peer_ca_file"),
        "the refusal does not name the TLS failure and the key: {message}"
    );

    // Nothing was written, and the follower still answers.
    let stats = client.stats(None).await.unwrap();
    assert_eq!(stats.head_seq, 0);
    let leader_client = nodes[at].client(pki.client_options()).await.unwrap();
    leader_client.log(NewEvent::new("direct")).await.unwrap();
}

/// One `nats-server` with JetStream that requires TLS with a client
/// certificate from our CA, and a user and password.
struct SecuredNats {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for SecuredNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SecuredNats {
    fn start(bin: &Path, pki: &Pki, user: &str, password: &str) -> SecuredNats {
        let dir = tempfile::tempdir().unwrap();
        let port = closed_port();
        let config = dir.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {:?}\n}}\n\
                 tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n}}\n\
                 authorization {{\n  user: {user:?}\n  password: {password:?}\n}}\n",
                dir.path().join("js"),
                pki.path("nats.pem"),
                pki.path("nats.key"),
                pki.path("ca.pem"),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("nats.log")).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        SecuredNats {
            child,
            url: format!("tls://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

#[tokio::test]
async fn a_node_reaches_a_nats_requiring_client_certificates_and_a_password() {
    let _turn = TURN.acquire().await.unwrap();
    let Some(bin) = nats_server_bin() else {
        return;
    };
    let pki = Pki::new();
    let nats = SecuredNats::start(&bin, &pki, "auditlog", "nats-pw-3f9c1e");
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    // A cluster node signs checkpoints only with a shared key it is given.
    let key = dir.path().join("checkpoint.key");
    std::fs::write(&key, "5a".repeat(32)).unwrap();
    std::fs::write(
        dir.path().join("auditlog.toml"),
        format!(
            "checkpoint_key_file = {key:?}\ncheckpoint_origin = \"auditlog.test/tls\"\n\
             [cluster]\nnats_urls = [{:?}]\nnode_name = \"solo\"\n\
             advertise = \"http://127.0.0.1:{port}\"\nlease_ttl_ms = 1000\nreplicas = 1\n\
             nats_tls_ca = {:?}\nnats_tls_cert = {:?}\nnats_tls_key = {:?}\n\
             nats_user = \"auditlog\"\nnats_password = \"nats-pw-3f9c1e\"\n",
            nats.url,
            pki.path("ca.pem"),
            pki.path("client.pem"),
            pki.path("client.key"),
        ),
    )
    .unwrap();
    let node = spawn(port, dir.path()).await;
    let client = Client::connect(node.url.clone()).await.unwrap();
    // The node leads alone once it has reached NATS and set up the stream.
    let receipt = wait_until("a write acknowledged through the secured NATS", || async {
        client
            .log(NewEvent::new("over_secured_nats").idempotency_key("nats-1"))
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(receipt.seq, 1);
    assert_eq!(client.stats(None).await.unwrap().head_seq, 1);
}
