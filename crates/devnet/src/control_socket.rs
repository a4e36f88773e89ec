//! How a running `quorumkey devnet` is reached: a Unix domain socket,
//! `control.sock` in the devnet directory (mode 0600, removed on exit),
//! speaking one JSON line each way per connection:
//!
//! ```text
//! -> {"command":"status"}
//! <- {"outcome":"status","nodes":[{"index":1,"state":{"kind":"running","up_secs":12},"pid":4242,
//!     "restarts":0,"rpc_url":"http://127.0.0.1:17001","log":"devnet/node-1/node.log"}, ...]}
//! -> {"command":"stop","index":3}
//! <- {"outcome":"done","message":"node 3 stopped (...)","node":{"index":3,...}}
//! -> {"command":"start","index":9}
//! <- {"outcome":"refused","reason":"node 9 does not exist (this devnet has 5 nodes)"}
//! -> {"command":"add","replace":5}
//! <- {"outcome":"done","message":"epoch 1 decided at height 212: 5 nodes, node 6 joins as index 5, ...",
//!     "node":{"index":6,...,"change":{"kind":"joining","epoch":1}}}
//! -> {"command":"remove","node":2}
//! <- {"outcome":"refused","reason":"the change to epoch 1 (node 6 replaces node 5) is under way; ..."}
//! ```
//!
//! The supervisor holds an exclusive lock on the devnet directory for as
//! long as it runs ([`SupervisorLock`]), so a second supervisor on the same
//! directory is refused, and a socket left behind by one that crashed is
//! replaced, not obeyed. Everything read from the socket is checked before
//! use: one line of at most [`MAX_REQUEST_BYTES`], within
//! [`REQUEST_READ_TIMEOUT`], at most [`MAX_CONNECTIONS`] at once.

use std::fs::File;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

/// The control socket's file name in the devnet directory.
pub const CONTROL_SOCKET: &str = "control.sock";
/// The name the socket is bound under before it is made private and
/// renamed to [`CONTROL_SOCKET`].
const NEW_CONTROL_SOCKET: &str = ".control.sock.new";
/// The longest request line, newline excluded.
pub const MAX_REQUEST_BYTES: usize = 1024;
/// The longest answer line a client reads (a status of 256 nodes is far
/// below).
pub const MAX_ANSWER_BYTES: usize = 1 << 20;
/// Connections answered at once; more are closed unanswered.
pub const MAX_CONNECTIONS: usize = 8;
/// How long a connection may take to send its request line.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request may wait for its answer (a stop waits up to 10 s for
/// the node to exit, behind any request before it).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long writing a line may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest path a Unix socket can be bound or reached at on Linux
/// (`sun_path` is 108 bytes with its terminating NUL).
const MAX_SOCKET_PATH_BYTES: usize = 107;

/// What a client asks the supervisor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// Every node's state.
    Status,
    /// Stop node `index` and keep it down.
    Stop {
        /// The node (from 1).
        index: u16,
    },
    /// Start node `index` now.
    Start {
        /// The node (from 1).
        index: u16,
    },
    /// Add a new node to the network by an epoch change, replacing node
    /// `replace` in the same change if given.
    Add {
        /// The node the new one replaces.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replace: Option<u16>,
    },
    /// Remove node `node` from the network by an epoch change; its process
    /// stops once the epoch without it is in force.
    Remove {
        /// The node (its number in this devnet).
        node: u16,
    },
}

impl ControlRequest {
    /// Parses one request line (its newline removed).
    pub fn parse(line: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(line).map_err(|error| {
            format!(
                "not a control request ({error}); send one JSON line: {{\"command\":\"status\"}}, \"stop\" or \"start\" with an \"index\", \"add\" (with a \"replace\" if any) or \"remove\" with a \"node\""
            )
        })
    }
}

/// The supervisor's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ControlResponse {
    /// Every node's state, by index.
    Status {
        /// The nodes.
        nodes: Vec<NodeReport>,
    },
    /// A stop or start was carried out (or there was nothing to do).
    Done {
        /// What happened, for a person.
        message: String,
        /// The node's state afterwards.
        node: NodeReport,
    },
    /// The request was refused.
    Refused {
        /// Why, precisely.
        reason: String,
    },
}

