//! A log seeded now through the API: its daily and weekly reports,
//! rendered by Chromium, show exactly its figures, hostile strings as text.

use crate::common::TestServer;
use crate::report::dom::{Metrics, elements};
use crate::report::expected::{
    check_hostile_strings_are_text, check_report, day_and_week, iso_date, seed,
};
use crate::report::running::{chromium, report};

/// The daily and the weekly report of a log seeded now, rendered by
/// Chromium, show exactly the figures of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_rendered_in_a_browser_show_the_figures_of_the_log() {
    let Some(browser) = chromium() else { return };
    let server = TestServer::start().await;
    let client = server.client().await;
    let logged = seed(&client).await;
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().join("reports");
    let dir_arg = dir.to_str().unwrap();

    // The day (and week) of the first event; events that a midnight between
    // them pushed into the next day are simply outside the period.
    let day = logged[0].at.date();
    let day_arg = iso_date(day);
    let daily = report(
        &server.url,
        &["report", "--daily", "--date", &day_arg, "--output", dir_arg],
    )
    .await;
    assert_eq!(
        daily.file_name().unwrap().to_str().unwrap(),
        format!("auditlog-daily-{day_arg}.html")
    );
    let weekly = report(
        &server.url,
        &[
            "report",
            "--weekly",
            "--week-of",
            &day_arg,
            "--output",
            dir_arg,
        ],
    )
    .await;
    let (iso_year, iso_week, _) = day.to_iso_week_date();
    assert_eq!(
        weekly.file_name().unwrap().to_str().unwrap(),
        format!("auditlog-weekly-{iso_year:04}-W{iso_week:02}.html")
    );

    let [day_span, week_span] = day_and_week(day);
    let daily_dom = check_report(&browser, "daily", &daily, &logged, day_span).await;
    let weekly_dom = check_report(&browser, "weekly", &weekly, &logged, week_span).await;
    let cases = [
        ("daily", daily_dom, day_arg),
        (
            "weekly",
            weekly_dom,
            format!("{iso_year:04}-W{iso_week:02}"),
        ),
    ];
    for (name, dom, label) in cases {
        check_hostile_strings_are_text(name, &dom);
        let m = Metrics::of(&elements(&dom));
        assert_eq!(m.all("period").into_keys().collect::<Vec<_>>(), vec![label]);
    }
}
