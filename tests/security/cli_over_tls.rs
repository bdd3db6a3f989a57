//! The CLI reaches the server binary over TLS with a token (flag or
//! environment), and no token is ever in its output or the server's.

use std::net::SocketAddr;

use crate::common::{Pki, TEST_KEY};
use crate::security::binaries::{Spawned, cli, free_port};
use crate::security::tokens::{ADMIN, ALL_TOKENS, READER, UNKNOWN_SECRET, WRITER, tokens_toml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_a_tls_server_with_a_token_and_no_token_is_ever_logged() {
    let pki = Pki::new();
    let work = tempfile::tempdir().unwrap();
    let port = free_port("127.0.0.1");
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = {:?}\nhmac_key = {TEST_KEY:?}\n\n\
         [tls]\ncert_file = {:?}\nkey_file = {:?}\n\n{}",
        work.path().join("data").display().to_string(),
        pki.path("server.pem").display().to_string(),
        pki.path("server.key").display().to_string(),
        tokens_toml()
    );
    let config_path = work.path().join("auditlog.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut server = Spawned::start(
        work.path(),
        &["--config", config_path.to_str().unwrap()],
        // Debug, so a token that reached any log line would show.
        &[("RUST_LOG", "debug")],
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    server.wait_serving(addr, Some(pki.client_tls(None))).await;

    let url = format!("https://localhost:{port}");
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let base = ["--server", url.as_str(), "--ca-cert", ca];
    let with = |rest: &[&str]| -> Vec<String> {
        base.iter()
            .chain(rest)
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, env: &[(&str, &str)]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args, env)
    };

    let (code, out, err) = run(
        with(&[
            "--token",
            WRITER.secret,
            "log",
            "cli_check",
            "--lead",
            "L-1",
        ]),
        &[],
    );
    assert_eq!(code, 0, "log over TLS with a writer token: {out}{err}");

    let (code, out, err) = run(with(&["--token", READER.secret, "stats"]), &[]);
    assert_eq!(code, 0, "stats over TLS with a reader token: {out}{err}");
    let events = out.lines().find_map(|l| l.strip_prefix("events:"));
    assert_eq!(events.map(str::trim), Some("1"), "{out}");

    // The token from the environment.
    let (code, out, err) = run(
        with(&["--json", "stats"]),
        &[("AUDITLOG_TOKEN", ADMIN.secret)],
    );
    assert_eq!(code, 0, "stats with AUDITLOG_TOKEN: {out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["total_events"], 1, "{out}");

    // Refusals: one line on stderr, a non-zero exit, no token.
    let mut wrong = Vec::new();
    let secrets = [WRITER.secret, READER.secret, ADMIN.secret, UNKNOWN_SECRET];
    for (what, args, expect) in [
        ("no token", with(&["stats"]), "UNAUTHENTICATED"),
        (
            "unknown token",
            with(&["--token", UNKNOWN_SECRET, "stats"]),
            "UNAUTHENTICATED",
        ),
        (
            "reader rotating",
            with(&["--token", READER.secret, "rotate"]),
            "PERMISSION_DENIED",
        ),
        (
            "no --ca-cert",
            vec![
                "--server".into(),
                url.clone(),
                "--token".into(),
                READER.secret.into(),
                "stats".into(),
            ],
            "",
        ),
        (
            "plaintext",
            vec![
                "--server".into(),
                format!("http://127.0.0.1:{port}"),
                "--token".into(),
                READER.secret.into(),
                "stats".into(),
            ],
            "",
        ),
    ] {
        let (code, out, err) = run(args, &[]);
        if code == 0 {
            wrong.push(format!("{what}: exit 0: {out}"));
        }
        if !err.contains(expect) || err.trim().is_empty() {
            wrong.push(format!("{what}: stderr does not say {expect:?}: {err:?}"));
        }
        if secrets.iter().any(|s| err.contains(s) || out.contains(s)) {
            wrong.push(format!("{what}: the output holds a token: {out}{err}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    server.kill();
    let logs = format!("{}{}", server.stdout(), server.stderr());
    for t in ALL_TOKENS {
        assert!(
            !logs.contains(t.secret),
            "the server's output holds the {} token",
            t.name
        );
    }
    assert!(!logs.contains(UNKNOWN_SECRET), "the server logged a token");
    // It does say which token was refused.
    assert!(
        logs.contains("dashboard") && logs.contains("Rotate"),
        "the server did not log the refused token's name and method:\n{logs}"
    );
}
