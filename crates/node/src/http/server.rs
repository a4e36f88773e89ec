//! The node's HTTP server: hyper's HTTP/1.1 connections under an accept
//! loop of ours, so that no client, slow or many, can take the node's file
//! descriptors or starve other clients.
//!
//! - **Connection caps.** At most `max_connections` connections at once,
//!   and `max_connections_per_address` from one [`ClientAddress`] (an IPv4
//!   address or an IPv6 /64; a trusted proxy's connections are not counted
//!   per address). At a cap, the new connection replaces the connection
//!   (of that address, or of anyone at the global cap) that has been idle
//!   the longest (no request in progress for at least a second); if none
//!   is idle, the new connection is closed. The listener keeps accepting
//!   either way, and the node raises its open-file limit at start and
//!   lowers `max_connections` to what that limit leaves room for
//!   ([`fit_connections_to_file_limit`]).
//! - **Timeouts.** A request's head (request line and headers) must arrive
//!   within `header_timeout` of its first byte, and a new connection's
//!   first request must begin within it too (a slowloris trickling header
//!   bytes is cut there); its body within `body_timeout` of the end of
//!   the head (else 408); a kept-alive connection may wait `idle_timeout`
//!   for its next request. One task checks every connection four times a
//!   second.
//! - **Bodies refused early are drained.** A handler that answers without
//!   reading the whole body (413 over the size limit, 429 before reading)
//!   leaves the rest to a drain, up to [`MAX_DRAIN_BYTES`] and the body's
//!   deadline, while the answer goes out: closing a socket with unread
//!   data makes the kernel send a reset, and the client, still sending,
//!   would lose the answer.
//! - **The client's address** ([`ClientAddress`], through
//!   [`TrustedProxies`] for `X-Forwarded-For`) and the TCP peer
//!   (`ConnectInfo<SocketAddr>`) are in every request's extensions.
//!
//! HTTP/1.1 only: browsers reach the node over HTTP/1.1 (a TLS proxy in
//! front may speak HTTP/2 to them).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

use crate::config::HttpSettings;
use crate::http::client_address::{ClientAddress, TrustedProxies};

/// Connections open (gauge).
pub(crate) const METRIC_HTTP_CONNECTIONS: &str = "quorumkey_http_connections";
/// Connections closed by the node, by `reason`: `header_timeout`, `idle`,
/// `evicted` (replaced at a cap).
pub(crate) const METRIC_HTTP_CLOSED: &str = "quorumkey_http_connections_closed_total";
/// Connections refused at accept, by `reason`: `per_address`,
/// `max_connections` (a cap, with no idle connection to replace).
pub(crate) const METRIC_HTTP_REFUSED: &str = "quorumkey_http_connections_refused_total";

/// Most bytes of a refused body read and thrown away so that the client
/// gets the answer.
pub(crate) const MAX_DRAIN_BYTES: usize = 16 * 1024 * 1024;
/// Largest request head (request line and headers) hyper buffers.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A connection idle for less than this is not replaced at a cap (a new
/// connection's request may be on its way).
pub(crate) const EVICTION_GRACE: Duration = Duration::from_secs(1);
/// How often connections are checked against the timeouts.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// File descriptors the node keeps for other uses than client connections
/// (its stores and logs, consensus storage, peers, outgoing HTTP).
pub const RESERVED_FILES: u64 = 512;
/// The fewest client connections a node runs with.
pub const MIN_CONNECTIONS: u64 = 64;

/// The server's limits, checked.
#[derive(Clone, Debug)]
pub(crate) struct ServerLimits {
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one client address.
    pub max_connections_per_address: usize,
    /// See [`HttpSettings::header_timeout_secs`].
    pub header_timeout: Duration,
    /// See [`HttpSettings::body_timeout_secs`].
    pub body_timeout: Duration,
    /// See [`HttpSettings::idle_timeout_secs`].
    pub idle_timeout: Duration,
    /// Whose `X-Forwarded-For` counts.
    pub trusted_proxies: TrustedProxies,
}

impl ServerLimits {
    /// The limits `settings` describe.
    pub fn new(settings: &HttpSettings) -> Result<Self, String> {
        settings.validate()?;
        Ok(Self {
            max_connections: settings.max_connections as usize,
            max_connections_per_address: settings.max_connections_per_address as usize,
            header_timeout: Duration::from_secs(settings.header_timeout_secs),
            body_timeout: Duration::from_secs(settings.body_timeout_secs),
            idle_timeout: Duration::from_secs(settings.idle_timeout_secs),
            trusted_proxies: TrustedProxies::parse(&settings.trusted_proxies)?,
        })
    }
}

