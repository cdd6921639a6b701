//! The gRPC listener's connections, bounded: at most `max_connections` open
//! (more are closed on accept), and each closed when it sends nothing for
//! `handshake_timeout` after accept or `idle_timeout` later on.
//!
//! Below TLS and HTTP/2, so it also bounds what never gets that far: port
//! scans, slow-loris clients that connect and say nothing, half-open
//! connections. A live agent is never idle that long: it answers the
//! collector's HTTP/2 keepalive pings.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::telemetry::{GaugeHold, LogThrottle, Telemetry};

/// Bounds on the gRPC server (`[limits]` in collector.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcLimits {
    /// Open TCP connections; more are closed on accept.
    pub max_connections: usize,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`: streams one connection may
    /// open at once (an agent needs one).
    pub max_streams_per_connection: u32,
    /// Streams open without a valid hello yet; more are refused at once.
    pub max_pending_hellos: usize,
    /// How long a stream may take to send its hello.
    pub hello_timeout: Duration,
    /// How long a new connection may take to send its first byte, and to
    /// finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2 pings to each connection this often...
    pub keepalive_interval: Duration,
    /// ...which must be answered within this.
    pub keepalive_timeout: Duration,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_256,
            max_streams_per_connection: 8,
            max_pending_hellos: 256,
            hello_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// HTTP/2 flow-control windows the collector grants each agent stream and
/// connection: the most a peer may send that the collector has not read.
/// hyper's default is 1 MiB each, i.e. up to 10 GiB held for 10,000 agents
/// that push while their stream waits for a commit; an agent's batch is
/// kilobytes, and a 4 MiB message still passes (in several window updates).
pub const STREAM_WINDOW_BYTES: u32 = 256 << 10;
pub const CONNECTION_WINDOW_BYTES: u32 = 512 << 10;

/// After an accept error other than a reset connection (typically out of
/// file descriptors), accepting again at once would spin.
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// Accepted connections of the gRPC listener, bounded (see the module doc).
pub struct BoundedIncoming {
    listener: TcpListener,
    /// One permit per open connection.
    slots: Arc<Semaphore>,
    max_connections: usize,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    telemetry: Arc<Telemetry>,
    throttle: LogThrottle,
    pause: Option<Pin<Box<Sleep>>>,
}

impl BoundedIncoming {
    pub fn new(listener: TcpListener, limits: &GrpcLimits, telemetry: Arc<Telemetry>) -> Self {
        warn_if_file_limit_is_low(limits.max_connections);
        Self {
            listener,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            max_connections: limits.max_connections,
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: limits.idle_timeout,
            telemetry,
            throttle: LogThrottle::default(),
            pause: None,
        }
    }
}

impl Stream for BoundedIncoming {
    type Item = Result<BoundedConnection, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = this.pause.as_mut() {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            match ready!(this.listener.poll_accept(cx)) {
                Ok((stream, peer)) => match Arc::clone(&this.slots).try_acquire_owned() {
                    Ok(slot) => {
                        return Poll::Ready(Some(Ok(BoundedConnection {
                            stream,
                            _slot: slot,
                            _open: this.telemetry.hold(|t| &t.grpc_connections_open),
                            handshake_timeout: this.handshake_timeout,
                            idle_timeout: this.idle_timeout,
                            last_read: Instant::now(),
                            received_any: false,
                            deadline: Box::pin(tokio::time::sleep(this.handshake_timeout)),
                            telemetry: Arc::clone(&this.telemetry),
                        })));
                    }
                    Err(_) => {
                        Telemetry::add(&this.telemetry.grpc_connections_refused, 1);
                        if let Some(held_back) = this.throttle.allow("connections", "") {
                            tracing::warn!(
                                message = "Closed a new gRPC connection: limits.max_connections are open.",
                                %peer,
                                limit = this.max_connections,
                                held_back,
                            );
                        }
                    }
                },
                Err(error) => {
                    Telemetry::add(&this.telemetry.grpc_accept_errors, 1);
                    if is_connection_error(&error) {
                        continue;
                    }
                    if let Some(held_back) = this.throttle.allow("accept", "") {
                        tracing::warn!(message = "Cannot accept gRPC connections; pausing 1 s.", %error, held_back);
                    }
                    this.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_PAUSE)));
                }
            }
        }
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Warns at start when the process may not open `max_connections` sockets
/// (systemd's default soft limit is 1024): accepts would then fail with
/// "too many open files" long before the limit is reached.
fn warn_if_file_limit_is_low(max_connections: usize) {
    // Room for the database, the HTTP API and outgoing notifications.
    const OTHER_FILES: usize = 128;
    let Some(soft_limit) = open_file_limit() else {
        return;
    };
    if soft_limit < max_connections + OTHER_FILES {
        tracing::warn!(
            message = "The open-file limit is below limits.max_connections; raise it (systemd: LimitNOFILE=) or lower the limit.",
            open_file_limit = soft_limit,
            max_connections,
        );
    }
}

/// The soft `RLIMIT_NOFILE` from `/proc/self/limits` (Linux); `None` elsewhere.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&limits)
}

fn parse_open_file_limit(limits: &str) -> Option<usize> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One accepted connection: holds its slot until dropped and fails its
/// reads once the peer has been silent too long.
pub struct BoundedConnection {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    _open: GaugeHold,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    /// When the last byte arrived (accept time before the first).
    last_read: Instant,
    received_any: bool,
    deadline: Pin<Box<Sleep>>,
    telemetry: Arc<Telemetry>,
}

impl BoundedConnection {
    /// Called when a read is pending: `Ready(Err)` once the peer has been
    /// silent past its allowance, else `Pending` with the timer armed.
    fn poll_silence(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let allowance = if self.received_any {
            self.idle_timeout
        } else {
            self.handshake_timeout
        };
        let due = self.last_read + allowance;
        if self.deadline.deadline() != due {
            self.deadline.as_mut().reset(due);
        }
        ready!(self.deadline.as_mut().poll(cx));
        Telemetry::add(&self.telemetry.grpc_connections_idle_closed, 1);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("nothing received for {allowance:?}"),
        )))
    }
}

impl Drop for BoundedConnection {
    fn drop(&mut self) {
        if !self.received_any {
            Telemetry::add(&self.telemetry.grpc_connections_silent, 1);
        }
    }
}

impl Connected for BoundedConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for BoundedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.received_any = true;
                    this.last_read = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.poll_silence(cx),
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
        }
    }
}

impl AsyncWrite for BoundedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;

    use super::*;

    fn limits(max_connections: usize) -> GrpcLimits {
        GrpcLimits {
            max_connections,
            handshake_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(400),
            ..GrpcLimits::default()
        }
    }

    async fn listen(
        limits: &GrpcLimits,
    ) -> (BoundedIncoming, std::net::SocketAddr, Arc<Telemetry>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let telemetry = Arc::new(Telemetry::default());
        (
            BoundedIncoming::new(listener, limits, Arc::clone(&telemetry)),
            address,
            telemetry,
        )
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_on_accept_and_slots_come_back() {
        let (mut incoming, address, telemetry) = listen(&limits(2)).await;
        let _first = TcpStream::connect(address).await.unwrap();
        let _second = TcpStream::connect(address).await.unwrap();
        let held = [
            incoming.next().await.unwrap().unwrap(),
            incoming.next().await.unwrap().unwrap(),
        ];
        let mut third = TcpStream::connect(address).await.unwrap();
        // Accepted while full: closed at once, nothing is handed on.
        let handed_on = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
        assert!(
            handed_on.is_err(),
            "a connection past the limit was handed on"
        );
        let mut byte = [0u8; 1];
        let read = third.read(&mut byte).await;
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "closed by the collector: {read:?}"
        );
        assert_eq!(
            telemetry.grpc_connections_refused.load(Ordering::Relaxed),
            1
        );

        drop(held);
        let _fourth = TcpStream::connect(address).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert_eq!(telemetry.grpc_connections_open.load(Ordering::Relaxed), 1);
        drop(accepted);
        assert_eq!(telemetry.grpc_connections_open.load(Ordering::Relaxed), 0);
        assert_eq!(
            telemetry.grpc_connections_silent.load(Ordering::Relaxed),
            3,
            "none of the accepted ones sent a byte"
        );
    }

    #[tokio::test]
    async fn a_silent_connection_is_cut_after_the_handshake_timeout_a_quiet_one_after_the_idle_timeout()
     {
        let (mut incoming, address, telemetry) = listen(&limits(4)).await;
        let _silent = TcpStream::connect(address).await.unwrap();
        let mut connection = incoming.next().await.unwrap().unwrap();
        let started = Instant::now();
        let mut buffer = [0u8; 16];
        let error = connection.read(&mut buffer).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));

        let mut talker = TcpStream::connect(address).await.unwrap();
        let mut connection = incoming.next().await.unwrap().unwrap();
        talker.write_all(b"hi").await.unwrap();
        assert_eq!(connection.read(&mut buffer).await.unwrap(), 2);
        let started = Instant::now();
        let error = connection.read(&mut buffer).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() >= Duration::from_millis(390),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            telemetry
                .grpc_connections_idle_closed
                .load(Ordering::Relaxed),
            2
        );
    }

    #[test]
    fn reads_the_soft_open_file_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             95000                95000                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_file_limit(limits), Some(1024));
        assert_eq!(parse_open_file_limit("nothing here"), None);
    }
}
