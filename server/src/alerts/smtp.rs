//! One SMTP conversation with the relay, over a connection that takes in
//! at most [`READ_CAP`] bytes from it.
//!
//! Lettre's own transport reads a response a line at a time and checks the
//! line's length only once it has ended: a relay sending a line without
//! end (a greeting, an answer) is read into memory for as long as the
//! conversation's deadline lets it, gigabytes over a fast link. So the
//! conversation here is lettre's (`AsyncSmtpConnection`: greeting, EHLO,
//! STARTTLS, login, message, QUIT) on a stream of ours that refuses to read
//! past the cap. Implicit TLS runs on top of that stream, so the cap counts
//! what arrives on the wire, handshake included.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::channels::Security;

/// The most one conversation takes in from the relay. A whole conversation
/// is a dozen short answers (each at most lettre's 100,000 bytes) and, with
/// TLS, a certificate chain: well under this.
pub(super) const READ_CAP: u64 = 1 << 20;

/// Where mail goes, and how.
pub(super) struct Relay {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub credentials: Option<Credentials>,
}

/// Why a conversation failed.
pub(super) enum SmtpError {
    /// The relay's answer, or lettre's reading of the conversation.
    Smtp(lettre::transport::smtp::Error),
    /// No connection.
    Connect(String),
}

impl Relay {
    /// Sends `email` to `envelope`'s recipients: the whole conversation,
    /// with no deadline of its own (the caller's covers it).
    pub(super) async fn send(&self, envelope: &Envelope, email: &[u8]) -> Result<(), SmtpError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                SmtpError::Connect(format!(
                    "cannot connect to {}:{}: {e}",
                    self.host, self.port
                ))
            })?;
        let capped = Capped {
            inner: tcp,
            read: 0,
        };
        let hello = ClientId::default();
        let tls = || TlsParameters::new(self.host.clone()).map_err(SmtpError::Smtp);
        let mut conn = match self.security {
            Security::None => {
                AsyncSmtpConnection::connect_with_transport(Box::new(capped), &hello).await?
            }
            Security::Starttls => {
                let mut conn =
                    AsyncSmtpConnection::connect_with_transport(Box::new(capped), &hello).await?;
                // Refused when the relay offers no STARTTLS: nothing more is
                // said in clear text.
                conn.starttls(tls()?, &hello).await?;
                conn
            }
            Security::Tls => {
                let encrypted = Encrypted::over(capped, tls()?).await?;
                AsyncSmtpConnection::connect_with_transport(Box::new(encrypted), &hello).await?
            }
        };
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials).await?;
        }
        conn.send(envelope, email).await?;
        conn.abort().await;
        Ok(())
    }
}

impl From<lettre::transport::smtp::Error> for SmtpError {
    fn from(e: lettre::transport::smtp::Error) -> SmtpError {
        SmtpError::Smtp(e)
    }
}

/// The TCP connection, refusing to read more than [`READ_CAP`] bytes.
#[derive(Debug)]
struct Capped {
    inner: TcpStream,
    read: u64,
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read >= READ_CAP {
            return Poll::Ready(Err(io::Error::other(format!(
                "the SMTP server sent more than {READ_CAP} bytes in one conversation; \
                 not reading more"
            ))));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let got = buf.filled().len() - before;
        self.read += got as u64;
        polled
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Capped {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

/// Implicit TLS over [`Capped`]: lettre's TLS stream (the type lettre
/// marks as not meant to be public, the one way to its TLS set-up on a
/// stream of ours), seen through tokio's I/O traits.
#[allow(deprecated)]
#[derive(Debug)]
struct Encrypted(lettre::transport::smtp::client::AsyncNetworkStream);

#[allow(deprecated)]
impl Encrypted {
    async fn over(capped: Capped, tls: TlsParameters) -> Result<Encrypted, SmtpError> {
        let mut stream = lettre::transport::smtp::client::AsyncNetworkStream::use_existing_tokio1(
            Box::new(capped),
        );
        stream.upgrade_tls(tls).await?;
        Ok(Encrypted(stream))
    }
}

impl AsyncRead for Encrypted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        match futures::io::AsyncRead::poll_read(Pin::new(&mut self.0), cx, unfilled) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Encrypted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        futures::io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures::io::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures::io::AsyncWrite::poll_close(Pin::new(&mut self.0), cx)
    }
}

impl AsyncTokioStream for Encrypted {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }
}

/// The most of a relay's words kept in an error: lettre takes answers of
/// up to 100,000 bytes, a status or log line needs far less.
const SAID_MAX: usize = 500;

/// `error` (which quotes the relay's answer) fit for a status, a log line
/// and a terminal: control characters and bidi overrides written as
/// `\u{..}`, cut after [`SAID_MAX`] characters.
pub(super) fn relay_said(error: &str) -> String {
    let mut out = String::new();
    for (n, c) in error.chars().enumerate() {
        if n == SAID_MAX {
            out.push_str(" […]");
            break;
        }
        if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}
