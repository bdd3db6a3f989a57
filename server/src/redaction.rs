//! How a configured URL is shown in log lines, statuses and error texts:
//! without the parts that commonly hold a credential. Slack and Discord
//! incoming-webhook URLs carry theirs in the path; other URLs in the user
//! info (`https://user:pass@host`) or in the query string (`?token=...`).
//!
//! [`url`] is the one printed form of a configured URL: scheme, host and
//! port stay (so an operator can tell which endpoint failed), the user info
//! and every query value become `<redacted>`, and so does the path when the
//! whole URL is a secret (the alert channels'). [`scrub`] cleans an error
//! text from sending to a URL: whatever the error's source chain says, the
//! URL and its secret parts are replaced. Senders also strip the URL from a
//! `reqwest::Error` (`without_url`) before they print it, so [`scrub`] is the
//! second of two guards, not the only one.
//!
//! Invariant: no log line, status or error text holds a configured alert
//! or webhook URL whole, its password, or a value of its query string.

use std::fmt::Write as _;

/// What of a URL's path may be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathIs {
    /// The whole URL is the credential (Slack, Discord, the alert webhook):
    /// the path is hidden.
    Secret,
    /// An endpoint whose path names it (an outgoing webhook): the path is
    /// shown.
    Shown,
}

/// What is printed in place of a secret part.
const REDACTED: &str = "<redacted>";
/// Pieces shorter than this are not searched for in error texts: a short
/// value ("1", "en") would garble the text, and is no credential.
const MIN_PIECE: usize = 6;

/// `raw` as it may be printed.
pub(crate) fn url(raw: &str, path: PathIs) -> String {
    let Ok(parsed) = reqwest::Url::parse(raw) else {
        return format!("{REDACTED} (not a valid URL)");
    };
    let mut out = format!("{}://", parsed.scheme());
    if !parsed.username().is_empty() || parsed.password().is_some() {
        out.push_str(REDACTED);
        out.push('@');
    }
    out.push_str(parsed.host_str().unwrap_or_default());
    if let Some(port) = parsed.port() {
        let _ = write!(out, ":{port}");
    }
    match path {
        PathIs::Secret if parsed.path() != "/" => {
            out.push('/');
            out.push_str(REDACTED);
        }
        PathIs::Secret => out.push('/'),
        PathIs::Shown => out.push_str(parsed.path()),
    }
    if let Some(query) = parsed.query() {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) => format!("{name}={REDACTED}"),
                None => REDACTED.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if parsed.fragment().is_some() {
        out.push('#');
        out.push_str(REDACTED);
    }
    out
}

/// `text` (an error from sending to `raw`) with the URL and its secret
/// parts replaced.
pub(crate) fn scrub(text: &str, raw: &str, path: PathIs) -> String {
    let shown = url(raw, path);
    let mut out = text.replace(raw, &shown);
    let Ok(parsed) = reqwest::Url::parse(raw) else {
        return out;
    };
    // The URL as reqwest prints it (normalised: a trailing `/`, escapes).
    out = out.replace(parsed.as_str(), &shown);
    let mut pieces: Vec<String> = vec![parsed.username().to_owned()];
    pieces.extend(parsed.password().map(str::to_owned));
    pieces.extend(parsed.query_pairs().map(|(_, value)| value.into_owned()));
    pieces.extend(parsed.query().map(str::to_owned));
    pieces.extend(parsed.fragment().map(str::to_owned));
    if path == PathIs::Secret && parsed.path() != "/" {
        pieces.push(parsed.path().to_owned());
    }
    // The longest first, so a piece inside another is not left half done.
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for piece in pieces.iter().filter(|p| p.len() >= MIN_PIECE) {
        out = out.replace(piece.as_str(), REDACTED);
    }
    out
}

/// An error and its sources, one after the other (`a: b: c`), as one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A `reqwest` error as one line, without the URL it was sending to.
pub(crate) fn send_error(error: reqwest::Error, raw: &str, path: PathIs) -> String {
    scrub(&error_chain(&error.without_url()), raw, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_and_discord_paths_are_hidden() {
        let slack = "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXX";
        assert_eq!(
            url(slack, PathIs::Secret),
            "https://hooks.slack.com/<redacted>"
        );
        let discord = "https://discord.com/api/webhooks/123/abcdefABCDEF";
        assert_eq!(
            url(discord, PathIs::Secret),
            "https://discord.com/<redacted>"
        );
    }

    #[test]
    fn user_info_and_query_values_are_hidden_and_the_rest_shown() {
        assert_eq!(
            url(
                "http://bob:hunter22@127.0.0.1:8080/hooks/crm?token=abc123456&v=2#frag",
                PathIs::Shown
            ),
            "http://<redacted>@127.0.0.1:8080/hooks/crm?token=<redacted>&v=<redacted>#<redacted>"
        );
        assert_eq!(
            url("https://example.com/a?SECRETSECRET", PathIs::Shown),
            "https://example.com/a?<redacted>"
        );
        assert_eq!(
            url("https://example.com", PathIs::Secret),
            "https://example.com/"
        );
        assert!(!url("not a url hunter22", PathIs::Shown).contains("hunter22"));
    }

    #[test]
    fn scrub_removes_the_url_and_each_secret_part() {
        let raw = "http://bob:hunter22@127.0.0.1:9/services/T0/B0/XXXXXXXX?token=tok123456";
        let text = format!(
            "error sending request for url ({raw}): the password was hunter22, the token \
             tok123456, the path /services/T0/B0/XXXXXXXX"
        );
        let clean = scrub(&text, raw, PathIs::Secret);
        for secret in ["hunter22", "tok123456", "XXXXXXXX", "services"] {
            assert!(!clean.contains(secret), "{secret} in {clean}");
        }
        assert!(clean.contains("127.0.0.1:9"), "{clean}");
    }
}