impl ControlResponse {
    /// A refusal for `reason`.
    pub fn refused(reason: impl Into<String>) -> Self {
        Self::Refused { reason: reason.into() }
    }
}

/// One node as the supervisor reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Its index (from 1).
    pub index: u16,
    /// Running, stopped on request or waiting to restart.
    pub state: NodeState,
    /// Its process id while it runs.
    pub pid: Option<u32>,
    /// Automatic restarts after its process exited (starts on request do
    /// not count).
    pub restarts: u32,
    /// Its API's URL.
    pub rpc_url: String,
    /// Its log file.
    pub log: String,
    /// What it does in the node-set change under way, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<NodeChange>,
}

/// What a node does in a node-set change under way (`quorumkey devnet-node
/// add|remove`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeChange {
    /// It was added: an observer until epoch `epoch` is in force.
    Joining {
        /// The epoch that has it.
        epoch: u64,
    },
    /// It is being removed: it runs until epoch `epoch` is in force, then
    /// it is stopped.
    Leaving {
        /// The first epoch without it.
        epoch: u64,
    },
}

impl std::fmt::Display for NodeChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Joining { epoch } => write!(f, "joins in epoch {epoch} (handover under way)"),
            Self::Leaving { epoch } => write!(f, "leaves at epoch {epoch} (handover under way)"),
        }
    }
}

/// Where a node of a running devnet is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeState {
    /// Its process runs.
    Running {
        /// Seconds since it was started.
        up_secs: u64,
    },
    /// Stopped on request: down until started on request.
    StoppedOnRequest,
    /// Its process exited; the supervisor starts it again soon.
    RestartingAfterExit {
        /// How it exited (e.g. `signal: 9 (SIGKILL)`).
        exit: String,
        /// Milliseconds until the next attempt.
        next_attempt_in_ms: u64,
    },
    /// Removed from the network (`quorumkey devnet-node remove`): epoch
    /// `epoch` is in force without it, its process was stopped and is
    /// never started again.
    Removed {
        /// The first epoch without it.
        epoch: u64,
    },
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Running { up_secs } => write!(f, "running (up {})", format_duration_secs(*up_secs)),
            Self::StoppedOnRequest => f.write_str("stopped on request"),
            Self::RestartingAfterExit { exit, next_attempt_in_ms } => write!(
                f,
                "restarting after exit ({exit}), next attempt in {}.{} s",
                next_attempt_in_ms / 1000,
                next_attempt_in_ms % 1000 / 100
            ),
            Self::Removed { epoch } => write!(f, "removed from the network (epoch {epoch} is in force without it)"),
        }
    }
}

/// `75` as `1m 15s`.
pub(crate) fn format_duration_secs(secs: u64) -> String {
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// Why the control socket could not be served or reached.
#[derive(Debug, Error)]
pub enum ControlError {
    /// Another supervisor holds the directory.
    #[error(
        "a devnet is already running in {dir} (another `quorumkey devnet` holds it); stop that one (Ctrl-C) or use another --dir"
    )]
    AlreadyRunning {
        /// The devnet directory, as given.
        dir: String,
    },
    /// Nothing listens: no socket file.
    #[error("no devnet is running in {dir} (no control socket)")]
    NoDevnet {
        /// The devnet directory, as given.
        dir: String,
    },
    /// A socket file nobody listens on: its supervisor did not exit
    /// cleanly.
    #[error(
        "no devnet is running in {dir} (its control socket {path} is left over from a supervisor that did not stop cleanly; the next `quorumkey devnet` replaces it)"
    )]
    StaleSocket {
        /// The devnet directory, as given.
        dir: String,
        /// The socket file.
        path: PathBuf,
    },
    /// Something other than a socket has the socket's name.
    #[error("{0} exists and is not a socket; move it away")]
    NotASocket(PathBuf),
    /// The socket's path is too long for a Unix socket.
    #[error(
        "the control socket's path {path} is {len} bytes; a Unix socket's path has at most 107: use a shorter --dir"
    )]
    PathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The supervisor refused the request.
    #[error("{0}")]
    Refused(String),
    /// The supervisor's answer is not one this client understands.
    #[error("the devnet's supervisor gave an answer this command does not understand: {0}")]
    BadAnswer(String),
    /// The supervisor did not answer in time.
    #[error("the devnet's supervisor did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
}

