//! The accept loop: which connections the transport gets, and how soon each
//! must start talking.
//!
//! - At most `max_connections` are open at a time. Each accepted connection
//!   holds a slot until it closes; one accepted while none is free is closed
//!   at once, so a flood of connections costs the server no file descriptor
//!   beyond the cap, and the log's own files can always be opened.
//! - A new connection must send its first [`HANDSHAKE_BYTES`] within
//!   `handshake_timeout_secs`, or it is closed: 33 bytes are the HTTP/2
//!   client preface and the header of its SETTINGS frame, and less than any
//!   TLS ClientHello. A connection that sends nothing would otherwise stay
//!   open for ever: the HTTP/2 keepalive pings only start once the handshake
//!   is done. After that, keepalive reaps peers that stop answering.
//! - Each gets TCP_NODELAY (Nagle's algorithm would hold back a response's
//!   last small write until the peer's delayed ACK) and TCP keepalive after
//!   `keepalive_secs` idle.
//! - At start the soft limit on open files is raised to the hard limit, and
//!   the connection cap is lowered if the limit leaves fewer than
//!   [`RESERVED_FDS`] descriptors beside it.
//!
//! An accept error that is about the whole process (no descriptor left) is
//! retried after a short pause rather than in a busy loop.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// What a connection must send within the handshake timeout: the 24-byte
/// HTTP/2 preface and the 9-byte header of the SETTINGS frame that follows.
pub(crate) const HANDSHAKE_BYTES: usize = 33;

/// File descriptors left beside the connections for the log's files, the
/// lock, the webhooks' and alerts' own connections.
pub(crate) const RESERVED_FDS: u64 = 256;

/// How long to pause accepting after the process ran out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How often at most a refused connection is logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The accepted connections, as the transport's incoming stream.
pub(crate) struct Incoming {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    max: usize,
    handshake_timeout: Duration,
    keepalive: socket2::TcpKeepalive,
    /// Set while accepting pauses after an error.
    pause: Option<Pin<Box<Sleep>>>,
    /// Connections closed for want of a slot since the last warning, and when
    /// that was.
    refused: u64,
    warned: Option<Instant>,
}

impl Incoming {
    /// Accepts on `listener`, at most `max_connections` open at a time, with
    /// TCP keepalive probes after `keepalive` idle.
    pub(crate) fn new(
        listener: TcpListener,
        max_connections: usize,
        handshake_timeout: Duration,
        keepalive: Duration,
    ) -> Incoming {
        Incoming {
            listener,
            slots: Arc::new(Semaphore::new(max_connections)),
            max: max_connections,
            handshake_timeout,
            keepalive: socket2::TcpKeepalive::new().with_time(keepalive),
            pause: None,
            refused: 0,
            warned: None,
        }
    }

    /// Notes a connection closed for want of a slot; logs at most every
    /// [`WARN_EVERY`].
    fn note_refused(&mut self) {
        self.refused += 1;
        if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                refused = self.refused,
                max_connections = self.max,
                "connections closed at once: the server is at max_connections"
            );
            self.refused = 0;
            self.warned = Some(Instant::now());
        }
    }
}

impl futures::Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(pause) = &mut self.pause {
                ready!(pause.as_mut().poll(cx));
                self.pause = None;
            }
            let (stream, _peer) = match ready!(self.listener.poll_accept(cx)) {
                Ok(accepted) => accepted,
                // The peer gave up before it was accepted: nothing to pause for.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; pausing briefly");
                    self.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_PAUSE)));
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                drop(stream);
                self.note_refused();
                continue;
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
            if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&self.keepalive) {
                tracing::debug!(error = %e, "could not set TCP keepalive");
            }
            return Poll::Ready(Some(Ok(Conn {
                stream,
                _slot: slot,
                handshake: Some(Handshake {
                    seen: 0,
                    deadline: Box::pin(tokio::time::sleep(self.handshake_timeout)),
                }),
            })));
        }
    }
}

/// Errors about one connection rather than the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// An accepted connection: its slot is given back when it is dropped.
pub(crate) struct Conn {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// Until the first [`HANDSHAKE_BYTES`] have arrived.
    handshake: Option<Handshake>,
}

/// A connection's progress through its first bytes.
struct Handshake {
    seen: usize,
    deadline: Pin<Box<Sleep>>,
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        let Some(handshake) = &mut this.handshake else {
            return read;
        };
        if let Poll::Ready(Ok(())) = read {
            handshake.seen += buf.filled().len() - before;
            if handshake.seen >= HANDSHAKE_BYTES {
                this.handshake = None;
            }
            return read;
        }
        if read.is_pending() && handshake.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection sent no HTTP/2 preface within handshake_timeout_secs",
            )));
        }
        read
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Raises the soft limit on open files to the hard limit, and returns the
/// connection cap that leaves [`RESERVED_FDS`] beside it: `max_connections`,
/// or less when the limit is tighter.
pub(crate) fn raise_fd_limit(max_connections: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = getrlimit(Resource::Nofile),
            Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
        }
    }
    let Some(soft) = limit.current else {
        tracing::info!(max_connections, "open-file limit: unlimited");
        return max_connections;
    };
    let room = usize::try_from(soft.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    let cap = max_connections.min(room.max(1));
    if cap < max_connections {
        tracing::warn!(
            open_files = soft,
            max_connections,
            lowered_to = cap,
            "the open-file limit leaves too few descriptors for max_connections; raise \
             `ulimit -n` (the hard limit) or lower max_connections"
        );
    } else {
        tracing::info!(open_files = soft, max_connections, "open-file limit");
    }
    cap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fd_limit_is_raised_and_leaves_room_for_the_log() {
        let cap = raise_fd_limit(usize::MAX);
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(limit.current, limit.maximum);
        if let Some(soft) = limit.current {
            assert_eq!(cap as u64, soft.saturating_sub(RESERVED_FDS).max(1));
        }
        assert_eq!(raise_fd_limit(10), 10);
    }
}
