//! Compliance mode: PII pseudonymisation and data-subject lookups.
//!
//! With `[compliance] enabled = true`, every value under a configured field
//! name (at any depth of `details`, and `lead_id` when `lead_id = true`) is
//! replaced by a keyed token before the event is signed and written, so the
//! plain value never reaches the log, its segments, webhooks or alerts.
//!
//! The token is `pii:hmac:` and the first 32 hex characters (128 bits) of
//! HMAC-SHA256 under the pseudonymisation key over the normalised value. A
//! keyed hash, not a bare one: a bare SHA-256 of a phone number or an email is
//! reversed by hashing every candidate, which takes minutes; without the key
//! that is impossible. The same value always gives the same token (across
//! restarts too: the key is kept), so one person's events still group.
//!
//! Normalisation, so that one person's value gives one token however it was
//! typed: surrounding space trimmed, lower case, and for a value made only of
//! digits and phone punctuation (`+ - . ( )` and spaces) with at least 7
//! digits, the punctuation removed (a leading `+` kept).
//!
//! Invariant: [`Compliance::apply`] runs on every event a caller sends, before
//! the store sees it; the store never sees a plain value of a configured field.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::keys::{KeyError, MIN_KEY_LEN, Secret, load_or_generate};
use crate::store::{Details, Name, NewEvent, Record};

/// The prefix of every pseudonym token.
pub(crate) const TOKEN_PREFIX: &str = "pii:hmac:";
/// The generated pseudonymisation key's file in the data directory.
pub(crate) const KEY_FILE: &str = "pseudonym.key";

/// The `[compliance]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceConfig {
    /// Pseudonymise PII before it is written. Default false.
    pub enabled: bool,
    /// Field names whose values are PII, matched case-insensitively against
    /// `details` keys at any depth. Default `email`, `phone`, `name`,
    /// `address`, `ssn`, and `to` and `recipient` (where the client's
    /// `email_sent` and the old logger put the address a mail went to).
    pub fields: Vec<String>,
    /// Pseudonymise `lead_id` too (for lead ids that are emails or phone
    /// numbers). Default false.
    pub lead_id: bool,
    /// Only events of these workflows; empty means every event. Default empty.
    pub workflows: Vec<String>,
    /// The pseudonymisation key: at least 32 bytes, different from the HMAC
    /// signing key. Default: none, in which case a random key is generated
    /// once into `<data_dir>/pseudonym.key` (mode 0600) and reused.
    pub pseudonym_key: Option<Secret>,
    /// A file holding the pseudonymisation key; an alternative to
    /// `pseudonym_key`. Default: none.
    pub pseudonym_key_file: Option<PathBuf>,
}

impl Default for ComplianceConfig {
    fn default() -> ComplianceConfig {
        ComplianceConfig {
            enabled: false,
            fields: [
                "email",
                "phone",
                "name",
                "address",
                "ssn",
                "to",
                "recipient",
            ]
            .map(String::from)
            .to_vec(),
            lead_id: false,
            workflows: Vec::new(),
            pseudonym_key: None,
            pseudonym_key_file: None,
        }
    }
}

impl ComplianceConfig {
    /// With compliance on, what a likely mistake leaves in plain text: a
    /// default PII field taken out of `fields`, or `lead_id` kept as given.
    pub(crate) fn plain_pii_warning(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let missing: Vec<String> = ComplianceConfig::default()
            .fields
            .into_iter()
            .filter(|f| !self.fields.iter().any(|c| c.eq_ignore_ascii_case(f)))
            .collect();
        let mut gaps = Vec::new();
        if !missing.is_empty() {
            gaps.push(format!(
                "the details fields {} are written in plain text (they are not in \
                 compliance.fields)",
                missing.join(", ")
            ));
        }
        if !self.lead_id {
            gaps.push(
                "lead_id is written as given (set compliance.lead_id = true if lead ids are \
                 email addresses or phone numbers)"
                    .to_owned(),
            );
        }
        (!gaps.is_empty()).then(|| format!("compliance mode is on, but {}", gaps.join("; and ")))
    }