/// `dir` as the messages show it: `devnet/`.
fn dir_label(dir: &Path) -> String {
    let shown = dir.display().to_string();
    if shown.ends_with('/') { shown } else { format!("{shown}/") }
}

fn check_path_length(path: &Path) -> Result<(), ControlError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH_BYTES {
        return Err(ControlError::PathTooLong { path: path.to_owned(), len });
    }
    Ok(())
}

/// The exclusive lock a supervisor holds on its devnet directory for as
/// long as it runs (an advisory `flock` on the directory itself, released
/// by the kernel when the process ends, however it ends).
#[derive(Debug)]
pub struct SupervisorLock {
    dir: PathBuf,
    _directory: File,
}

impl SupervisorLock {
    /// Takes the lock on `dir`, creating the directory if it does not
    /// exist; [`ControlError::AlreadyRunning`] if another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self, ControlError> {
        let io = |source| ControlError::Io { path: dir.to_owned(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let directory = File::open(dir).map_err(io)?;
        match directory.try_lock() {
            Ok(()) => Ok(Self { dir: dir.to_owned(), _directory: directory }),
            Err(std::fs::TryLockError::WouldBlock) => Err(ControlError::AlreadyRunning { dir: dir_label(dir) }),
            Err(std::fs::TryLockError::Error(source)) => Err(io(source)),
        }
    }

    /// The devnet directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A request waiting for the supervisor's answer.
#[derive(Debug)]
pub struct ControlCall {
    /// What is asked.
    pub request: ControlRequest,
    reply: oneshot::Sender<ControlResponse>,
}

impl ControlCall {
    /// Sends the answer (dropped if the client has gone).
    pub fn answer(self, response: ControlResponse) {
        let _ = self.reply.send(response);
    }
}

/// The listening control socket. Dropping it stops listening and removes
/// the socket file.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    accepting: JoinHandle<()>,
}

impl ControlServer {
    /// Binds `control.sock` in the locked directory (replacing a socket
    /// left by a supervisor that crashed), mode 0600, and accepts
    /// connections on a task; their requests arrive on the receiver. Needs
    /// a tokio runtime.
    pub fn start(lock: &SupervisorLock) -> Result<(Self, mpsc::Receiver<ControlCall>), ControlError> {
        let path = lock.dir().join(CONTROL_SOCKET);
        let fresh = lock.dir().join(NEW_CONTROL_SOCKET);
        check_path_length(&path)?;
        check_path_length(&fresh)?;
        // The lock is ours: whatever is at these paths was left by a
        // supervisor that is gone. Replace sockets, never other files.
        for leftover in [&path, &fresh] {
            if let Ok(meta) = std::fs::symlink_metadata(leftover)
                && !meta.file_type().is_socket()
            {
                return Err(ControlError::NotASocket(leftover.clone()));
            }
        }
        // A socket half made by a start that crashed (a stale one at
        // `path` is replaced by the rename below).
        match std::fs::remove_file(&fresh) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(ControlError::Io { path: fresh, source });
            }
            _ => {}
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ControlError::Io { path, source }
        };
        // Bound under another name, made private, then renamed over the
        // public name (atomically replacing a stale socket): nobody can
        // connect at `path` before it is 0600.
        let listener = std::os::unix::net::UnixListener::bind(&fresh).map_err(io(&fresh))?;
        let made_private = std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&fresh, &path));
        if let Err(source) = made_private {
            let _ = std::fs::remove_file(&fresh);
            return Err(ControlError::Io { path, source });
        }
        let listener =
            listener.set_nonblocking(true).and_then(|()| UnixListener::from_std(listener)).map_err(io(&path));
        let listener = match listener {
            Ok(listener) => listener,
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                return Err(error);
            }
        };
        let (calls, receiver) = mpsc::channel(MAX_CONNECTIONS);
        let accepting = tokio::spawn(accept_connections(listener, calls));
        Ok((Self { path, accepting }, receiver))
    }

    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.accepting.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept_connections(listener: UnixListener, calls: mpsc::Sender<ControlCall>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, or the like: try again shortly.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Too many at once: this one is closed unanswered.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else { continue };
        let calls = calls.clone();
        tokio::spawn(async move {
            answer_connection(stream, &calls).await;
            drop(slot);
        });
    }
}