/// The process may open too few files to serve clients.
#[derive(Debug, thiserror::Error)]
#[error(
    "this process may open only {files} files (RLIMIT_NOFILE), too few to serve clients: the node keeps {RESERVED_FILES} for itself and needs room for at least {MIN_CONNECTIONS} connections; raise the limit (e.g. `ulimit -n 8192`, or LimitNOFILE= in a systemd unit)"
)]
pub struct FileLimitError {
    /// The limit (RLIMIT_NOFILE).
    pub files: u64,
}

/// Raises this process's soft limit on open files to its hard limit, and
/// returns how many client connections fit: `wanted`, or fewer if the limit
/// leaves less than that beside [`RESERVED_FILES`]. Refuses a limit that
/// leaves fewer than [`MIN_CONNECTIONS`].
pub fn fit_connections_to_file_limit(wanted: usize) -> Result<usize, FileLimitError> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut current = limit.current;
    if limit.current != limit.maximum {
        let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => current = limit.maximum,
            Err(error) => tracing::warn!(%error, "cannot raise the open-file limit to its hard limit"),
        }
    }
    // `None` is unlimited.
    let Some(files) = current else { return Ok(wanted) };
    let room = files.saturating_sub(RESERVED_FILES);
    if room < MIN_CONNECTIONS {
        return Err(FileLimitError { files });
    }
    let fitted = usize::try_from(room).unwrap_or(usize::MAX).min(wanted);
    if fitted < wanted {
        tracing::warn!(
            files,
            wanted,
            fitted,
            "http.max_connections lowered to what the open-file limit (RLIMIT_NOFILE) leaves room for"
        );
    }
    Ok(fitted)
}

/// Milliseconds since the server started (0 is reserved for "never").
#[derive(Clone, Copy, Debug)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        (self.0.elapsed().as_millis() as u64).saturating_add(1)
    }
}

/// Why the node closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseReason {
    HeaderTimeout,
    Idle,
    Evicted,
}

impl CloseReason {
    fn label(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::Idle => "idle",
            Self::Evicted => "evicted",
        }
    }
}

/// One connection, as the registry and its task share it.
#[derive(Debug)]
struct Connection {
    id: u64,
    /// `None` for a trusted proxy (not counted per address).
    address: Option<ClientAddress>,
    /// Requests in progress (head read, answer or body not finished).
    in_flight: AtomicU64,
    /// Requests that began on it.
    served: AtomicU64,
    /// When it last had no request in progress (or was accepted).
    idle_since: AtomicU64,
    /// When the first byte of a request head not yet complete came; 0 if
    /// none is coming.
    head_started: AtomicU64,
    /// Counted out of the registry's totals (closing or closed).
    retired: AtomicBool,
    close: tokio::sync::Notify,
}

impl Connection {
    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    connections: HashMap<u64, Arc<Connection>>,
    /// Connections not retired.
    live: usize,
    per_address: HashMap<ClientAddress, usize>,
}

impl Registry {
    /// Counts `connection` out (once) and tells its task to close it.
    fn retire(&mut self, connection: &Connection, reason: Option<CloseReason>) {
        if connection.retired.swap(true, Ordering::AcqRel) {
            return;
        }
        self.live = self.live.saturating_sub(1);
        if let Some(address) = connection.address
            && let Some(count) = self.per_address.get_mut(&address)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_address.remove(&address);
            }
        }
        if let Some(reason) = reason {
            metrics::counter!(METRIC_HTTP_CLOSED, "reason" => reason.label()).increment(1);
            connection.close.notify_one();
        }
    }

    /// The live connection idle the longest (at least [`EVICTION_GRACE`])
    /// among those `eligible`.
    fn longest_idle(&self, now: u64, eligible: impl Fn(&Connection) -> bool) -> Option<Arc<Connection>> {
        let grace = EVICTION_GRACE.as_millis() as u64;
        self.connections
            .values()
            .filter(|c| !c.retired.load(Ordering::Acquire) && c.is_idle() && eligible(c))
            .map(|c| (c.idle_since.load(Ordering::Acquire), c))
            .filter(|(since, _)| now.saturating_sub(*since) >= grace)
            .min_by_key(|(since, _)| *since)
            .map(|(_, c)| c.clone())
    }
}