    /// Checks what types alone cannot; the error names the key.
    pub fn validate(&self, hmac_key: Option<&Secret>) -> Result<(), (&'static str, String)> {
        if self.pseudonym_key.is_some() && self.pseudonym_key_file.is_some() {
            return Err((
                "compliance.pseudonym_key",
                "set either pseudonym_key or pseudonym_key_file, not both".into(),
            ));
        }
        if let Some(key) = &self.pseudonym_key {
            if key.expose().len() < MIN_KEY_LEN {
                return Err((
                    "compliance.pseudonym_key",
                    format!(
                        "the key is {} bytes long; use at least {MIN_KEY_LEN} (e.g. `openssl rand -hex 32`)",
                        key.expose().len()
                    ),
                ));
            }
            if hmac_key.is_some_and(|h| h.expose() == key.expose()) {
                return Err((
                    "compliance.pseudonym_key",
                    "must differ from hmac_key: whoever verifies the log must not be able to \
                     compute pseudonyms"
                        .into(),
                ));
            }
        }
        if self.enabled && self.fields.is_empty() && !self.lead_id {
            return Err((
                "compliance.fields",
                "is empty and lead_id is false: compliance mode would change nothing; list the \
                 PII field names"
                    .into(),
            ));
        }
        if let Some(f) = self.fields.iter().find(|f| f.trim().is_empty()) {
            return Err((
                "compliance.fields",
                format!("holds {f:?}; every entry must be a field name"),
            ));
        }
        Ok(())
    }
}

/// The running compliance mode: the key and the rules.
pub struct Compliance {
    enabled: bool,
    /// Lower-cased field names.
    fields: Vec<String>,
    lead_id: bool,
    workflows: Vec<String>,
    key: Hmac<Sha256>,
    /// False when compliance mode is off and no key was ever made: then
    /// subject exports match plain values only.
    has_key: bool,
}

impl std::fmt::Debug for Compliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compliance")
            .field("enabled", &self.enabled)
            .field("fields", &self.fields)
            .field("lead_id", &self.lead_id)
            .field("workflows", &self.workflows)
            .finish_non_exhaustive()
    }
}

