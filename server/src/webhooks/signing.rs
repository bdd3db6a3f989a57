//! Each endpoint's signing key and the Standard Webhooks signature: a
//! configured `whsec_` secret decoded (or explained in words when it is
//! malformed), or one the server generates once per endpoint.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::{WebhookConfig, WebhookConfigError};
use crate::keys::{self, Secret};

/// An endpoint's signing key, and its secret when the server generated it.
pub(crate) struct SigningKey {
    pub(super) key: Vec<u8>,
    pub(super) generated: Option<Secret>,
}

/// Why GetWebhookSecret has no secret to show.
#[derive(Debug)]
pub(crate) enum NoSecret {
    /// No endpoint has this name; the names there are.
    Unknown(Vec<String>),
    /// The endpoint's secret comes from its config, which is not shown.
    Configured,
}

/// The bytes of a random secret the server generates.
const GENERATED_SECRET_BYTES: usize = 32;
/// The fewest bytes a signing secret may hold.
const MIN_SECRET_BYTES: usize = 16;
/// What a signing secret is, for every refusal of one.
const SECRET_FORM: &str = "a Standard Webhooks secret is whsec_ followed by the standard \
    base64 (A-Z, a-z, 0-9, + and /, padded with =) of at least 16 random bytes, \
    e.g. whsec_$(openssl rand -base64 32); or leave secret out and the server generates one";

/// The key a `whsec_<base64>` secret holds (the prefix may be left out), or
/// what is wrong with it, in words. The secret itself is never repeated.
pub(super) fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = BASE64.decode(encoded).map_err(|e| {
        let wrong = match e {
            base64::DecodeError::InvalidByte(at, b @ (b'-' | b'_')) => format!(
                "has {:?} at character {} of its base64 part: that is URL-safe base64, \
                 write + for - and / for _",
                char::from(b),
                at + 1
            ),
            base64::DecodeError::InvalidByte(at, b) => format!(
                "has {} at character {} of its base64 part, which is not a base64 character",
                if b.is_ascii_graphic() {
                    format!("{:?}", char::from(b))
                } else {
                    format!("byte {b:#04x}")
                },
                at + 1
            ),
            base64::DecodeError::InvalidLength(n) => format!(
                "has a base64 part of {n} characters, which no padded base64 text has \
                 (a multiple of 4, ending in = or == if need be): is it cut short?"
            ),
            base64::DecodeError::InvalidLastSymbol(at, _) => format!(
                "has a base64 part whose last character (character {}) does not end \
                 base64 text: is it cut short or mistyped?",
                at + 1
            ),
            base64::DecodeError::InvalidPadding => {
                "has a base64 part with the = padding in the wrong place or missing".to_owned()
            }
        };
        format!("is not a whsec_ secret: it {wrong}; {SECRET_FORM}")
    })?;
    if key.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "is too short: it holds {} bytes, and at least {MIN_SECRET_BYTES} bytes are needed; \
             {SECRET_FORM}",
            key.len()
        ));
    }
    Ok(key)
}

/// Each endpoint's signing key, in config order: its configured secret, or
/// the one generated for it in `<data_dir>/webhooks/<name>.secret` (made on
/// the first start, mode 0600, then read back). Fails, naming the endpoint
/// and the file, when a secret is unusable or the file cannot be made.
pub(crate) fn signing_keys(
    configs: &[WebhookConfig],
    data_dir: &Path,
) -> Result<Vec<SigningKey>, WebhookConfigError> {
    let dir = data_dir.join(super::DIR);
    let mut keys = Vec::with_capacity(configs.len());
    for (index, config) in configs.iter().enumerate() {
        let fail = |reason: String| WebhookConfigError {
            index,
            name: config.name.clone(),
            reason,
        };
        if let Some(key) = config.validate(index, configs)? {
            keys.push(SigningKey {
                key,
                generated: None,
            });
            continue;
        }
        let path = dir.join(format!("{}.secret", config.name));
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        let text = keys::load_or_generate_with(&path, "webhook signing", || {
            let mut raw = [0u8; GENERATED_SECRET_BYTES];
            rand::fill(&mut raw);
            format!("whsec_{}", BASE64.encode(raw)).into_bytes()
        })
        .map_err(|e| fail(e.to_string()))?;
        let text = String::from_utf8(text).unwrap_or_default();
        let key = decode_secret(&text).map_err(|reason| {
            fail(format!(
                "the generated secret in {} {reason} (delete the file to have a new one \
                 generated, then set the receiver up with it again)",
                path.display()
            ))
        })?;
        keys.push(SigningKey {
            key,
            generated: Some(Secret::from(text.as_str())),
        });
    }
    Ok(keys)
}

/// The `webhook-signature` header value.
pub(crate) fn sign(key: &[u8], id: &str, timestamp: &str, body: &str) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let key = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_malformed_secret_is_explained_in_words() {
        for (secret, words) in [
            // URL-safe base64: "Invalid symbol 45, offset 2" before.
            (
                "whsec_ab-cdefghijklmnopqrstuvw",
                &["'-'", "character 3", "URL-safe"][..],
            ),
            (
                "whsec_abc$defghijklmnopqrstuvw",
                &["'$'", "character 4", "not a base64"],
            ),
            ("whsec_abcde", &["5 characters", "cut short"]),
            ("whsec_c2hvcnQ=", &["too short", "5 bytes", "at least 16"]),
        ] {
            let reason = decode_secret(secret).unwrap_err();
            for word in words.iter().chain(&["whsec_", "base64", "openssl rand"]) {
                assert!(reason.contains(word), "{secret}: {word:?} not in {reason}");
            }
            assert!(!reason.contains(secret), "{reason}");
        }
        let generated = format!("whsec_{}", BASE64.encode([7u8; GENERATED_SECRET_BYTES]));
        assert_eq!(
            decode_secret(&generated).unwrap(),
            [7u8; GENERATED_SECRET_BYTES]
        );
    }
}
