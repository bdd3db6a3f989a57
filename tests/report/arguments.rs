//! The command line without a browser: the defaults (today, `--json`, an
//! empty period) and clear errors for bad arguments or a server that is down.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::common::TestServer;
use crate::report::DEAD_URL;
use crate::report::expected::iso_date;
use crate::report::running::auditlog;

/// Without a date the report is today's (UTC); `--json` prints the path and
/// the period; an empty period is a valid page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_json_output_and_an_empty_period() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let before = OffsetDateTime::now_utc().date();
    let out = auditlog(
        &server.url,
        &["--json", "report", "--daily", "--output", dir_arg],
    )
    .await;
    let after = OffsetDateTime::now_utc().date();
    assert_eq!(out.code, 0, "{out:?}");
    let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let period = value["period"].as_str().unwrap().to_owned();
    assert!(
        period == iso_date(before) || period == iso_date(after),
        "{out:?}"
    );
    assert_eq!(value["total_events"], 0);
    let path = PathBuf::from(value["path"].as_str().unwrap());
    assert_eq!(
        path,
        dir.path().join(format!("auditlog-daily-{period}.html"))
    );
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(
        html.contains("No events were logged in this period."),
        "{html}"
    );
    assert!(html.contains(r#"data-metric="total-events">0<"#), "{html}");
    // No partial file is left behind.
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");

    // Weekly for a week long past: empty, named by its ISO week.
    let out = auditlog(
        &server.url,
        &[
            "report",
            "--weekly",
            "--week-of",
            "2021-01-03",
            "--output",
            dir_arg,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .trim_end()
            .ends_with("auditlog-weekly-2020-W53.html"),
        "{out:?}"
    );
}

/// Argument mistakes: clap's errors for the flags, one clear line for a
/// bad date (before any connection), and for a server that is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let clap_errors: &[(&[&str], &str)] = &[
        (&["report", "--output", "x"], "required"),
        (&["report", "--daily", "--date"], "--date"),
    ];
    for (args, word) in clap_errors {
        let out = auditlog(DEAD_URL, args).await;
        assert_ne!(out.code, 0, "{args:?}: {out:?}");
        assert!(out.stderr.contains(word), "{args:?}: {out:?}");
        assert!(!out.stderr.contains("panicked"), "{out:?}");
    }
    // `--week-of` is another name for `--date`.
    for (flag, period) in [("--date", "--daily"), ("--week-of", "--weekly")] {
        for bad in ["2026-13-01", "2026-02-30", "28/11/2026", "tomorrow"] {
            // Against a dead URL: the date is checked before connecting.
            let out = auditlog(
                DEAD_URL,
                &["report", period, flag, bad, "--output", dir_arg],
            )
            .await;
            assert_eq!(out.code, 1, "{out:?}");
            assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
            assert!(
                out.stderr.starts_with(&format!(
                    "auditlog: invalid argument: --date \"{bad}\" is not a date; use YYYY-MM-DD"
                )),
                "{out:?}"
            );
            assert!(out.stdout.is_empty(), "{out:?}, {flag}");
        }
    }
    // One file cannot hold several reports, and names itself.
    let file_arg = dir.path().join("x.html");
    let file_arg = file_arg.to_str().unwrap();
    let usage: &[(&[&str], &str)] = &[
        (
            &["report", "--daily", "--weekly", "--output", file_arg],
            "names one file, but 2 reports were asked for; give a directory instead",
        ),
        (
            &["report", "--monthly", "--latest", "--output", file_arg],
            "--latest writes auditlog-<kind>-latest.html into a directory",
        ),
    ];
    for (args, message) in usage {
        let out = auditlog(DEAD_URL, args).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        assert!(out.stderr.contains(message), "{args:?}: {out:?}");
    }
    let out = auditlog(DEAD_URL, &["report", "--daily", "--output", dir_arg]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("127.0.0.1:1"), "{out:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // An output "directory" that is a file.
    let server = TestServer::start().await;
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = auditlog(
        &server.url,
        &["report", "--daily", "--output", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("not-a-dir"), "{out:?}");
}
