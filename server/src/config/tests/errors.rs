//! How a configuration that does not load reads to the operator: unknown
//! keys named, unreadable values named by their TOML key and source on one
//! line, the old logger's keys pointed at their new place, and the CLI's own
//! variables never taken for server configuration.

use super::*;

#[test]
fn unknown_keys_are_rejected_by_name() {
    let err = load(Some("listn = \"x\"\n"), &[], Overrides::default()).unwrap_err();
    assert!(err.contains("listn"), "{err}");
    let err = load(None, &[("DATA_DIRR", "x")], Overrides::default()).unwrap_err();
    assert!(err.contains("data_dirr"), "{err}");
}

/// A value that does not read is refused on one line naming the key as the
/// TOML file spells it and where the value came from (the flag, the
/// variable, the file), without figment's profile (`default.`), the source
/// location where a provider was added, or a Rust type name. Before, a bad
/// `--listen` ended `for key "default.listen" in
/// server/src/config/mod.rs:396:20 auditlog_server::config::Overrides`.
#[test]
fn unreadable_values_name_the_key_and_where_it_came_from_on_one_line() {
    let flag = |listen: Option<&str>, metrics: Option<&str>| Overrides {
        listen: listen.map(str::to_owned),
        metrics_listen: metrics.map(str::to_owned),
        ..Overrides::default()
    };
    /// The TOML file, the variables (`AUDITLOG_` left off), the flags and
    /// how the refusal starts.
    type Case<'a> = (
        Option<&'a str>,
        &'a [(&'a str, &'a str)],
        Overrides,
        &'a str,
    );
    let cases: &[Case<'_>] = &[
        (
            None,
            &[],
            flag(Some("nonsense"), None),
            "configuration key listen (from the --listen flag): \"nonsense\" is not an address",
        ),
        (
            None,
            &[],
            flag(None, Some("nonsense")),
            "configuration key metrics_listen (from the --metrics-listen flag): \"nonsense\"",
        ),
        (
            None,
            &[("LISTEN", "nonsense")],
            Overrides::default(),
            "configuration key listen (from AUDITLOG_LISTEN): \"nonsense\" is not an address",
        ),
        (
            None,
            &[("MAX_IN_FLIGHT", "many")],
            Overrides::default(),
            "configuration key max_in_flight (from AUDITLOG_MAX_IN_FLIGHT): invalid type: found \
             string \"many\", expected a whole number, 0 or more",
        ),
        (
            None,
            &[("ALERTS__EMAIL__PORT", "smtp")],
            Overrides::default(),
            "configuration key alerts.email.port (from AUDITLOG_ALERTS__EMAIL__PORT): invalid \
             type: found string \"smtp\", expected a whole number from 0 to 65535",
        ),
        (
            None,
            &[("DATA_DIRR", "x")],
            Overrides::default(),
            "configuration key data_dirr (from AUDITLOG_DATA_DIRR): unknown key `data_dirr`; \
             the keys here are `listen`, `data_dir`,",
        ),
        (
            Some("listen = 5\n"),
            &[],
            Overrides::default(),
            "configuration key listen (in auditlog.toml): invalid type: found signed int `5`, \
             expected a string",
        ),
        (
            Some("retention_days = \"forever\"\n"),
            &[],
            Overrides::default(),
            "configuration key retention_days (in auditlog.toml): invalid type: found string \
             \"forever\", expected a number",
        ),
        (
            Some("[alerts]\nemail = 3\n"),
            &[],
            Overrides::default(),
            "configuration key alerts.email (in auditlog.toml): invalid type: found signed int \
             `3`, expected a table",
        ),
        (
            Some("[alerts]\ncooldown_sec = 3\n"),
            &[],
            Overrides::default(),
            "configuration key alerts.cooldown_sec (in auditlog.toml): unknown key \
             `cooldown_sec`; the keys here are `rules`,",
        ),
        (
            None,
            &[("DURABILITY", "maybe")],
            Overrides::default(),
            "configuration key durability (from AUDITLOG_DURABILITY): unknown value `maybe`; \
             use `fsync` or `os_buffered`",
        ),
        (
            Some("[[tokens]]\nname = \"a\"\n"),
            &[],
            Overrides::default(),
            "configuration key tokens[0].sha256 (in auditlog.toml): is missing; it is required",
        ),
        (
            Some("webhooks = 5\n"),
            &[],
            Overrides::default(),
            "configuration key webhooks (in auditlog.toml): invalid type: found signed int `5`, \
             expected a list",
        ),
        (
            Some("[tls]\ncert_file = \"a.pem\"\n"),
            &[],
            Overrides::default(),
            "configuration key tls.key_file (in auditlog.toml): is missing; it is required",
        ),
        (
            Some("listen = \n"),
            &[],
            Overrides::default(),
            "configuration (in auditlog.toml): TOML parse error at line 1, column 10: ",
        ),
    ];
    for (toml, env, overrides, expected) in cases {
        let err = load(*toml, env, overrides.clone()).unwrap_err();
        assert!(err.starts_with(expected), "{expected}\n{err}");
        assert!(!err.contains('\n'), "{err}");
        for leak in [
            "default.",
            ".rs:",
            "auditlog_server::",
            "environment variable(s)",
            "TOML file",
        ] {
            assert!(!err.contains(leak), "{leak} in {err}");
        }
    }
}

