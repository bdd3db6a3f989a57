//! `--print-config`: the configuration as loaded, written as TOML that can be
//! pasted into a config file and loads back to the same configuration. Every
//! default is written out, the default alert rule among them.
//!
//! Secrets are left out rather than masked, so that a pasted file can never
//! run with a placeholder for a key: a comment at the top names each one
//! that is set, and where to give it again. A secret is a [`Secret`] value,
//! a URL whose whole text is the credential (the Slack, Discord and alert
//! webhook URLs), and an outgoing webhook URL with user info or a query
//! string.

use super::{Config, RuleConfig};
use crate::redaction::{self, PathIs};

impl Config {
    /// This configuration as TOML, without its secrets (see the module doc).
    pub fn to_toml(&self) -> Result<String, String> {
        let mut shown = self.clone();
        let mut hidden: Vec<String> = Vec::new();
        let hide = |hidden: &mut Vec<String>, path: String, set: bool| {
            if set {
                hidden.push(path);
            }
        };
        hide(
            &mut hidden,
            "hmac_key".into(),
            shown.hmac_key.take().is_some(),
        );
        hide(
            &mut hidden,
            "compliance.pseudonym_key".into(),
            shown.compliance.pseudonym_key.take().is_some(),
        );
        if let Some(cluster) = &mut shown.cluster {
            hide(
                &mut hidden,
                "cluster.nats_password".into(),
                cluster.nats_password.take().is_some(),
            );
            hide(
                &mut hidden,
                "cluster.nats_token".into(),
                cluster.nats_token.take().is_some(),
            );
        }
        if let Some(email) = &mut shown.alerts.email {
            hide(
                &mut hidden,
                "alerts.email.password".into(),
                email.password.take().is_some(),
            );
        }
        if shown.alerts.rules.is_none() {
            shown.alerts.rules = Some(vec![RuleConfig::default_errors()]);
        }
        let mut secret_urls = Vec::new();
        for (channel, hook) in [
            ("slack", &shown.alerts.slack),
            ("discord", &shown.alerts.discord),
            ("webhook", &shown.alerts.webhook),
        ] {
            if let Some(hook) = hook {
                let printed = redaction::url(hook.url.expose(), PathIs::Secret);
                hidden.push(format!("alerts.{channel}.url ({printed})"));
                secret_urls.push(channel);
            }
        }
        let mut webhook_urls = Vec::new();
        for (i, hook) in shown.webhooks.iter_mut().enumerate() {
            let at = format!("webhooks[{i}] ({})", hook.name);
            hide(
                &mut hidden,
                format!("{at}.bearer_token"),
                hook.bearer_token.take().is_some(),
            );
            hide(
                &mut hidden,
                format!("{at}.secret"),
                hook.secret.take().is_some(),
            );
            let printed = redaction::url(&hook.url, PathIs::Shown);
            if printed != hook.url {
                webhook_urls.push(i);
                hidden.push(format!("{at}.url ({printed})"));
            }
        }

        let mut table = toml::Table::try_from(&shown).map_err(|e| e.to_string())?;
        for channel in secret_urls {
            if let Some(hook) = table
                .get_mut("alerts")
                .and_then(|a| a.get_mut(channel))
                .and_then(|h| h.as_table_mut())
            {
                hook.remove("url");
            }
        }
        if let Some(hooks) = table.get_mut("webhooks").and_then(|w| w.as_array_mut()) {
            for &i in &webhook_urls {
                if let Some(hook) = hooks.get_mut(i).and_then(|h| h.as_table_mut()) {
                    hook.remove("url");
                }
            }
        }

        let mut out =
            String::from("# auditlog-server configuration as loaded, every default written out.\n");
        if !hidden.is_empty() {
            out.push_str(
                "# These are set but not shown: give them again here, in a *_file key or as\n\
                 # AUDITLOG_* variables (a nested key's parts joined by __). A URL is shown\n\
                 # as it would be in a log line:\n",
            );
            for path in &hidden {
                out.push_str(&format!("#   {path}\n"));
            }
        }
        out.push('\n');
        out.push_str(&toml::to_string_pretty(&table).map_err(|e| e.to_string())?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
        Ok(out)
    }
}
