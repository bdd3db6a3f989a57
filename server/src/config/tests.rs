use super::*;

mod errors;

/// Loads a config inside a figment `Jail`: a temporary working
/// directory and environment, restored afterwards.
fn load(toml: Option<&str>, env: &[(&str, &str)], overrides: Overrides) -> Result<Config, String> {
    let mut out = Err(String::new());
    figment::Jail::expect_with(|jail| {
        if let Some(t) = toml {
            jail.create_file("auditlog.toml", t)?;
        }
        for (k, v) in env {
            jail.set_env(format!("AUDITLOG_{k}"), v);
        }
        out = Config::load(toml.map(|_| Path::new("auditlog.toml")), overrides.clone())
            .map_err(|e| e.to_string());
        Ok(())
    });
    out
}

#[test]
fn defaults_serve_on_loopback_with_local_data() {
    let c = load(None, &[], Overrides::default()).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.listen.to_string(), "127.0.0.1:50051");
}

#[test]
fn layers_override_in_order() {
    let toml = "listen = \"127.0.0.1:1000\"\ndata_dir = \"/from/file\"\nhmac_key_id = \"file\"\n";
    let c = load(
        Some(toml),
        &[("DATA_DIR", "/from/env"), ("DURABILITY", "os_buffered")],
        Overrides {
            listen: Some("127.0.0.1:2000".into()),
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(c.listen.port(), 2000);
    assert_eq!(c.data_dir, PathBuf::from("/from/env"));
    assert_eq!(c.hmac_key_id, "file");
    assert_eq!(c.durability, Durability::OsBuffered);
}

#[test]
fn listen_takes_a_host_name_and_names_a_bad_one() {
    let c = load(
        Some("listen = \"localhost:4000\"\n"),
        &[],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:4000");
    let err = load(
        None,
        &[],
        Overrides {
            listen: Some("localhost".into()),
            ..Overrides::default()
        },
    )
    .unwrap_err();
    assert!(err.contains("listen") && err.contains("HOST:PORT"), "{err}");
}

#[test]
fn email_to_is_one_address_or_a_list() {
    let email =
        "[alerts.email]\nhost = \"127.0.0.1\"\nsecurity = \"none\"\nfrom = \"a@example.com\"\n";
    let one = load(
        Some(&format!("{email}to = \"ops@example.com\"\n")),
        &[],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(one.alerts.email.unwrap().to, ["ops@example.com"]);
    let many = load(
        Some(&format!(
            "{email}to = [\"ops@example.com\", \"b@example.com\"]\n"
        )),
        &[],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        many.alerts.email.unwrap().to,
        ["ops@example.com", "b@example.com"]
    );
    let env = load(
        Some(email),
        &[("ALERTS__EMAIL__TO", "ops@example.com")],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(env.alerts.email.unwrap().to, ["ops@example.com"]);
    let err = load(Some(&format!("{email}to = 5\n")), &[], Overrides::default()).unwrap_err();
    assert!(err.contains("a list of addresses"), "{err}");
}

#[test]
fn an_smtp_password_without_a_username_is_refused() {
    let email =
        "[alerts.email]\nhost = \"127.0.0.1\"\nfrom = \"a@example.com\"\nto = \"b@example.com\"\n";
    let err = load(
        Some(email),
        &[("ALERTS__EMAIL__PASSWORD", "hunter22")],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(
        err.contains("alerts.email.username") && err.contains("a@example.com"),
        "{err}"
    );
    assert!(!err.contains("hunter22"), "{err}");
    let ok = load(
        Some(&format!("{email}username = \"a@example.com\"\n")),
        &[("ALERTS__EMAIL__PASSWORD", "hunter22")],
        Overrides::default(),
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn webhook_urls_are_redacted_in_debug() {
    let c = Config {
        webhooks: vec![WebhookConfig {
            name: "crm".into(),
            url: "https://bob:hunter22@crm.example.com/hook?token=tok123456".into(),
            event_types: vec![],
            workflows: vec![],
            bearer_token: None,
            secret: None,
            secret_file: None,
            start: Start::Now,
            timeout_secs: 10,
            max_backoff_secs: 60,
        }],
        ..Config::default()
    };
    let shown = format!("{c:#?}");
    assert!(
        !shown.contains("hunter22") && !shown.contains("tok123456"),
        "{shown}"
    );
    assert!(shown.contains("crm.example.com/hook"), "{shown}");
}

#[test]
fn in_cluster_mode_every_webhook_needs_a_configured_secret() {
    let cluster = "[cluster]\nnats_urls = [\"nats://127.0.0.1:4222\"]\n\
                   advertise = \"http://127.0.0.1:50051\"\n";
    let hook = "[[webhooks]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/hook\"\n";
    let err = load(
        Some(&format!("{hook}\n{cluster}")),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(
        err.contains("webhook crm") && err.contains("secret_file"),
        "{err}"
    );
    let secret = "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n";
    let ok = load(
        Some(&format!("{SHARED_CHECKPOINT_KEY}{hook}{secret}\n{cluster}")),
        &[],
        Overrides::default(),
    );
    assert!(ok.is_ok(), "{ok:?}");
    assert!(load(Some(hook), &[], Overrides::default()).is_ok());
}

/// The top-level keys a cluster node needs for its one checkpoint identity.
const SHARED_CHECKPOINT_KEY: &str = "checkpoint_key_file = \"/etc/auditlog/checkpoint.key\"\ncheckpoint_origin = \"auditlog/test\"\n";

#[test]
fn in_cluster_mode_the_checkpoint_key_file_and_origin_are_required() {
    let cluster = "[cluster]\nnats_urls = [\"nats://127.0.0.1:4222\"]\n\
                   advertise = \"http://127.0.0.1:50051\"\n";
    let err = load(Some(cluster), &[], Overrides::default()).unwrap_err();
    assert!(
        err.contains("checkpoint_key_file") && err.contains("openssl rand -hex 32"),
        "{err}"
    );
    let key_only = "checkpoint_key_file = \"/etc/auditlog/checkpoint.key\"\n";
    let err = load(
        Some(&format!("{key_only}{cluster}")),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(
        err.contains("checkpoint_origin") && err.contains("names this host"),
        "{err}"
    );
    let ok = load(
        Some(&format!("{SHARED_CHECKPOINT_KEY}{cluster}")),
        &[],
        Overrides::default(),
    );
    assert!(ok.is_ok(), "{ok:?}");
    // A single node keeps its defaults: a generated key, the host's name.
    assert!(load(Some(""), &[], Overrides::default()).is_ok());
}

#[test]
fn short_keys_and_bad_ids_are_rejected() {
    let err = load(Some("hmac_key = \"short\"\n"), &[], Overrides::default()).unwrap_err();
    assert!(
        err.contains("hmac_key") && err.contains("at least 32"),
        "{err}"
    );
    let err = load(Some("hmac_key_id = \"a b\"\n"), &[], Overrides::default()).unwrap_err();
    assert!(err.contains("hmac_key_id"), "{err}");
}

#[test]
fn retired_hmac_keys_are_named_once_and_never_as_the_signing_key() {
    let retired = |ids: &[&str]| {
        let entries: String = ids
            .iter()
            .map(|id| format!("[[retired_hmac_keys]]\nid = \"{id}\"\nkey_file = \"old.key\"\n"))
            .collect();
        load(
            Some(&format!("hmac_key_id = \"k2\"\n{entries}")),
            &[],
            Overrides::default(),
        )
    };
    let c = retired(&["k1", "k0"]).unwrap();
    assert_eq!(
        c.retired_hmac_keys,
        vec![
            RetiredHmacKey {
                id: "k1".into(),
                key_file: "old.key".into()
            },
            RetiredHmacKey {
                id: "k0".into(),
                key_file: "old.key".into()
            }
        ]
    );
    for (ids, expected) in [
        (&["k2"][..], "\"k2\" is hmac_key_id"),
        (&["k1", "k1"][..], "\"k1\" is named twice"),
        (&["a b"][..], "\"a b\" is not 1 to 32"),
    ] {
        let err = retired(ids).unwrap_err();
        assert!(
            err.contains("retired_hmac_keys") && err.contains(expected),
            "{ids:?}: {err}"
        );
    }
}

#[test]
fn a_network_address_needs_tls_and_tokens_or_an_explicit_opt_in() {
    let err = load(
        Some("listen = \"0.0.0.0:50051\"\n"),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(
        err.contains("listen") && err.contains("allow_insecure"),
        "{err}"
    );
    let ok = load(
        Some("listen = \"0.0.0.0:50051\"\nallow_insecure = true\n"),
        &[],
        Overrides::default(),
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn segment_age_defaults_to_a_day_and_0_turns_it_off() {
    let c = load(None, &[], Overrides::default()).unwrap();
    assert_eq!(
        c.max_segment_age(),
        Some(std::time::Duration::from_secs(86_400))
    );
    let c = load(None, &[("MAX_SEGMENT_AGE_SECS", "0")], Overrides::default()).unwrap();
    assert_eq!(c.max_segment_age(), None);
    let c = load(
        Some("max_segment_age_secs = 3600\n"),
        &[],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.max_segment_age_secs, 3600);
    for bad in ["-1", "1.5", "soon", "99999999999"] {
        let err = load(None, &[("MAX_SEGMENT_AGE_SECS", bad)], Overrides::default()).unwrap_err();
        // The environment names it in capitals.
        assert!(
            err.to_lowercase().contains("max_segment_age_secs"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn retention_takes_fractions_of_days_up_to_100_years() {
    let c = load(None, &[("RETENTION_DAYS", "0.5")], Overrides::default()).unwrap();
    assert_eq!(c.retention(), Some(std::time::Duration::from_secs(43_200)));
    let c = load(None, &[("RETENTION_DAYS", "36600")], Overrides::default()).unwrap();
    assert!(c.retention().is_some());
    // 1.8e19 days once passed and then overflowed the period's Duration.
    for bad in ["-1", "36601", "18446744073709551615", "inf", "NaN"] {
        let err = load(None, &[("RETENTION_DAYS", bad)], Overrides::default()).unwrap_err();
        assert!(
            err.to_lowercase().contains("retention_days"),
            "{bad}: {err}"
        );
    }
}

/// Values past these bounds once passed and then stopped the server with a
/// panic (a semaphore's permit limit, an `Instant` overflowed).
#[test]
fn counts_and_seconds_are_bounded_and_refused_past_it_naming_the_key() {
    for key in [
        "MAX_IN_FLIGHT",
        "MAX_CONNECTIONS",
        "MAX_IN_FLIGHT_PER_TOKEN",
        "MAX_QUEUED_VERIFICATIONS",
        "MAX_STREAMS_PER_CONNECTION",
        "KEEPALIVE_SECS",
        "HANDLER_TIMEOUT_SECS",
        "REQUEST_READ_TIMEOUT_SECS",
        "HANDSHAKE_TIMEOUT_SECS",
        "SHUTDOWN_GRACE_SECS",
        "RETENTION_CHECK_SECS",
    ] {
        let max = if key.ends_with("_SECS") {
            "3162240000"
        } else {
            "1048576"
        };
        load(None, &[(key, max)], Overrides::default()).unwrap();
        let past = if key.ends_with("_SECS") {
            "3162240001"
        } else {
            "1048577"
        };
        let err = load(None, &[(key, past)], Overrides::default()).unwrap_err();
        assert!(err.contains(&key.to_lowercase()), "{key}: {err}");
        assert!(err.contains(&format!("to {max}")), "{key}: {err}");
    }
}

#[test]
fn secrets_are_redacted_in_debug() {
    let c = Config {
        hmac_key: Some(Secret::from("super secret key material 0123456789")),
        ..Config::default()
    };
    assert!(!format!("{c:?}").contains("super secret"));
}

/// A config with every secret set, and every kind of URL.
fn with_secrets() -> &'static str {
    "hmac_key = \"0123456789abcdef0123456789abcdef-KEYSECRET\"\n\
     [alerts.email]\n\
     host = \"smtp.example.com\"\n\
     from = \"auditlog@example.com\"\n\
     to = \"ops@example.com\"\n\
     username = \"auditlog\"\n\
     password = \"MAILSECRET\"\n\
     [alerts.slack]\n\
     url = \"https://hooks.slack.com/services/T0/B0/SLACKSECRET\"\n\
     [compliance]\n\
     pseudonym_key = \"0123456789abcdef0123456789abcdef-PSEUDOSECRET\"\n\
     [[webhooks]]\n\
     name = \"crm\"\n\
     url = \"https://crm:HOOKPASS@crm.example.com/hook?key=QUERYSECRET\"\n\
     bearer_token = \"BEARERSECRET\"\n\
     secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
     [[webhooks]]\n\
     name = \"plain\"\n\
     url = \"https://plain.example.com/hook\"\n"
}

#[test]
fn printed_config_loads_back_the_same_without_its_secrets() {
    let config = load(Some(with_secrets()), &[], Overrides::default()).unwrap();
    let printed = config.to_toml().unwrap();
    for secret in [
        "KEYSECRET",
        "MAILSECRET",
        "SLACKSECRET",
        "PSEUDOSECRET",
        "HOOKPASS",
        "QUERYSECRET",
        "BEARERSECRET",
        "whsec_",
    ] {
        assert!(!printed.contains(secret), "{secret} in\n{printed}");
    }
    // Each hidden one is named, a URL by its printable form.
    for named in [
        "#   hmac_key\n",
        "#   alerts.email.password\n",
        "#   alerts.slack.url (https://hooks.slack.com/<redacted>)\n",
        "#   compliance.pseudonym_key\n",
        "#   webhooks[0] (crm).bearer_token\n",
        "#   webhooks[0] (crm).secret\n",
        "#   webhooks[0] (crm).url (https://<redacted>@crm.example.com/hook?key=<redacted>)\n",
    ] {
        assert!(printed.contains(named), "{named:?} not in\n{printed}");
    }
    // The default alert rule is written out.
    assert!(
        printed.contains("[[alerts.rules]]\nname = \"errors\""),
        "{printed}"
    );

    // Pasted back with the secrets given again, it is the same config.
    let secrets = "hmac_key = \"0123456789abcdef0123456789abcdef-KEYSECRET\"\n";
    let mut pasted = printed.replacen("\n\n", &format!("\n\n{secrets}"), 1);
    pasted = pasted.replace(
        "[alerts.slack]\n",
        "[alerts.slack]\nurl = \"https://hooks.slack.com/services/T0/B0/SLACKSECRET\"\n",
    );
    pasted = pasted.replace(
        "username = \"auditlog\"\n",
        "username = \"auditlog\"\npassword = \"MAILSECRET\"\n",
    );
    pasted = pasted.replace(
        "name = \"crm\"\n",
        "name = \"crm\"\nurl = \"https://crm:HOOKPASS@crm.example.com/hook?key=QUERYSECRET\"\n\
         bearer_token = \"BEARERSECRET\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
    );
    pasted = pasted.replace(
        "[compliance]\n",
        "[compliance]\npseudonym_key = \"0123456789abcdef0123456789abcdef-PSEUDOSECRET\"\n",
    );
    let reloaded = load(Some(&pasted), &[], Overrides::default()).unwrap();
    let mut expected = config.clone();
    expected.alerts.rules = Some(vec![RuleConfig::default_errors()]);
    assert_eq!(reloaded, expected, "pasted:\n{pasted}");

    // The defaults alone print and load back as they are.
    let defaults = Config::default();
    let reloaded = load(
        Some(&defaults.to_toml().unwrap()),
        &[],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        reloaded.alerts.rules,
        Some(vec![RuleConfig::default_errors()])
    );
    assert_eq!(
        Config {
            alerts: AlertsConfig {
                rules: None,
                ..reloaded.alerts.clone()
            },
            ..reloaded
        },
        defaults
    );
}

#[test]
fn a_url_of_the_wrong_type_is_not_echoed() {
    for toml in [
        "[alerts]\nslack = \"https://hooks.slack.com/services/T0/B0/SLACKSECRET\"\n",
        "[[webhooks]]\nname = \"a\"\nurl = \"https://a.example.com/\"\ntimeout_secs = \"https://u:PASS@a.example.com/\"\n",
    ] {
        let err = load(Some(toml), &[], Overrides::default()).unwrap_err();
        assert!(!err.contains("SECRET") && !err.contains("PASS"), "{err}");
        assert!(
            err.contains("invalid type") && err.contains("<redacted>"),
            "{err}"
        );
    }
}

#[test]
fn the_log_format_is_text_or_json_from_any_layer() {
    let c = load(None, &[], Overrides::default()).unwrap();
    assert_eq!(c.log_format, LogFormat::Text);
    let c = load(Some("log_format = \"json\"\n"), &[], Overrides::default()).unwrap();
    assert_eq!(c.log_format, LogFormat::Json);
    let c = load(
        Some("log_format = \"json\"\n"),
        &[],
        Overrides {
            log_format: Some(LogFormat::Text),
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(c.log_format, LogFormat::Text);
    let err = load(None, &[("LOG_FORMAT", "xml")], Overrides::default()).unwrap_err();
    assert!(err.contains("LOG_FORMAT") && err.contains("json"), "{err}");
}

#[test]
fn connection_and_call_limits_load_and_zero_is_refused_by_name() {
    let toml = "max_connections = 64\nhandshake_timeout_secs = 3\n\
                request_read_timeout_secs = 4\nmax_in_flight_per_token = 5\n\
                max_queued_verifications = 0\n";
    let c = load(Some(toml), &[], Overrides::default()).unwrap();
    assert_eq!(
        (
            c.max_connections,
            c.handshake_timeout_secs,
            c.request_read_timeout_secs,
            c.max_in_flight_per_token,
            c.max_queued_verifications
        ),
        (64, 3, 4, 5, 0)
    );
    for key in [
        "max_connections",
        "handshake_timeout_secs",
        "request_read_timeout_secs",
        "max_in_flight_per_token",
    ] {
        let err = load(Some(&format!("{key} = 0\n")), &[], Overrides::default()).unwrap_err();
        assert!(
            err.contains(key) && err.contains("must be from 1 to"),
            "{key}: {err}"
        );
    }
}

#[test]
fn metrics_listen_is_off_by_default_and_set_from_any_layer() {
    assert_eq!(Config::default().metrics_listen, None);
    let file = "metrics_listen = \"localhost:9100\"\n";
    let c = load(Some(file), &[], Overrides::default()).unwrap();
    assert_eq!(c.metrics_listen.unwrap().to_string(), "127.0.0.1:9100");
    let c = load(
        Some(file),
        &[("METRICS_LISTEN", "127.0.0.1:9101")],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.metrics_listen.unwrap().port(), 9101);
    let flag = Overrides {
        metrics_listen: Some("127.0.0.1:9102".into()),
        ..Overrides::default()
    };
    let c = load(Some(file), &[("METRICS_LISTEN", "127.0.0.1:9101")], flag).unwrap();
    assert_eq!(c.metrics_listen.unwrap().port(), 9102);
    let err = load(
        Some("metrics_listen = \"nowhere\"\n"),
        &[],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(
        err.contains("metrics_listen") && err.contains("HOST:PORT"),
        "{err}"
    );
}

#[test]
fn tracing_is_off_by_default_and_set_from_any_layer_with_its_keys_checked() {
    assert!(!Config::default().tracing.on());
    let file = "[tracing]\notlp_endpoint = \"http://collector:4317\"\nsample_ratio = 0.25\n";
    let c = load(Some(file), &[], Overrides::default()).unwrap();
    assert_eq!(
        c.tracing.otlp_endpoint.as_deref(),
        Some("http://collector:4317")
    );
    assert_eq!(c.tracing.sample_ratio, 0.25);
    assert_eq!(c.tracing.service_name, "auditlog");
    let env = [("TRACING__OTLP_ENDPOINT", "http://from-env:4317")];
    let c = load(Some(file), &env, Overrides::default()).unwrap();
    assert_eq!(
        c.tracing.otlp_endpoint.as_deref(),
        Some("http://from-env:4317")
    );
    let flag = Overrides {
        tracing: Some(TracingOverrides {
            otlp_endpoint: Some("https://from-flag:4317".into()),
        }),
        ..Overrides::default()
    };
    let c = load(Some(file), &env, flag).unwrap();
    assert_eq!(
        c.tracing.otlp_endpoint.as_deref(),
        Some("https://from-flag:4317")
    );
    // The flag sets one key of the section and leaves the others.
    assert_eq!(c.tracing.sample_ratio, 0.25);
    for (bad, key) in [
        (
            "otlp_endpoint = \"collector:4317\"",
            "tracing.otlp_endpoint",
        ),
        ("sample_ratio = 1.5", "tracing.sample_ratio"),
        ("service_name = \" \"", "tracing.service_name"),
    ] {
        let err = load(
            Some(&format!("[tracing]\n{bad}\n")),
            &[],
            Overrides::default(),
        )
        .unwrap_err();
        assert!(err.contains(key), "{bad}: {err}");
    }
    let printed = c.to_toml().unwrap();
    assert!(printed.contains("[tracing]"), "{printed}");
}

#[test]
fn printed_config_leaves_out_the_nats_password() {
    let config = load(
        Some(
            "checkpoint_key_file = \"/etc/auditlog/checkpoint.key\"\n\
             checkpoint_origin = \"example.com/audit\"\n\
             [cluster]\nnats_urls = [\"tls://10.0.0.1:4222\"]\n\
             advertise = \"https://10.0.0.5:50051\"\n\
             nats_user = \"auditlog\"\nnats_password = \"NATSSECRET\"\n",
        ),
        &[],
        Overrides::default(),
    )
    .unwrap();
    let printed = config.to_toml().unwrap();
    assert!(!printed.contains("NATSSECRET"), "{printed}");
    assert!(printed.contains("#   cluster.nats_password\n"), "{printed}");
}