/// Reads one request, hands it to the supervisor, writes its answer.
async fn answer_connection(stream: UnixStream, calls: &mpsc::Sender<ControlCall>) {
    let (read, mut write) = stream.into_split();
    let response = match tokio::time::timeout(REQUEST_READ_TIMEOUT, read_line(read, MAX_REQUEST_BYTES)).await {
        Err(_) => ControlResponse::refused(format!(
            "no request line within {} s; send one JSON line",
            REQUEST_READ_TIMEOUT.as_secs()
        )),
        Ok(Err(LineError::TooLong)) => {
            ControlResponse::refused(format!("a request is one line of at most {MAX_REQUEST_BYTES} bytes"))
        }
        Ok(Err(LineError::Io(_))) => return,
        Ok(Ok(line)) => match ControlRequest::parse(&line) {
            Err(reason) => ControlResponse::refused(reason),
            Ok(request) => ask_supervisor(calls, request).await,
        },
    };
    let mut text = serde_json::to_vec(&response).unwrap_or_else(|_| br#"{"outcome":"refused","reason":"?"}"#.to_vec());
    text.push(b'\n');
    let _ = tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&text)).await;
}

async fn ask_supervisor(calls: &mpsc::Sender<ControlCall>, request: ControlRequest) -> ControlResponse {
    let stopping = || ControlResponse::refused("the devnet is stopping");
    let (reply, answer) = oneshot::channel();
    let asked = async {
        if calls.send(ControlCall { request, reply }).await.is_err() {
            return stopping();
        }
        answer.await.unwrap_or_else(|_| stopping())
    };
    tokio::time::timeout(ANSWER_TIMEOUT, asked).await.unwrap_or_else(|_| {
        ControlResponse::refused(format!("the supervisor did not answer within {} s", ANSWER_TIMEOUT.as_secs()))
    })
}

/// Why a line could not be read.
#[derive(Debug)]
enum LineError {
    /// Longer than allowed.
    TooLong,
    /// The connection failed.
    Io(std::io::Error),
}

/// One line of at most `limit` bytes (its `\n` or `\r\n` removed), or what
/// came before the end of the stream.
async fn read_line<R: AsyncRead + Unpin>(reader: R, limit: usize) -> Result<Vec<u8>, LineError> {
    let mut line = Vec::new();
    let mut reader = BufReader::new(reader.take(limit as u64 + 1));
    reader.read_until(b'\n', &mut line).await.map_err(LineError::Io)?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > limit {
        return Err(LineError::TooLong);
    }
    Ok(line)
}

/// Sends `request` to the devnet running in `dir` and returns its answer;
/// a refusal is [`ControlError::Refused`].
pub async fn send_request(dir: &Path, request: &ControlRequest) -> Result<ControlResponse, ControlError> {
    let path = dir.join(CONTROL_SOCKET);
    check_path_length(&path)?;
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(ControlError::NoDevnet { dir: dir_label(dir) });
        }
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(ControlError::StaleSocket { dir: dir_label(dir), path });
        }
        Err(source) => return Err(ControlError::Io { path, source }),
    };
    let (read, mut write) = stream.into_split();
    // (Serializing these plain enums cannot fail.)
    let mut line = serde_json::to_vec(request).unwrap_or_default();
    line.push(b'\n');
    let io = |source| ControlError::Io { path: path.clone(), source };
    match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&line)).await {
        Ok(written) => written.map_err(io)?,
        Err(_) => return Err(ControlError::Timeout(WRITE_TIMEOUT)),
    }
    let limit = ANSWER_TIMEOUT + WRITE_TIMEOUT;
    let answer = match tokio::time::timeout(limit, read_line(read, MAX_ANSWER_BYTES)).await {
        Err(_) => return Err(ControlError::Timeout(limit)),
        Ok(Err(LineError::Io(source))) => return Err(io(source)),
        Ok(Err(LineError::TooLong)) => {
            return Err(ControlError::BadAnswer(format!("longer than {MAX_ANSWER_BYTES} bytes")));
        }
        Ok(Ok(answer)) => answer,
    };
    if answer.is_empty() {
        return Err(ControlError::BadAnswer("it closed the connection without answering".to_owned()));
    }
    match serde_json::from_slice(&answer) {
        Ok(ControlResponse::Refused { reason }) => Err(ControlError::Refused(reason)),
        Ok(response) => Ok(response),
        Err(error) => Err(ControlError::BadAnswer(error.to_string())),
    }
}

