//! One command writes the daily, weekly, last-7-days and monthly reports,
//! `--latest` copies under stable names, and `--output x.html` one file.

use std::path::{Path, PathBuf};

use crate::common::{TestServer, with_test_key};
use crate::report::CHROMIUM;
use crate::report::dom::{Metrics, elements};
use crate::report::expected::{
    Logged, Span, check_figures, check_report, check_safe_and_self_contained, day_and_week,
};
use crate::report::past_week::{past_week, write_log};
use crate::report::running::{auditlog, report};

/// The figures of `file` as written (no browser needed: the report's own
/// markup parses like the serialised DOM), checked against `logged`.
fn check_written(name: &str, file: &Path, logged: &[Logged], span: Span) -> String {
    let html = std::fs::read_to_string(file).unwrap();
    check_safe_and_self_contained(name, &html, &html);
    check_figures(name, &html, logged, span.0, span.1);
    html
}

/// The span of the seven days ending with `last`, and of its month.
fn seven_days_and_month(last: time::Date) -> [Span; 2] {
    let end = (last + time::Duration::DAY).midnight().assume_utc();
    let first = last.replace_day(1).unwrap().midnight().assume_utc();
    let next_month = time::Date::from_calendar_date(last.year(), last.month().next(), 1)
        .unwrap()
        .midnight()
        .assume_utc();
    [
        ((end - time::Duration::WEEK, end), time::Duration::DAY),
        ((first, next_month), time::Duration::DAY),
    ]
}

/// One command makes the daily, weekly, last-7-days and monthly reports of
/// one date, each showing the figures of its own period with the timing
/// samples counted apart from the business event types; `--latest` keeps
/// a dated-free copy per kind that the next run replaces; `--output
/// x.html` writes that file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_writes_every_kind_and_a_stable_name() {
    let data = tempfile::tempdir().unwrap();
    let logged = write_log(&data.path().join("audit.log"), &past_week());
    let server = TestServer::start_in(data.path(), with_test_key).await;
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().join("dash");
    let dir_arg = dir.to_str().unwrap();
    let args = [
        "report",
        "--daily",
        "--weekly",
        "--last-7-days",
        "--monthly",
        "--date",
        "2026-11-11",
        "--latest",
        "--output",
        dir_arg,
    ];
    let out = auditlog(&server.url, &args).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let names = [
        "auditlog-daily-2026-11-11.html",
        "auditlog-daily-latest.html",
        "auditlog-weekly-2026-W46.html",
        "auditlog-weekly-latest.html",
        "auditlog-last-7-days-2026-11-11.html",
        "auditlog-last-7-days-latest.html",
        "auditlog-monthly-2026-11.html",
        "auditlog-monthly-latest.html",
    ];
    let printed: Vec<PathBuf> = out.stdout.lines().map(PathBuf::from).collect();
    assert_eq!(
        printed,
        names.iter().map(|n| dir.join(n)).collect::<Vec<_>>(),
        "{out:?}"
    );
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    expected.sort();
    assert_eq!(on_disk, expected);

    let wednesday = time::macros::date!(2026 - 11 - 11);
    let [day, week] = day_and_week(wednesday);
    let [seven, month] = seven_days_and_month(wednesday);
    let cases = [
        ("daily", day, "2026-11-11"),
        ("weekly", week, "2026-W46"),
        ("last-7-days", seven, "2026-11-05..2026-11-11"),
        ("monthly", month, "2026-11"),
    ];
    // Rendered too where Chromium is installed (the other tests require it
    // under REQUIRE_CHROMIUM=1).
    let browser = Path::new(CHROMIUM)
        .exists()
        .then(|| PathBuf::from(CHROMIUM));
    for (i, (kind, span, label)) in cases.into_iter().enumerate() {
        let html = check_written(kind, &printed[2 * i], &logged, span);
        if let Some(browser) = &browser {
            let name = format!("all-{kind}");
            check_report(browser, &name, &printed[2 * i], &logged, span).await;
        }
        let m = Metrics::of(&elements(&html));
        assert_eq!(
            m.all("period").into_keys().collect::<Vec<_>>(),
            vec![label],
            "{kind}"
        );
        // The timing samples are there, but not among the event types.
        assert!(m.count("performance-events", "") > 0, "{kind}");
        assert!(
            !m.counts("type-count").contains_key("performance"),
            "{kind}"
        );
        let latest = std::fs::read_to_string(&printed[2 * i + 1]).unwrap();
        assert_eq!(latest, html, "{kind}: the latest copy differs");
    }

    // The next day's run replaces the latest daily copy.
    let out = auditlog(
        &server.url,
        &[
            "report",
            "--daily",
            "--date",
            "2026-11-12",
            "--latest",
            "--output",
            dir_arg,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let latest = std::fs::read_to_string(dir.join("auditlog-daily-latest.html")).unwrap();
    let m = Metrics::of(&elements(&latest));
    assert_eq!(
        m.all("period").into_keys().collect::<Vec<_>>(),
        vec!["2026-11-12"]
    );
    let [day12, _] = day_and_week(time::macros::date!(2026 - 11 - 12));
    check_figures("latest", &latest, &logged, day12.0, day12.1);

    // `--output x.html` is the file, in a directory made for it.
    let file = out_dir.path().join("new").join("x.html");
    let written = report(
        &server.url,
        &[
            "report",
            "--monthly",
            "--date",
            "2026-11-30",
            "--output",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(written, file);
    check_written("x.html", &file, &logged, month);
    let files: Vec<_> = std::fs::read_dir(file.parent().unwrap()).unwrap().collect();
    assert_eq!(files.len(), 1, "{files:?}");
}