impl Compliance {
    /// Loads the key (generating it on first use) when compliance mode is on.
    /// With it off, no key file is created and subject exports match plain
    /// values only.
    pub fn load(config: &ComplianceConfig, data_dir: &Path) -> Result<Compliance, KeyError> {
        let key = match (&config.pseudonym_key, &config.pseudonym_key_file) {
            (Some(k), _) => k.expose().as_bytes().to_vec(),
            (None, Some(path)) => {
                let mut bytes = std::fs::read(path).map_err(|source| KeyError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    bytes.pop();
                }
                bytes
            }
            (None, None) => {
                let path = data_dir.join(KEY_FILE);
                if config.enabled || path.exists() {
                    load_or_generate(&path, "pseudonymisation")?
                } else {
                    Vec::new()
                }
            }
        };
        if config.enabled && key.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort(key.len()));
        }
        if let Some(warning) = config.plain_pii_warning() {
            tracing::warn!("{warning}");
        }
        Ok(Compliance {
            enabled: config.enabled,
            fields: config.fields.iter().map(|f| f.to_lowercase()).collect(),
            lead_id: config.lead_id,
            workflows: config.workflows.clone(),
            has_key: !key.is_empty(),
            key: <Hmac<Sha256> as Mac>::new_from_slice(&key)
                .expect("HMAC takes keys of any length"),
        })
    }

    /// Whether values are pseudonymised.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The token of `value`: `pii:hmac:` and 32 hex characters.
    pub fn token(&self, value: &str) -> String {
        let mut mac = self.key.clone();
        mac.update(normalise(value).as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(TOKEN_PREFIX.len() + 32);
        out.push_str(TOKEN_PREFIX);
        out.push_str(&hex::encode(&digest[..16]));
        out
    }

    /// Replaces every PII value of `event` with its token, if the mode is on
    /// and the event's workflow is covered.
    pub fn apply(&self, event: &mut NewEvent) {
        if !self.enabled {
            return;
        }
        if !self.workflows.is_empty()
            && !event
                .workflow
                .as_ref()
                .is_some_and(|w| self.workflows.iter().any(|x| *x == **w))
        {
            return;
        }
        if self.lead_id
            && let Some(lead) = &mut event.lead_id
            && !lead.starts_with(TOKEN_PREFIX)
        {
            *lead = Name::from(self.token(lead));
        }
        let mut details = event.details.to_map();
        if self.walk(&mut details) {
            event.details = Details::from_map(&details);
        }
    }

    /// The lead id a query should look for: the token when every event's
    /// lead id is pseudonymised, the value as given otherwise.
    pub fn lead_filter(&self, lead_id: String) -> String {
        if self.enabled
            && self.lead_id
            && self.workflows.is_empty()
            && !lead_id.starts_with(TOKEN_PREFIX)
        {
            self.token(&lead_id)
        } else {
            lead_id
        }
    }

    /// Whether it found a PII field (and so may have changed `map`).
    fn walk(&self, map: &mut Map<String, Value>) -> bool {
        let mut found = false;
        for (key, value) in map.iter_mut() {
            if self.fields.iter().any(|f| f.eq_ignore_ascii_case(key)) {
                self.replace_all(value);
                found = true;
            } else {
                match value {
                    Value::Object(inner) => found |= self.walk(inner),
                    Value::Array(items) => {
                        for item in items {
                            if let Value::Object(inner) = item {
                                found |= self.walk(inner);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        found
    }

    /// Tokenises every string and number in `value` (all of it is PII).
    fn replace_all(&self, value: &mut Value) {
        match value {
            Value::String(s) if s.starts_with(TOKEN_PREFIX) => {}
            Value::String(s) => *value = Value::String(self.token(s)),
            Value::Number(n) => *value = Value::String(self.token(&n.to_string())),
            Value::Array(items) => items.iter_mut().for_each(|v| self.replace_all(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.replace_all(v)),
            Value::Bool(_) | Value::Null => {}
        }
    }
}

/// What a subject export looks for: the identifier, normalised, and its
/// token when compliance mode has a key.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    plain: String,
    token: Option<String>,
}

impl Subject {
    pub(crate) fn new(identifier: &str, compliance: &Compliance) -> Subject {
        Subject {
            plain: normalise(identifier),
            token: compliance.has_key.then(|| compliance.token(identifier)),
        }
    }

    /// Where the subject appears in `record`: `lead_id` and `details` paths.
    pub(crate) fn matches(&self, record: &Record) -> Vec<String> {
        let mut found = Vec::new();
        if record.lead_id.as_deref().is_some_and(|l| self.is(l)) {
            found.push("lead_id".to_owned());
        }
        let mut path = String::from("details");
        for (key, value) in &record.details.to_map() {
            self.find(key, value, &mut path, &mut found);
        }
        found
    }

    fn is(&self, value: &str) -> bool {
        self.token.as_deref() == Some(value) || normalise(value) == self.plain
    }

    fn find(&self, key: &str, value: &Value, path: &mut String, found: &mut Vec<String>) {
        let len = path.len();
        path.push('.');
        path.push_str(key);
        match value {
            Value::String(s) if self.is(s) => found.push(path.clone()),
            Value::Number(n) if self.is(&n.to_string()) => found.push(path.clone()),
            Value::Object(map) => {
                for (k, v) in map {
                    self.find(k, v, path, found);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    self.find(&i.to_string(), v, path, found);
                }
            }
            _ => {}
        }
        path.truncate(len);
    }
}

/// Trimmed and lower-cased; phone numbers without their punctuation.
pub(crate) fn normalise(value: &str) -> String {
    let v = value.trim();
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    let phone_like = digits >= 7
        && v.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'(' | b')' | b' '));
    if phone_like {
        let mut out = String::with_capacity(v.len());
        if v.starts_with('+') {
            out.push('+');
        }
        out.extend(v.chars().filter(char::is_ascii_digit));
        out
    } else {
        v.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compliance(config: ComplianceConfig) -> Compliance {
        let dir = tempfile::tempdir().unwrap();
        Compliance::load(&config, dir.path()).unwrap()
    }

    fn on() -> ComplianceConfig {
        ComplianceConfig {
            enabled: true,
            pseudonym_key: Some("0123456789abcdef0123456789abcdef-test".into()),
            ..ComplianceConfig::default()
        }
    }

    fn event(details: Value, workflow: Option<&str>) -> NewEvent {
        NewEvent {
            event_type: "lead_ingested".into(),
            actor: "system".into(),
            caller: None,
            lead_id: Some("jane@example.com".into()),
            workflow: workflow.map(Name::from),
            details: details.as_object().unwrap().clone().into(),
            idempotency_key: None,
        }
    }

    #[test]
    fn values_under_pii_fields_are_replaced_at_any_depth() {
        let c = compliance(on());
        let mut e = event(
            json!({
                "Email": "Jane@Example.com ",
                "source": "web",
                "contact": {"phone": "+1 (555) 010-9999", "name": ["Jane", "Doe"]},
                "history": [{"address": {"street": "1 Main St", "zip": 12345}}],
                "score": 7
            }),
            None,
        );
        c.apply(&mut e);
        let d = Value::Object(e.details.to_map());
        let jane = c.token("jane@example.com");
        assert_eq!(d["Email"], json!(jane));
        assert_eq!(d["source"], "web");
        assert_eq!(d["score"], 7);
        assert_eq!(d["contact"]["phone"], json!(c.token("+15550109999")));
        assert_eq!(d["contact"]["name"][0], json!(c.token("jane")));
        assert_eq!(d["history"][0]["address"]["zip"], json!(c.token("12345")));
        let text = d.to_string().to_lowercase();
        for plain in ["jane", "555", "main st", "12345"] {
            assert!(!text.contains(plain), "{plain} left in {text}");
        }
        // lead_id is left alone unless configured.
        assert_eq!(e.lead_id.as_deref(), Some("jane@example.com"));
        assert!(jane.starts_with(TOKEN_PREFIX) && jane.len() == TOKEN_PREFIX.len() + 32);
    }

    #[test]
    fn lead_id_and_workflow_scope_are_honoured() {
        let c = compliance(ComplianceConfig {
            lead_id: true,
            workflows: vec!["eu".into()],
            ..on()
        });
        let mut other = event(json!({"email": "a@b.c"}), Some("us"));
        c.apply(&mut other);
        assert_eq!(other.details.to_map()["email"], "a@b.c");
        assert_eq!(other.lead_id.as_deref(), Some("jane@example.com"));
        let mut eu = event(json!({"email": "a@b.c"}), Some("eu"));
        c.apply(&mut eu);
        assert_eq!(
            eu.lead_id.as_deref(),
            Some(c.token("jane@example.com").as_str())
        );
        // Applying twice changes nothing more.
        let once = eu.clone();
        c.apply(&mut eu);
        assert_eq!(eu, once);
    }

    #[test]
    fn tokens_are_keyed_and_stable() {
        let a = compliance(on());
        let b = compliance(on());
        assert_eq!(a.token("x@y.z"), b.token(" X@Y.Z"));
        let other = compliance(ComplianceConfig {
            pseudonym_key: Some("another key that is long enough for us!".into()),
            ..on()
        });
        assert_ne!(a.token("x@y.z"), other.token("x@y.z"));
        // Not a bare hash of the value.
        let bare = hex::encode(<Sha256 as sha2::Digest>::digest(b"x@y.z"));
        assert!(!bare.starts_with(&a.token("x@y.z")[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn a_generated_key_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config = ComplianceConfig {
            enabled: true,
            ..ComplianceConfig::default()
        };
        let first = Compliance::load(&config, dir.path())
            .unwrap()
            .token("a@b.c");
        let again = Compliance::load(&config, dir.path())
            .unwrap()
            .token("a@b.c");
        assert_eq!(first, again);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn off_means_no_key_file_and_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let c = Compliance::load(&ComplianceConfig::default(), dir.path()).unwrap();
        let mut e = event(json!({"email": "a@b.c"}), None);
        c.apply(&mut e);
        assert_eq!(e.details.to_map()["email"], "a@b.c");
        assert!(!dir.path().join(KEY_FILE).exists());
    }

    #[test]
    fn turning_compliance_on_with_pii_left_plain_is_warned_about() {
        let off = ComplianceConfig::default();
        assert_eq!(off.plain_pii_warning(), None);
        let on = ComplianceConfig {
            enabled: true,
            lead_id: true,
            ..ComplianceConfig::default()
        };
        assert_eq!(on.plain_pii_warning(), None);
        let narrowed = ComplianceConfig {
            fields: vec!["Email".into(), "phone".into(), "name".into()],
            lead_id: false,
            ..on
        };
        let warning = narrowed.plain_pii_warning().unwrap();
        assert!(
            warning.contains("address, ssn, to, recipient are written in plain text")
                && warning.contains("compliance.lead_id = true"),
            "{warning}"
        );
    }

    #[test]
    fn phone_numbers_normalise_but_other_values_keep_their_digits() {
        assert_eq!(normalise(" +44 20 7946-0958 "), "+442079460958");
        assert_eq!(normalise("(555) 010.9999"), "5550109999");
        assert_eq!(normalise("Order 12345678"), "order 12345678");
        assert_eq!(normalise("12-34"), "12-34");
    }
}
