//! How to reach a server beyond its URL: [`Options`] (a bearer token and
//! TLS settings) and the [`Credentials`] interceptor that sends the token
//! with every call.

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
    pub(crate) token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.token {
            req.metadata_mut().insert("authorization", token.clone());
        }
        Ok(req)
    }
}