/// Every node of the devnet running in `dir`.
pub async fn node_statuses(dir: &Path) -> Result<Vec<NodeReport>, ControlError> {
    match send_request(dir, &ControlRequest::Status).await? {
        ControlResponse::Status { nodes } => Ok(nodes),
        other => Err(ControlError::BadAnswer(format!("{other:?} to a status request"))),
    }
}

/// Stops (`stop`) or starts node `index` of the devnet running in `dir`,
/// or adds or removes a node: what happened and the node's state
/// afterwards.
pub async fn change_node(dir: &Path, request: &ControlRequest) -> Result<(String, NodeReport), ControlError> {
    match send_request(dir, request).await? {
        ControlResponse::Done { message, node } => Ok((message, node)),
        other => Err(ControlError::BadAnswer(format!("{other:?} to {request:?}"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn requests_parse_strictly() {
        assert_eq!(ControlRequest::parse(br#"{"command":"status"}"#), Ok(ControlRequest::Status));
        assert_eq!(ControlRequest::parse(br#"{"command":"stop","index":3}"#), Ok(ControlRequest::Stop { index: 3 }));
        assert_eq!(ControlRequest::parse(br#"{"index":9,"command":"start"}"#), Ok(ControlRequest::Start { index: 9 }));
        assert_eq!(ControlRequest::parse(br#"{"command":"add"}"#), Ok(ControlRequest::Add { replace: None }));
        assert_eq!(
            ControlRequest::parse(br#"{"command":"add","replace":5}"#),
            Ok(ControlRequest::Add { replace: Some(5) })
        );
        assert_eq!(ControlRequest::parse(br#"{"command":"remove","node":2}"#), Ok(ControlRequest::Remove { node: 2 }));
        assert_eq!(serde_json::to_string(&ControlRequest::Add { replace: None }).unwrap(), r#"{"command":"add"}"#);
        for bad in [
            &b""[..],
            b"status",
            b"\xff\xfe",
            br#"{"command":"stop"}"#,
            br#"{"command":"stop","index":-1}"#,
            br#"{"command":"stop","index":65536}"#,
            br#"{"command":"stop","index":"3"}"#,
            br#"{"command":"stop","index":3,"force":true}"#,
            br#"{"command":"reboot"}"#,
            br#"[{"command":"status"}]"#,
            br#"{"command":"status"} trailing"#,
            br#"{"command":"remove"}"#,
            br#"{"command":"remove","index":2}"#,
            br#"{"command":"add","node":2}"#,
        ] {
            let error = ControlRequest::parse(bad).unwrap_err();
            assert!(error.starts_with("not a control request"), "{error}");
        }
    }

    #[test]
    fn states_read_as_a_person_would_say_them() {
        assert_eq!(NodeState::Running { up_secs: 75 }.to_string(), "running (up 1m 15s)");
        assert_eq!(NodeState::StoppedOnRequest.to_string(), "stopped on request");
        let waiting = NodeState::RestartingAfterExit { exit: "signal: 9 (SIGKILL)".into(), next_attempt_in_ms: 2_450 };
        assert_eq!(waiting.to_string(), "restarting after exit (signal: 9 (SIGKILL)), next attempt in 2.4 s");
        assert_eq!(
            NodeState::Removed { epoch: 3 }.to_string(),
            "removed from the network (epoch 3 is in force without it)"
        );
        assert_eq!(NodeChange::Joining { epoch: 1 }.to_string(), "joins in epoch 1 (handover under way)");
        assert_eq!(NodeChange::Leaving { epoch: 2 }.to_string(), "leaves at epoch 2 (handover under way)");
        assert_eq!(dir_label(Path::new("devnet")), "devnet/");
        assert_eq!(dir_label(Path::new("/tmp/x/")), "/tmp/x/");
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let line = |bytes: &'static [u8], limit| read_line(bytes, limit);
        assert_eq!(line(b"abc\r\nmore", 8).await.unwrap(), b"abc");
        assert_eq!(line(b"12345678\n", 8).await.unwrap(), b"12345678");
        assert_eq!(line(b"no newline", 16).await.unwrap(), b"no newline");
        assert!(matches!(line(b"123456789\n", 8).await, Err(LineError::TooLong)));
        assert!(matches!(line(b"123456789", 8).await, Err(LineError::TooLong)));
    }

    /// A supervisor that answers `status` with no nodes and refuses the
    /// rest; once the server is gone, what it was asked.
    fn fake_supervisor(mut calls: mpsc::Receiver<ControlCall>) -> JoinHandle<Vec<ControlRequest>> {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(call) = calls.recv().await {
                seen.push(call.request.clone());
                let response = match call.request {
                    ControlRequest::Status => ControlResponse::Status { nodes: Vec::new() },
                    _ => ControlResponse::refused("node 9 does not exist (this devnet has 5 nodes)"),
                };
                call.answer(response);
            }
            seen
        })
    }

    /// Sends `bytes` and reads the answer line. (The supervisor closes a
    /// connection once it has answered: a client that sent more than it
    /// read then sees a reset after the answer.)
    async fn raw_exchange(path: &Path, bytes: &[u8]) -> String {
        let mut stream = UnixStream::connect(path).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn a_file_in_the_sockets_place_is_left_alone() {
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join(CONTROL_SOCKET), "notes").unwrap();
        let lock = SupervisorLock::acquire(work.path()).unwrap();
        let error = ControlServer::start(&lock).unwrap_err();
        assert!(matches!(error, ControlError::NotASocket(_)), "{error}");
        assert_eq!(std::fs::read_to_string(work.path().join(CONTROL_SOCKET)).unwrap(), "notes");
    }

    #[tokio::test]
    async fn one_supervisor_per_directory_and_a_private_socket_removed_on_exit() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("devnet");
        let error = send_request(&dir, &ControlRequest::Status).await.unwrap_err();
        assert_eq!(error.to_string(), format!("no devnet is running in {}/ (no control socket)", dir.display()));

        // A socket left by a supervisor that crashed: nobody answers, and
        // a new supervisor replaces it.
        std::fs::create_dir_all(&dir).unwrap();
        drop(std::os::unix::net::UnixListener::bind(dir.join(CONTROL_SOCKET)).unwrap());
        let error = send_request(&dir, &ControlRequest::Status).await.unwrap_err();
        assert!(matches!(error, ControlError::StaleSocket { .. }), "{error}");
        assert!(error.to_string().starts_with(&format!("no devnet is running in {}/", dir.display())), "{error}");

        let lock = SupervisorLock::acquire(&dir).unwrap();
        let second = SupervisorLock::acquire(&dir).unwrap_err();
        assert!(second.to_string().starts_with("a devnet is already running in"), "{second}");
        let (server, calls) = ControlServer::start(&lock).unwrap();
        let supervisor = fake_supervisor(calls);
        let mode = std::fs::metadata(server.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        assert_eq!(node_statuses(&dir).await.unwrap(), Vec::new());
        let error = change_node(&dir, &ControlRequest::Stop { index: 9 }).await.unwrap_err();
        assert_eq!(error.to_string(), "node 9 does not exist (this devnet has 5 nodes)");

        // Hostile input: refused with a reason, never reaching the
        // supervisor.
        let answer = raw_exchange(server.path(), b"{\"command\":\"stop\",\"index\":1e9}\n").await;
        assert!(answer.contains(r#""outcome":"refused""#) && answer.contains("not a control request"), "{answer}");
        let answer = raw_exchange(server.path(), &[b'x'; 5000]).await;
        assert!(answer.contains("at most 1024 bytes"), "{answer}");
        let answer = raw_exchange(server.path(), b"\n").await;
        assert!(answer.contains("not a control request"), "{answer}");

        let path = server.path().to_owned();
        drop(server);
        assert!(!path.exists(), "the socket is removed on exit");
        let seen = supervisor.await.unwrap();
        assert_eq!(seen, [ControlRequest::Status, ControlRequest::Stop { index: 9 }]);
        drop(lock);
        assert!(SupervisorLock::acquire(&dir).is_ok(), "the lock ends with its holder");
    }
}
