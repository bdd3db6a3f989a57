//! `query`: filters, ordering, limits and pagination.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_filters_orders_and_limits() {
    let server = TestServer::start().await;
    let samples = query_samples();
    log_samples(&server.client().await, &samples).await;
    let all = expect_newest_first(&samples, |_| true);

    // Default: every event, newest first, each as the log has it.
    let out = auditlog(&server, &["--json", "query"]).await;
    let page = out.json();
    assert_eq!(seqs(&page["events"]), all, "{out:?}");
    assert_eq!(page["next_page_token"], "", "{out:?}");
    let records = disk_records(&server);
    let events = page["events"].as_array().unwrap();
    for (e, record) in events.iter().rev().zip(&records) {
        assert_same_event(record, e, "query --json");
    }
    // Timestamps, oldest first, for the time filters below.
    let ts: Vec<String> = records
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap().to_owned())
        .collect();

    let cases: Vec<(Vec<&str>, Vec<u64>)> = vec![
        (
            vec!["--type", "email_sent"],
            expect_newest_first(&samples, |s| s.event_type == "email_sent"),
        ),
        (
            vec!["--type", "email_sent", "--type", "error"],
            expect_newest_first(&samples, |s| {
                s.event_type == "email_sent" || s.event_type == "error"
            }),
        ),
        (
            vec!["--lead", "L2"],
            expect_newest_first(&samples, |s| s.lead == "L2"),
        ),
        (
            vec!["--workflow", "onboarding"],
            expect_newest_first(&samples, |s| s.workflow == "onboarding"),
        ),
        (
            vec!["--actor", "mailer"],
            expect_newest_first(&samples, |s| s.actor == "mailer"),
        ),
        (
            vec!["--type", "error", "--workflow", "sales"],
            expect_newest_first(&samples, |s| {
                s.event_type == "error" && s.workflow == "sales"
            }),
        ),
        (vec!["--limit", "3"], all[..3].to_vec()),
        (vec!["--oldest-first", "--limit", "3"], vec![1, 2, 3]),
        (
            vec!["--oldest-first", "--lead", "L1"],
            expect_newest_first(&samples, |s| s.lead == "L1")
                .into_iter()
                .rev()
                .collect(),
        ),
        // Dates (midnight UTC) and RFC 3339.
        (
            vec!["--since", "2000-01-01", "--until", "2999-12-31"],
            all.clone(),
        ),
        (vec!["--since", "2999-01-01"], vec![]),
        (vec!["--until", "2000-01-01"], vec![]),
        (vec!["--since", "2000-01-01T00:00:00Z"], all.clone()),
        (vec!["--last", "1h"], all.clone()),
        (
            vec!["--last", "1h", "--type", "error"],
            expect_newest_first(&samples, |s| s.event_type == "error"),
        ),
    ];
    for (args, want) in cases {
        let mut full = vec!["--json", "query"];
        full.extend(&args);
        let out = auditlog(&server, &full).await;
        assert_eq!(query_seqs(&out), want, "query {args:?}: {out:?}");
    }

    // --since is inclusive and --until exclusive, at the events' own times.
    let (since, until) = (&ts[2], &ts[5]);
    let want: Vec<u64> = (1..=ts.len() as u64)
        .rev()
        .filter(|&s| {
            let t = &ts[s as usize - 1];
            t >= since && t < until
        })
        .collect();
    assert!(want.contains(&3) && !want.contains(&6), "{ts:?}");
    let out = auditlog(
        &server,
        &["--json", "query", "--since", since, "--until", until],
    )
    .await;
    assert_eq!(query_seqs(&out), want, "{out:?}");

    // A date is midnight UTC: --since DATE keeps that day on, --until DATE
    // the days before it (computed from the events' own times, so the test
    // holds across midnight).
    for date in [&ts[0][..10], &ts[ts.len() - 1][..10]] {
        let on_or_after: Vec<u64> = (1..=ts.len() as u64)
            .rev()
            .filter(|&s| ts[s as usize - 1].as_str() >= date)
            .collect();
        let before: Vec<u64> = (1..=ts.len() as u64)
            .rev()
            .filter(|&s| ts[s as usize - 1].as_str() < date)
            .collect();
        let out = auditlog(&server, &["--json", "query", "--since", date]).await;
        assert_eq!(query_seqs(&out), on_or_after, "--since {date}: {out:?}");
        let out = auditlog(&server, &["--json", "query", "--until", date]).await;
        assert_eq!(query_seqs(&out), before, "--until {date}: {out:?}");
    }

    // Text: a table, newest first; --verbose adds the details column.
    let out = auditlog(&server, &["query", "--limit", "3"]).await;
    let header = out.ok().lines().next().unwrap();
    for col in ["TIME", "SEQ", "TYPE", "LEAD", "WORKFLOW", "ACTOR"] {
        assert!(header.contains(col), "{out:?}");
    }
    assert!(!header.contains("DETAILS"), "{out:?}");
    let rows = table_rows(&out.stdout);
    let seq_col: Vec<&str> = rows.iter().map(|r| r[1]).collect();
    assert_eq!(seq_col, ["8", "7", "6"], "{out:?}");
    assert_eq!(
        rows[0][2..],
        ["crm_update", "L2", "sales", "crm"],
        "{out:?}"
    );
    assert!(!out.stdout.contains("sample 8"), "{out:?}");

    let out = auditlog(
        &server,
        &["query", "--oldest-first", "--verbose", "--lead", "L1"],
    )
    .await;
    assert!(
        out.ok().lines().next().unwrap().contains("DETAILS"),
        "{out:?}"
    );
    let rows = table_rows(&out.stdout);
    assert_eq!(rows.len(), 3, "{out:?}");
    let first = out.stdout.lines().nth(1).unwrap();
    assert!(first.contains(r#""note":"sample 1""#), "{out:?}");
    assert!(first.contains(r#""n":1"#), "{out:?}");

    // No match: success, nothing on stdout but a note.
    let out = auditlog(&server, &["query", "--lead", "NOBODY"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(table_rows(&out.stdout).is_empty(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_pages_through_next_page_token() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let events = (1..=7).map(|i| NewEvent::new("crm_update").lead(format!("P-{i}")));
    client.log_batch(events).await.unwrap();

    // JSON: follow next_page_token to the end.
    let mut got = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let mut args = vec!["--json", "query", "--limit", "3"];
        if !token.is_empty() {
            args.extend(["--page-token", token.as_str()]);
        }
        let page = auditlog(&server, &args).await.json();
        let page_seqs = seqs(&page["events"]);
        assert!(page_seqs.len() <= 3, "{page}");
        got.extend(page_seqs);
        token = page["next_page_token"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert!(token.is_empty(), "pagination did not end");
    assert_eq!(got, [7, 6, 5, 4, 3, 2, 1]);

    // Oldest first, pages too.
    let first = auditlog(
        &server,
        &["--json", "query", "--limit", "4", "--oldest-first"],
    )
    .await
    .json();
    assert_eq!(seqs(&first["events"]), [1, 2, 3, 4]);
    let token = first["next_page_token"].as_str().unwrap();
    assert!(!token.is_empty(), "{first}");
    let second = auditlog(
        &server,
        &[
            "--json",
            "query",
            "--limit",
            "4",
            "--oldest-first",
            "--page-token",
            token,
        ],
    )
    .await
    .json();
    assert_eq!(seqs(&second["events"]), [5, 6, 7]);

    // Text: the next page's token is printed on stderr, and works.
    let out = auditlog(&server, &["query", "--limit", "5"]).await;
    let rows = table_rows(out.ok());
    assert_eq!(
        rows.iter().map(|r| r[1]).collect::<Vec<_>>(),
        ["7", "6", "5", "4", "3"]
    );
    let token = word_after(&out.stderr, "--page-token").to_owned();
    let out = auditlog(&server, &["query", "--limit", "5", "--page-token", &token]).await;
    let rows = table_rows(out.ok());
    assert_eq!(rows.iter().map(|r| r[1]).collect::<Vec<_>>(), ["2", "1"]);
    assert!(!out.stderr.contains("--page-token"), "{out:?}");
}

/// `--limit` past the server's page of 1,000: the CLI pages by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_pages_by_itself_up_to_the_limit() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for part in 0..5u64 {
        let events = (0..500).map(|i| NewEvent::new("crm_update").detail("i", part * 500 + i));
        client.log_batch(events).await.unwrap();
    }

    let page = auditlog(&server, &["--json", "query", "--limit", "2200"])
        .await
        .json();
    let got = seqs(&page["events"]);
    assert_eq!(got, (301..=2500).rev().collect::<Vec<u64>>());
    // The token continues right after the last event shown.
    let token = page["next_page_token"].as_str().unwrap();
    assert!(!token.is_empty(), "{}", page["next_page_token"]);
    let rest = auditlog(
        &server,
        &["--json", "query", "--limit", "10000", "--page-token", token],
    )
    .await;
    assert_eq!(query_seqs(&rest), (1..=300).rev().collect::<Vec<u64>>());

    // Text: one table of every event, and no next page to offer.
    let out = auditlog(&server, &["query", "--limit", "10000", "--oldest-first"]).await;
    let rows = table_rows(out.ok());
    assert_eq!(rows.len(), 2500, "{}", out.stderr);
    assert_eq!(rows[0][1], "1");
    assert_eq!(rows[2499][1], "2500");
    assert!(!out.stderr.contains("--page-token"), "{}", out.stderr);
}

/// Events too large for 100 of them to fit one gRPC message (4 MiB): the
/// server sends shorter pages and `query --limit 100` and `history` follow
/// their tokens to every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_history_of_large_events_print_them_all() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut logged = Vec::new();
    for part in 0..10u64 {
        let events = (0..10).map(|i| {
            NewEvent::new("big")
                .lead("BIG")
                .detail("i", part * 10 + i)
                .detail("blob", "x".repeat(60 * 1024))
        });
        let receipts = client.log_batch(events).await.unwrap();
        logged.extend(receipts.iter().map(|r| r.seq));
    }
    let newest_first: Vec<u64> = logged.iter().rev().copied().collect();

    let page = auditlog(
        &server,
        &["--json", "query", "--type", "big", "--limit", "100"],
    )
    .await
    .json();
    assert_eq!(seqs(&page["events"]), newest_first);
    assert_eq!(page["next_page_token"], "");
    let out = auditlog(
        &server,
        &["--json", "query", "--limit", "100", "--oldest-first"],
    )
    .await;
    assert_eq!(query_seqs(&out), logged);
    // Fewer than are logged: the token continues after the last one shown.
    let page = auditlog(&server, &["--json", "query", "--limit", "70"])
        .await
        .json();
    assert_eq!(seqs(&page["events"]), newest_first[..70]);
    let token = page["next_page_token"].as_str().unwrap();
    let rest = auditlog(&server, &["--json", "query", "--page-token", token]).await;
    assert_eq!(query_seqs(&rest), newest_first[70..]);

    let history = auditlog(&server, &["--json", "history", "BIG"])
        .await
        .json();
    assert_eq!(seqs(&history["events"]), logged);
    assert_eq!(history["next_page_token"], "");
    let out = auditlog(&server, &["history", "BIG"]).await;
    assert_eq!(table_rows(out.ok()).len(), 100, "{}", out.stderr);
}