#[derive(Debug)]
struct Shared {
    limits: ServerLimits,
    clock: Clock,
    registry: Mutex<Registry>,
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a connection from `peer`, replacing an idle one at a cap;
    /// `None` if it must be closed.
    fn admit(&self, peer: SocketAddr) -> Option<Arc<Connection>> {
        let trusted = self.limits.trusted_proxies.contains(peer.ip());
        let address = (!trusted).then(|| ClientAddress::of(peer.ip()));
        let now = self.clock.now();
        let mut registry = self.registry();
        if let Some(address) = address
            && registry.per_address.get(&address).copied().unwrap_or(0) >= self.limits.max_connections_per_address
        {
            match registry.longest_idle(now, |c| c.address == Some(address)) {
                Some(victim) => registry.retire(&victim, Some(CloseReason::Evicted)),
                None => {
                    metrics::counter!(METRIC_HTTP_REFUSED, "reason" => "per_address").increment(1);
                    return None;
                }
            }
        }
        if registry.live >= self.limits.max_connections {
            match registry.longest_idle(now, |_| true) {
                Some(victim) => registry.retire(&victim, Some(CloseReason::Evicted)),
                None => {
                    metrics::counter!(METRIC_HTTP_REFUSED, "reason" => "max_connections").increment(1);
                    return None;
                }
            }
        }
        registry.next_id += 1;
        let connection = Arc::new(Connection {
            id: registry.next_id,
            address,
            in_flight: AtomicU64::new(0),
            served: AtomicU64::new(0),
            idle_since: AtomicU64::new(now),
            head_started: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            close: tokio::sync::Notify::new(),
        });
        registry.connections.insert(connection.id, connection.clone());
        registry.live += 1;
        if let Some(address) = address {
            *registry.per_address.entry(address).or_insert(0) += 1;
        }
        Some(connection)
    }

    /// The connection's task ended.
    fn finish(&self, connection: &Connection) {
        let mut registry = self.registry();
        registry.retire(connection, None);
        registry.connections.remove(&connection.id);
    }

    /// Closes the connections past a timeout.
    fn check_timeouts(&self) {
        let now = self.clock.now();
        let header = self.limits.header_timeout.as_millis() as u64;
        let idle = self.limits.idle_timeout.as_millis() as u64;
        let mut registry = self.registry();
        let mut due = Vec::new();
        for connection in registry.connections.values() {
            if connection.retired.load(Ordering::Acquire) || !connection.is_idle() {
                continue;
            }
            let head_started = connection.head_started.load(Ordering::Acquire);
            let idle_since = connection.idle_since.load(Ordering::Acquire);
            let reason = if head_started != 0 {
                (now.saturating_sub(head_started) > header).then_some(CloseReason::HeaderTimeout)
            } else if connection.served.load(Ordering::Acquire) == 0 {
                (now.saturating_sub(idle_since) > header).then_some(CloseReason::HeaderTimeout)
            } else {
                (now.saturating_sub(idle_since) > idle).then_some(CloseReason::Idle)
            };
            if let Some(reason) = reason {
                due.push((connection.clone(), reason));
            }
        }
        for (connection, reason) in due {
            registry.retire(&connection, Some(reason));
        }
        metrics::gauge!(METRIC_HTTP_CONNECTIONS).set(registry.live as f64);
    }
}

/// A request in progress on a connection: held by its answer's future and
/// by its body; the connection is idle again when the last one goes.
#[derive(Clone, Debug)]
struct InFlight {
    /// Dropped with the last holder.
    _request: Arc<InFlightInner>,
}

#[derive(Debug)]
struct InFlightInner {
    connection: Arc<Connection>,
    clock: Clock,
}

impl InFlight {
    fn begin(connection: &Arc<Connection>, clock: Clock) -> Self {
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        connection.served.fetch_add(1, Ordering::AcqRel);
        connection.head_started.store(0, Ordering::Release);
        Self { _request: Arc::new(InFlightInner { connection: connection.clone(), clock }) }
    }
}

impl Drop for InFlightInner {
    fn drop(&mut self) {
        self.connection.idle_since.store(self.clock.now(), Ordering::Release);
        self.connection.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket, noting when a request head begins to arrive.
struct Observed {
    stream: TcpStream,
    connection: Arc<Connection>,
    clock: Clock,
}

impl AsyncRead for Observed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before && self.connection.is_idle() {
            let _ =
                self.connection.head_started.compare_exchange(0, self.clock.now(), Ordering::AcqRel, Ordering::Acquire);
        }
        polled
    }
}

