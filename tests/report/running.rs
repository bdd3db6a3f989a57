//! Running the CLI and the browser: `auditlog` (and its report command)
//! against a server, and headless Chromium's rendered DOM and screenshots.

use std::path::{Path, PathBuf};

use crate::common::{cli_bin, run_to_end};
use crate::report::{CHROMIUM, RUN_DEADLINE};

use crate::common::Finished as Output;

/// Runs `program ARGS` to its end, failing the test if it hangs.
async fn run(program: PathBuf, args: Vec<String>) -> Output {
    run_to_end(program, args, Vec::new(), RUN_DEADLINE).await
}

/// Runs `auditlog --server URL ARGS`.
pub(crate) async fn auditlog(url: &str, args: &[&str]) -> Output {
    let mut all = vec!["--server".to_owned(), url.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    run(cli_bin().to_path_buf(), all).await
}

/// Runs the report command and returns the file it says it wrote.
pub(crate) async fn report(url: &str, args: &[&str]) -> PathBuf {
    let out = auditlog(url, args).await;
    assert_eq!(out.code, 0, "auditlog {args:?}: {out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let path = PathBuf::from(out.stdout.trim_end());
    assert!(path.is_file(), "{out:?}");
    path
}

/// Chromium, or `None` (after saying why) when it is not installed and not
/// required.
pub(crate) fn chromium() -> Option<PathBuf> {
    if Path::new(CHROMIUM).exists() {
        return Some(PathBuf::from(CHROMIUM));
    }
    assert!(
        std::env::var("REQUIRE_CHROMIUM").as_deref() != Ok("1"),
        "REQUIRE_CHROMIUM=1 but {CHROMIUM} is missing (apt-get install chromium)"
    );
    eprintln!(
        "SKIPPED: {CHROMIUM} is not installed, so the reports were not rendered \
         (apt-get install chromium; set REQUIRE_CHROMIUM=1 to make this a failure)"
    );
    None
}

/// Chromium's flags for a headless run that touches nothing outside a fresh
/// profile directory and fetches nothing on its own.
fn browser_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// The DOM of `file` after Chromium has loaded and rendered it.
pub(crate) async fn rendered_dom(browser: &Path, file: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut args = browser_args(profile.path());
    args.push("--dump-dom".into());
    args.push(format!("file://{}", file.display()));
    let out = run(browser.to_path_buf(), args).await;
    assert_eq!(out.code, 0, "chromium --dump-dom failed: {}", out.stderr);
    assert!(out.stdout.contains("</html>"), "no DOM: {out:?}");
    out.stdout
}

/// Saves a screenshot of `file` as `target/report-screenshots/NAME.png`.
pub(crate) async fn screenshot(browser: &Path, file: &Path, name: &str) {
    // Test binaries live in target/<profile>/deps.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("report-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&png);
    let profile = tempfile::tempdir().unwrap();
    let mut args = browser_args(profile.path());
    args.push(format!("--screenshot={}", png.display()));
    args.push("--window-size=1280,2400".into());
    args.push(format!("file://{}", file.display()));
    let out = run(browser.to_path_buf(), args).await;
    assert_eq!(out.code, 0, "chromium --screenshot failed: {}", out.stderr);
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "not a PNG: {}",
        png.display()
    );
    eprintln!("screenshot: {}", png.display());
}
