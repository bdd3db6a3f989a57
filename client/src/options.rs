//! How to reach a server beyond its URL: [`Options`] (a bearer token and
//! TLS settings) and the [`Credentials`] interceptor that sends the token
//! with every call.

use tonic::metadata::{Ascii, MetadataValue};

use crate::Error;

/// What a token may hold, after what it held that it may not.
const TOKEN_CHARACTERS: &str = "which an HTTP header cannot carry: a token may hold printable \
     characters, spaces and tabs, but no other control characters";

/// How to reach a server beyond its URL: a bearer token, and TLS settings
/// for `https://` URLs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Sent as `authorization: Bearer <token>` with every call.
    pub token: Option<String>,
    /// The CA certificate (PEM) the server's certificate must chain to;
    /// without it, the public web roots are used.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// A client certificate and key (PEM), for servers that require mutual
    /// TLS.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the server's certificate must carry, when it is not the
    /// URL's host.
    pub domain: Option<String>,
}

impl Options {
    /// Checks what can be checked before connecting: that the token can be
    /// sent in an HTTP header ([`Error::InvalidToken`] says which character
    /// cannot, never the token).
    pub fn check(&self) -> Result<(), Error> {
        self.bearer().map(|_| ())
    }

    /// The `authorization` value for the token, `Bearer <token>`, without
    /// the whitespace around the token (the server ignores it too, and a
    /// token read from a file often ends in a newline).
    pub(crate) fn bearer(&self) -> Result<Option<MetadataValue<Ascii>>, Error> {
        let Some(token) = &self.token else {
            return Ok(None);
        };
        let space = |c: char| c.is_ascii_whitespace();
        let trimmed = token.trim_matches(space);
        if trimmed.is_empty() {
            // `Bearer ` alone: a server with tokens refuses it as if none
            // were sent, which hides the cause (an unset variable in
            // `AUDITLOG_TOKEN=$VAR`, an empty token file).
            return Err(Error::InvalidToken {
                reason: "it is empty (or only whitespace): give the token, or none at all for a \
                         server without tokens"
                    .to_owned(),
            });
        }
        let lead = token.len() - token.trim_start_matches(space).len();
        if let Some((i, c)) = trimmed
            .char_indices()
            .find(|&(_, c)| c.is_control() && c != '\t')
        {
            let position = token[..lead + i].chars().count() + 1;
            let what = match c {
                '\n' => "a newline".to_owned(),
                '\r' => "a carriage return".to_owned(),
                '\0' => "a NUL".to_owned(),
                c => format!("a control character (U+{:04X})", u32::from(c)),
            };
            return Err(Error::InvalidToken {
                reason: format!("its character {position} is {what}, {TOKEN_CHARACTERS}"),
            });
        }
        format!("Bearer {trimmed}")
            .parse()
            .map(Some)
            .map_err(|_| Error::InvalidToken {
                reason: format!("it holds a character {TOKEN_CHARACTERS}"),
            })
    }

    /// The TLS settings for an `https://` endpoint.
    pub fn tls(&self) -> tonic::transport::ClientTlsConfig {
        let mut tls = tonic::transport::ClientTlsConfig::new();
        tls = match &self.ca_cert_pem {
            Some(ca) => tls.ca_certificate(tonic::transport::Certificate::from_pem(ca)),
            None => tls.with_webpki_roots(),
        };
        if let Some((cert, key)) = &self.identity_pem {
            tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        if let Some(domain) = &self.domain {
            tls = tls.domain_name(domain.clone());
        }
        tls
    }
}

/// Adds the bearer token to every call.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub(crate) token: Option<MetadataValue<Ascii>>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.token {
            req.metadata_mut().insert("authorization", token.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> Result<Option<MetadataValue<Ascii>>, Error> {
        Options {
            token: Some(token.to_owned()),
            ..Options::default()
        }
        .bearer()
    }

    #[test]
    fn an_empty_token_is_refused_rather_than_sent_as_a_bare_bearer() {
        for token in ["", " ", "\n", " \t\r\n"] {
            let e = bearer(token).unwrap_err().to_string();
            assert!(
                e.starts_with("invalid token: it is empty"),
                "{token:?}: {e}"
            );
        }
        assert!(
            Options::default().bearer().unwrap().is_none(),
            "no token sends none"
        );
        assert_eq!(bearer(" t\n").unwrap().unwrap(), "Bearer t");
    }

    #[test]
    fn a_token_that_a_header_cannot_carry_is_named_by_its_character_never_shown() {
        for (token, said) in [
            ("bad\ntoken", "its character 4 is a newline"),
            (" ab\rc", "its character 4 is a carriage return"),
            ("x\u{7}", "its character 2 is a control character (U+0007)"),
            (
                "x\u{7f}y",
                "its character 2 is a control character (U+007F)",
            ),
            (
                "\u{e9}\u{85}",
                "its character 2 is a control character (U+0085)",
            ),
        ] {
            let e = bearer(token).unwrap_err().to_string();
            assert!(e.starts_with("invalid token: "), "{e}");
            assert!(e.contains(said), "{token:?}: {e}");
            assert!(e.contains("printable characters, spaces and tabs"), "{e}");
            assert!(
                !e.contains("URL") && !e.contains("bad") && !e.contains(token),
                "{e}"
            );
        }
    }

    #[test]
    fn a_token_is_sent_without_the_whitespace_around_it() {
        for token in ["s3cret", "s3cret\n", "  s3cret\r\n", "\ts3cret "] {
            let value = bearer(token).unwrap().unwrap();
            assert_eq!(value.to_str().unwrap(), "Bearer s3cret", "{token:?}");
        }
        assert_eq!(
            bearer("a b\tc").unwrap().unwrap().to_str().unwrap(),
            "Bearer a b\tc"
        );
        assert!(Options::default().bearer().unwrap().is_none());
    }
}