impl AsyncWrite for Observed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A request body that did not arrive within the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs())]
pub(crate) struct BodyTimeout(pub Duration);

/// The [`BodyTimeout`] in `error`'s chain of sources, if one is there.
pub(crate) fn body_timeout<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e BodyTimeout> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(timeout) = error.downcast_ref::<BodyTimeout>() {
            return Some(timeout);
        }
        current = error.source();
    }
    None
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyState {
    Reading,
    Finished,
    TimedOut,
}

/// A request body with a deadline, drained if dropped unread.
struct GuardedBody {
    inner: Option<Incoming>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    state: BodyState,
    in_flight: Option<InFlight>,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.state != BodyState::Reading {
            return Poll::Ready(None);
        }
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.state = BodyState::Finished;
                this.in_flight = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(error))) => {
                this.state = BodyState::Finished;
                Poll::Ready(Some(Err(Box::new(error))))
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.state = BodyState::TimedOut;
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state != BodyState::Reading || self.inner.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.inner, self.state) {
            (Some(inner), BodyState::Reading) => inner.size_hint(),
            _ => SizeHint::with_exact(0),
        }
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        if self.state != BodyState::Reading {
            return;
        }
        let Some(inner) = self.inner.take() else { return };
        if http_body::Body::is_end_stream(&inner) {
            return;
        }
        // Dropped inside the connection's task or a handler: a runtime is
        // there.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let deadline = self.deadline.deadline();
            runtime.spawn(drain(inner, deadline, self.in_flight.take()));
        }
    }
}

/// Reads and drops what is left of a body, up to [`MAX_DRAIN_BYTES`] and
/// `deadline`; the request stays in progress meanwhile.
async fn drain(mut body: Incoming, deadline: tokio::time::Instant, in_flight: Option<InFlight>) {
    let _ = tokio::time::timeout_at(deadline, async {
        let mut drained = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            drained = drained.saturating_add(frame.data_ref().map_or(0, Bytes::len));
            if drained > MAX_DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
    drop(in_flight);
}

/// The server: the accept loop and the timeout checks.
#[derive(Debug)]
pub(crate) struct HttpServer {
    shared: Arc<Shared>,
}

impl HttpServer {
    /// A server with `limits`.
    pub fn new(limits: ServerLimits) -> Self {
        Self {
            shared: Arc::new(Shared {
                limits,
                clock: Clock(Instant::now()),
                registry: Mutex::new(Registry::default()),
            }),
        }
    }

    /// Serves `app` on `listener` until the future is dropped.
    pub async fn serve(self, listener: TcpListener, app: Router) {
        let checker = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(CHECK_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(shared) = checker.upgrade() else { return };
                shared.check_timeouts();
            }
        });
        let mut last_warning: Option<Instant> = None;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or memory (the caps should keep
                    // this away) or a connection gone before it was
                    // accepted: keep the listener, and try again shortly.
                    if last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(%error, "accepting a client connection failed");
                        last_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let Some(connection) = self.shared.admit(peer) else {
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve_connection(self.shared.clone(), connection, stream, peer, app.clone()));
        }
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
) {
    let clock = shared.clock;
    let io = TokioIo::new(Observed { stream, connection: connection.clone(), clock });
    // The limits are read through the shared state: nothing is copied per
    // connection.
    let (body_timeout, limits) = (shared.limits.body_timeout, shared.clone());
    let on_request = connection.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let in_flight = InFlight::begin(&on_request, clock);
        let client = limits.limits.trusted_proxies.client_of(peer.ip(), request.headers());
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(client);
        parts.extensions.insert(ConnectInfo(peer));
        let body = GuardedBody {
            inner: Some(body),
            deadline: Box::pin(tokio::time::sleep(body_timeout)),
            timeout: body_timeout,
            state: BodyState::Reading,
            in_flight: Some(in_flight.clone()),
        };
        let request = Request::from_parts(parts, Body::new(body));
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            drop(in_flight);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(true).max_buf_size(MAX_HEAD_BYTES);
    let serving = builder.serve_connection(io, service);
    tokio::select! {
        served = serving => {
            if let Err(error) = served {
                tracing::debug!(%error, %peer, "client connection ended with an error");
            }
        }
        () = connection.close.notified() => {}
    }
    shared.finish(&connection);
}