/// Every `AUDITLOG_*` name quoted in the `auditlog` CLI's sources (the
/// client crate's `src/`, its binary included: a clap `env = "..."` or an
/// `env::var("...")`), found by reading them.
fn cli_variables() -> std::collections::BTreeSet<String> {
    fn walk(dir: &Path, out: &mut std::collections::BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (at, _) in text.match_indices("\"AUDITLOG_") {
                    let name: String = text[at + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    out.insert(name);
                }
            }
        }
    }
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/src");
    let mut out = std::collections::BTreeSet::new();
    walk(&client, &mut out);
    out
}

#[test]
fn every_variable_the_cli_reads_is_tolerated_and_not_taken_for_server_config() {
    let vars = cli_variables();
    // The scan found the CLI's sources.
    assert!(
        vars.contains("AUDITLOG_SERVER") && vars.contains("AUDITLOG_VERIFIER_KEY"),
        "{vars:?}"
    );
    for var in &vars {
        let name = var.strip_prefix("AUDITLOG_").unwrap().to_ascii_lowercase();
        assert!(
            CLIENT_VARS.contains(&name.as_str()),
            "the CLI reads {var}: add \"{name}\" to config::CLIENT_VARS"
        );
        let c = load(
            None,
            &[(&var["AUDITLOG_".len()..], "x")],
            Overrides::default(),
        )
        .unwrap_or_else(|e| panic!("{var}=x: {e}"));
        assert_eq!(c, Config::default(), "{var}");
    }
}

#[test]
fn the_old_loggers_alert_keys_name_their_new_place() {
    for (toml, old, new) in [
        (
            "[alerts]\nerror_threshold = 5\n",
            "error_threshold",
            "threshold",
        ),
        (
            "[alerts]\ncooldown_seconds = 60\n",
            "cooldown_seconds",
            "cooldown_secs",
        ),
        (
            "slack_webhook = \"https://x\"\n",
            "slack_webhook",
            "[alerts.slack]",
        ),
        (
            "[alerts]\nsmtp_server = \"mx\"\n",
            "smtp_server",
            "`host` under [alerts.email]",
        ),
        (
            "[alerts.email]\nfrom_email = \"a@b\"\n",
            "from_email",
            "`from`",
        ),
    ] {
        let err = load(Some(toml), &[], Overrides::default()).unwrap_err();
        assert!(
            err.contains(&format!("`{old}` is the old logger's key")) && err.contains(new),
            "{err}"
        );
    }
    let err = load(None, &[("ALERTS__TO_EMAIL", "a@b")], Overrides::default()).unwrap_err();
    assert!(err.contains("`to` under [alerts.email]"), "{err}");
}
