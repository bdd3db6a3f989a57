//! `auditlog report` as a reader sees it: the CLI binary writes the daily
//! and weekly HTML reports from a real server, Debian's Chromium renders
//! them headless, and the figures are read back from the rendered DOM
//! (`data-metric` attributes) and compared with what the test logged:
//! totals, counts per type, workflow and error type, the lead funnel and its
//! rates, the timeline bucket by bucket, performance percentiles, the latest
//! errors and recent events. Hostile strings in the log must come out as
//! text, never as markup; the page must fetch nothing. Screenshots go to
//! `target/report-screenshots/` for a person to look at.
//!
//! Without `/usr/bin/chromium` the rendering tests print why they did not
//! run, unless `REQUIRE_CHROMIUM=1` (CI), where that is a failure.
//! The CLI's argument errors are checked without a browser.
//!
//! One file per concern. Shared: running the CLI and the browser
//! (`running.rs`), reading the rendered DOM (`dom.rs`), and what a test
//! logged with what the report should therefore say (`expected.rs`). The
//! tests: a log seeded now, rendered (`rendered.rs`); a log written over a
//! past week (`past_week.rs`); every kind of report from one command
//! (`every_kind.rs`); defaults and argument errors (`arguments.rs`); and
//! `report --mail` (`mail.rs`).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod arguments;
mod dom;
mod every_kind;
mod expected;
mod mail;
mod past_week;
mod rendered;
mod running;

use std::time::Duration;

/// How long one run of the CLI or the browser may take before the test fails
/// as a hang (a deadline, not a timing assertion).
const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// A URL where nothing listens.
const DEAD_URL: &str = "http://127.0.0.1:1";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Strings that would be markup if the report did not escape them.
const HOSTILE_WORKFLOW: &str = "<script>alert(\"wf\")</script>";
const HOSTILE_ACTOR: &str = "<img src=x onerror=alert(1)>";
const HOSTILE_LEAD: &str = "\"><svg onload=alert(2)>";
const HOSTILE_ERROR_TYPE: &str = "<b onmouseover=alert(3)>Bold</b>";
const HOSTILE_MESSAGE: &str = "</td></tr></table><script>alert(4)</script><a href=http://x>";
