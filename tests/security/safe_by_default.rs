//! Safe by default: the server binary refuses a network address without
//! both TLS and tokens unless `allow_insecure` is set, and warns when it is;
//! the data directory it makes is its owner's alone.

use std::net::SocketAddr;

use tonic::Code;

use crate::common::Pki;
use crate::security::binaries::{Spawned, free_port};
use crate::security::roles::call;
use crate::security::server::channel;
use crate::security::tokens::{READER, tokens_toml};

/// How a server is told to bind a network address: a label, flags,
/// environment, and a config file's text.
type BindCase<'a> = (
    &'a str,
    &'a [&'a str],
    &'a [(&'a str, &'a str)],
    Option<String>,
);

#[test]
fn a_network_address_without_tls_and_tokens_is_refused() {
    let pki = Pki::new();
    let tls = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        pki.path("server.pem").display().to_string(),
        pki.path("server.key").display().to_string(),
    );
    let listen = "listen = \"0.0.0.0:0\"\n";
    let cases: [BindCase; 5] = [
        ("--listen 0.0.0.0:0", &["--listen", "0.0.0.0:0"], &[], None),
        ("--listen [::]:0", &["--listen", "[::]:0"], &[], None),
        (
            "AUDITLOG_LISTEN",
            &[],
            &[("AUDITLOG_LISTEN", "0.0.0.0:0")],
            None,
        ),
        (
            "tokens without TLS",
            &[],
            &[],
            Some(format!("{listen}{}", tokens_toml())),
        ),
        (
            "TLS without tokens",
            &[],
            &[],
            Some(format!("{listen}{tls}")),
        ),
    ];
    let mut wrong = Vec::new();
    for (how, flags, env, config) in cases {
        let work = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = flags.iter().map(|s| (*s).to_owned()).collect();
        if let Some(config) = config {
            std::fs::write(work.path().join("auditlog.toml"), config).unwrap();
            args.extend(["--config".into(), "auditlog.toml".into()]);
        }
        args.extend(["--data-dir".into(), "data".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = Spawned::start(work.path(), &args, env);
        let Some(code) = server.exit_code() else {
            server.kill();
            wrong.push(format!("{how}: the server started; it must refuse"));
            continue;
        };
        let err = server.stderr();
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        if code == 0 {
            wrong.push(format!("{how}: exit 0"));
        }
        if lines.len() != 1 || !err.contains("listen") || !err.contains("allow_insecure") {
            wrong.push(format!(
                "{how}: expected one line naming `listen` and `allow_insecure`, got {err:?}"
            ));
        }
        if work.path().join("data").exists() {
            wrong.push(format!(
                "{how}: a refused server created its data directory"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_insecure_serves_a_network_address_with_a_warning_on_stderr() {
    let work = tempfile::tempdir().unwrap();
    let port = free_port("0.0.0.0");
    let listen = format!("0.0.0.0:{port}");
    let mut server = Spawned::start(
        work.path(),
        &["--listen", &listen, "--data-dir", "data"],
        &[("AUDITLOG_ALLOW_INSECURE", "true")],
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    server.wait_serving(addr, None).await;
    // Open, as configured: no token needed.
    let ch = channel(addr, None).await.unwrap();
    call(&ch, "AuditService/GetStats", None).await.unwrap();
    server.kill();
    let (out, err) = (server.stdout(), server.stderr());
    let on_stdout = if out.contains("allow_insecure") {
        "; it went to stdout instead (the server's tracing subscriber writes to stdout)"
    } else {
        ""
    };
    assert!(
        err.contains("allow_insecure"),
        "no warning naming allow_insecure on stderr{on_stdout}\nstderr: {err:?}\nstdout: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_tokens_serve_a_network_address_without_a_warning() {
    let pki = Pki::new();
    let work = tempfile::tempdir().unwrap();
    let port = free_port("0.0.0.0");
    let config = format!(
        "listen = \"0.0.0.0:{port}\"\ndata_dir = \"data\"\n\n[tls]\ncert_file = {:?}\n\
         key_file = {:?}\n\n{}",
        pki.path("server.pem").display().to_string(),
        pki.path("server.key").display().to_string(),
        tokens_toml()
    );
    std::fs::write(work.path().join("auditlog.toml"), config).unwrap();
    let mut server = Spawned::start(work.path(), &["--config", "auditlog.toml"], &[]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    server.wait_serving(addr, Some(pki.client_tls(None))).await;
    let ch = channel(addr, Some(pki.client_tls(None))).await.unwrap();
    let refused = call(&ch, "AuditService/GetStats", None).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let reader = Some(format!("Bearer {}", READER.secret));
    call(&ch, "AuditService/GetStats", reader).await.unwrap();
    server.kill();
    let logs = format!("{}{}", server.stdout(), server.stderr());
    assert!(
        !logs.contains("allow_insecure"),
        "a server with TLS and tokens warned about allow_insecure:\n{logs}"
    );
}

/// The log holds what callers record about people: a data directory the
/// server makes is its owner's alone, whatever the umask; one that other
/// users can enter is served, with a warning saying how to close it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_data_directory_is_private_and_an_open_one_is_warned_about() {
    use std::os::unix::fs::PermissionsExt as _;
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("var/audit");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let start = || {
        let port = free_port("127.0.0.1");
        let listen = format!("127.0.0.1:{port}");
        let server = Spawned::start(
            work.path(),
            &["--listen", &listen, "--data-dir", "var/audit"],
            &[],
        );
        (
            server,
            format!("127.0.0.1:{port}").parse::<SocketAddr>().unwrap(),
        )
    };

    let (mut server, addr) = start();
    server.wait_serving(addr, None).await;
    server.kill();
    assert_eq!(mode(&data), 0o700, "the data directory the server made");
    let logs = format!("{}{}", server.stdout(), server.stderr());
    assert!(
        !logs.contains("chmod"),
        "a private directory was warned about:\n{logs}"
    );

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut server, addr) = start();
    server.wait_serving(addr, None).await;
    server.kill();
    let logs = format!("{}{}", server.stdout(), server.stderr());
    assert!(
        logs.contains("has mode 0755: other local users can read the log")
            && logs.contains("chmod 700 var/audit"),
        "no warning naming the open mode and the chmod that closes it:\n{logs}"
    );
    assert_eq!(mode(&data), 0o755, "an existing directory is left as it is");
}
