//! What a user gets wrong or types loosely: a server that is down, bad
//! input, `--limit`, `AUDITLOG_SERVER`, addresses and times as people type
//! them, and `--help` for every subcommand.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_is_one_line_naming_the_url() {
    cli_bin();
    let commands: &[&[&str]] = &[
        &["stats"],
        &["query"],
        &["log", "lead_ingested", "--lead", "L1"],
        &["history", "L1"],
        &["errors"],
        &["integrity"],
        &["export", "--format", "csv"],
        &["tail"],
        &["bench", "--duration", "1s", "--warmup", "0s"],
        &["--json", "stats"],
    ];
    let runs = commands.iter().map(|args| auditlog_at(DEAD_URL, args));
    for (args, out) in commands.iter().zip(futures::future::join_all(runs).await) {
        let line = out.one_line_error();
        assert!(line.contains("127.0.0.1:1"), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_line_naming_what_is_wrong() {
    let server = TestServer::start().await;
    let cases: &[(&[&str], &str)] = &[
        (&["log", "Not-Snake"], "event_type"),
        (
            &["log", "lead_ingested", "--details", "{not json"],
            "--details",
        ),
        (
            &["log", "lead_ingested", "--details", "[1, 2]"],
            "--details",
        ),
        (&["query", "--since", "yesterday"], "--since"),
        (&["query", "--until", "tomorrow"], "--until"),
        (&["query", "--last", "forever"], "--last"),
        (
            &["export", "--format", "jsonl", "--since", "yesterday"],
            "--since",
        ),
        (&["tail", "--since", "yesterday"], "--since"),
        (&["bench", "--batch", "0", "--duration", "1s"], "--batch"),
        (&["integrity", "--checkpoint", "3"], "--checkpoint"),
    ];
    let runs = cases.iter().map(|(args, _)| auditlog(&server, args));
    let mut failures = Vec::new();
    for ((args, word), out) in cases.iter().zip(futures::future::join_all(runs).await) {
        let ok = out.code != 0
            && out.stderr.lines().count() == 1
            && out.stderr.contains(word)
            && out.stdout.is_empty()
            && !has_panic_text(&out);
        if !ok {
            failures.push(format!(
                "auditlog {args:?} should fail with one line naming {word}: {out:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The server's answer names the field; nothing was written.
    let out = auditlog(&server, &["log", "Not-Snake"]).await;
    assert!(out.stderr.contains("INVALID_ARGUMENT"), "{out:?}");
    let stats = server.client().await.stats(None).await.unwrap();
    assert_eq!(stats.total_events, 0);

    // A usage error from the argument parser: non-zero, no panic.
    let out = auditlog(&server, &["export", "--format", "xml"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert_no_panic(&out);
    assert!(out.stderr.contains("xml"), "{out:?}");
}

/// `--limit` is at least 1: 0 is an error naming the limit, not some other
/// number of events; a limit past the server's page of 1,000 works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_of_0_is_rejected_and_any_other_works() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .log_batch((0..120).map(|i| NewEvent::error("E", &format!("error {i}"))))
        .await
        .unwrap();
    let cases: &[&[&str]] = &[&["query", "--limit", "0"], &["errors", "--limit", "0"]];
    let runs = cases.iter().map(|args| auditlog(&server, args));
    let mut failures = Vec::new();
    for (args, out) in cases.iter().zip(futures::future::join_all(runs).await) {
        // A usage error from the argument parser may take a few lines.
        let ok = out.code != 0
            && out.stderr.contains("limit")
            && out.stdout.is_empty()
            && !has_panic_text(&out);
        if !ok {
            let rows = table_rows(&out.stdout).len();
            failures.push(format!(
                "auditlog {args:?} should fail naming the limit; got code {}, {rows} rows, stderr {:?}",
                out.code, out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The ends of the range work.
    let out = auditlog(&server, &["--json", "query", "--limit", "1"]).await;
    assert_eq!(query_seqs(&out), [120]);
    let out = auditlog(&server, &["--json", "query", "--limit", "1000"]).await;
    assert_eq!(query_seqs(&out).len(), 120);
    let out = auditlog(&server, &["--json", "errors", "--limit", "5000"]).await;
    assert_eq!(seqs(&out.json()["events"]).len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_url_comes_from_auditlog_server() {
    let server = TestServer::start().await;
    server
        .client()
        .await
        .log(NewEvent::new("crm_update"))
        .await
        .unwrap();

    let env = vec![("AUDITLOG_SERVER".to_owned(), server.url.clone())];
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let stats = run_cli(args(&["--json", "stats"]), env.clone())
        .await
        .json();
    assert_eq!(stats["total_events"], 1, "{stats}");
    let out = run_cli(args(&["log", "email_sent"]), env.clone()).await;
    assert_eq!(word_after(out.ok(), "seq"), "2", "{out:?}");
    let out = run_cli(args(&["health"]), env).await;
    assert!(out.ok().contains("SERVING"), "{out:?}");

    // --server wins over the environment.
    let dead = vec![("AUDITLOG_SERVER".to_owned(), DEAD_URL.to_owned())];
    let out = run_cli(
        args(&["--server", &server.url, "--json", "stats"]),
        dead.clone(),
    )
    .await;
    assert_eq!(out.json()["total_events"], 2, "{out:?}");
    // And a dead server from the environment is the one reported.
    let out = run_cli(args(&["stats"]), dead).await;
    assert!(out.one_line_error().contains("127.0.0.1:1"), "{out:?}");
}

/// `--server HOST:PORT` without a scheme is http://, and `--help` says
/// how times without a zone are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_and_times_as_people_type_them() {
    let server = TestServer::start().await;
    server
        .client()
        .await
        .log(NewEvent::new("crm_update"))
        .await
        .unwrap();
    let bare = server.url.strip_prefix("http://").unwrap();
    let out = auditlog_at(bare, &["--json", "stats"]).await;
    assert_eq!(out.json()["total_events"], 1, "{out:?}");
    let out = auditlog_at(bare, &["health"]).await;
    assert!(out.ok().contains("SERVING"), "{out:?}");

    let out = auditlog_at(bare, &["--json", "query", "--since", "2000-01-01T00:00:00"]).await;
    assert_eq!(query_seqs(&out), [1]);
    let out = auditlog_at(bare, &["--json", "query", "--until", "2000-01-01 00:00:00"]).await;
    assert_eq!(query_seqs(&out), Vec::<u64>::new());

    let help = run_cli(vec!["--help".to_owned()], Vec::new()).await;
    assert!(help.ok().contains("without a zone"), "{help:?}");
    for sub in ["query", "stats", "errors"] {
        let help = run_cli(vec![sub.to_owned(), "--help".to_owned()], Vec::new()).await;
        assert!(help.ok().contains("read as UTC"), "{sub}: {help:?}");
    }
}

/// `log error` without `error_type` or `error_message` is logged, with a
/// warning saying what `errors` will miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_without_type_or_message_is_logged_with_a_warning() {
    let server = TestServer::start().await;
    let out = auditlog(
        &server,
        &["log", "error", "--details", r#"{"error_type":"Timeout"}"#],
    )
    .await;
    out.ok();
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("error_message"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("error_type or"), "{out:?}");
    let out = auditlog(&server, &["log", "error"]).await;
    out.ok();
    assert!(
        out.stderr.contains("error_type or error_message"),
        "{out:?}"
    );
    let out = auditlog(
        &server,
        &[
            "log",
            "error",
            "--details",
            r#"{"error_type":"T","error_message":"m"}"#,
        ],
    )
    .await;
    assert_eq!(out.ok().lines().count(), 2, "{out:?}");
    assert_eq!(out.stderr, "", "{out:?}");
    let all = auditlog(&server, &["--json", "query"]).await;
    assert_eq!(query_seqs(&all), [3, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_has_help_with_its_own_options_first_and_an_example() {
    // The subcommands the top-level help lists, so new ones are covered too.
    let out = run_cli(vec!["--help".to_owned()], Vec::new()).await;
    let listed: Vec<String> = out
        .ok()
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect();
    for cmd in [
        "log",
        "query",
        "history",
        "stats",
        "errors",
        "integrity",
        "export",
        "tail",
        "health",
        "bench",
    ] {
        assert!(listed.iter().any(|c| c == cmd), "{cmd} not listed: {out:?}");
    }
    let runs = listed
        .iter()
        .map(|cmd| run_cli(vec![cmd.clone(), "--help".to_owned()], Vec::new()));
    let mut failures = Vec::new();
    for (cmd, out) in listed.iter().zip(futures::future::join_all(runs).await) {
        // Its own options first, the connection flags every command takes
        // after them under their own heading.
        let own_first = match (
            out.stdout.find("Options:"),
            out.stdout.find("Global options:"),
        ) {
            (Some(own), Some(global)) => {
                own < global && out.stdout.find("--server").is_some_and(|s| s > global)
            }
            _ => false,
        };
        if out.code != 0
            || !out.stdout.contains("Example")
            || !out.stdout.contains(&format!("Usage: auditlog {cmd}"))
            || !own_first
        {
            failures.push(format!("auditlog {cmd} --help: {out:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A usage error from the argument parser is one line, like every other
/// error: what is wrong, then the help to read; no usage line that shows
/// the flags given (`--server <SERVER>`) as if they were required. Exit 1,
/// as for every bad argument (`health` documents grpc_health_probe's codes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_are_one_line_naming_the_help_to_read() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--bogus"], &["'--bogus'", "'auditlog --help'"]),
        (
            &["--server", DEAD_URL, "--bogus"],
            &["'--bogus'", "'auditlog --help'"],
        ),
        (
            &["query", "--limit", "-5"],
            &["--limit", "-5", "'auditlog query --help'"],
        ),
        (&["errors", "--limit", "-1"], &["--limit", "-1"]),
        (
            &["report"],
            &["--daily", "--monthly", "'auditlog report --help'"],
        ),
        (
            &["export", "--format", "xml"],
            &["xml", "possible values: csv, json, jsonl"],
        ),
        (
            &["--json", "subject", "export"],
            &["<IDENTIFIER>", "'auditlog subject export --help'"],
        ),
        (&["stats", "--lst", "1h"], &["'--lst'", "'--last'"]),
        (&["--server", DEAD_URL], &["requires a subcommand"]),
    ];
    let runs = cases
        .iter()
        .map(|(args, _)| run_cli(args.iter().map(|a| (*a).to_owned()).collect(), Vec::new()));
    let mut failures = Vec::new();
    for ((args, words), out) in cases.iter().zip(futures::future::join_all(runs).await) {
        let lines: Vec<&str> = out.stderr.lines().collect();
        let ok = out.code == 1
            && lines.len() == 1
            && lines[0].starts_with("auditlog: ")
            && words.iter().all(|w| lines[0].contains(w))
            && !out.stderr.contains("Usage:")
            && !out.stderr.contains("<SERVER>")
            && out.stdout.is_empty()
            && !has_panic_text(&out);
        if !ok {
            failures.push(format!(
                "auditlog {args:?} should exit 1 with one line naming {words:?}: {out:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // `auditlog` alone shows its help (on stderr: it did nothing), as
    // docs/cli.md says; `--help` is on stdout and succeeds.
    let out = run_cli(Vec::new(), Vec::new()).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("Usage: auditlog [OPTIONS] <COMMAND>"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = run_cli(vec!["--help".to_owned()], Vec::new()).await;
    assert!(
        out.ok().contains("Usage: auditlog [OPTIONS] <COMMAND>"),
        "{out:?}"
    );
}

/// A token an HTTP header cannot carry is blamed, not the URL, without
/// showing the token, and the line says what a token may hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_a_header_cannot_carry_is_blamed_not_the_url() {
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let flag = run_cli(
        args(&["--server", DEAD_URL, "--token", "bad\nsecret", "stats"]),
        Vec::new(),
    );
    let env = run_cli(
        args(&["--server", DEAD_URL, "health"]),
        vec![("AUDITLOG_TOKEN".to_owned(), "bad\u{7}secret".to_owned())],
    );
    let (flag, env) = tokio::join!(flag, env);
    for (out, what) in [(&flag, "a newline"), (&env, "U+0007")] {
        let line = out.one_line_error();
        assert!(line.contains("--token") && line.contains(what), "{out:?}");
        assert!(line.contains("printable characters"), "{out:?}");
        assert!(
            !line.contains("URL") && !line.contains("127.0.0.1"),
            "{out:?}"
        );
        assert!(!line.contains("bad") && !line.contains("secret"), "{out:?}");
    }
}

/// An empty token (an unset variable in `AUDITLOG_TOKEN=$VAR`, an empty
/// token file) is refused before connecting, naming the flag, rather than
/// sent as a bare `Bearer ` that a server with tokens refuses as missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_token_is_refused_naming_the_flag() {
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let flag = run_cli(
        args(&["--server", DEAD_URL, "--token", "", "stats"]),
        Vec::new(),
    );
    let env = run_cli(
        args(&["--server", DEAD_URL, "health"]),
        vec![("AUDITLOG_TOKEN".to_owned(), " \n".to_owned())],
    );
    let (flag, env) = tokio::join!(flag, env);
    for out in [&flag, &env] {
        let line = out.one_line_error();
        assert!(
            line.contains("--token") && line.contains("empty"),
            "{out:?}"
        );
        assert!(!line.contains("127.0.0.1"), "{out:?}");
    }
}
