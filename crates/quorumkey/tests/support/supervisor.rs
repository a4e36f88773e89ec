//! A `quorumkey devnet` process (the supervisor) for the tests that drive
//! the command itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// A `quorumkey devnet` process, its output in files. Dropping it stops it
/// (SIGTERM, then SIGKILL), so a failing test leaves no node behind.
pub struct Supervisor {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Supervisor {
    /// `quorumkey devnet --nodes NODES --dir DIR`, its output in
    /// `WORK/NAME.out` and `WORK/NAME.err`.
    pub fn start(dir: &Path, nodes: u16, work: &Path, name: &str) -> Self {
        let (stdout, stderr) = (work.join(format!("{name}.out")), work.join(format!("{name}.err")));
        let child = Command::new(env!("CARGO_BIN_EXE_quorumkey"))
            .args(["devnet", "--nodes", &nodes.to_string(), "--dir", dir.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self { child, stdout, stderr }
    }

    /// What it printed on standard output so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What it printed on standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until it says `ready:` (it has written network.json), at most
    /// `limit`.
    pub fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.stdout().contains("ready:") {
            self.assert_running();
            assert!(Instant::now() < deadline, "not ready within {limit:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its exit status, waiting up to `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics (with its standard error) if it has exited.
    pub fn assert_running(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "the supervisor exited:\n{}", self.stderr());
    }

    /// Sends it `signal`.
    pub fn signal(&self, signal: Signal) {
        let _ = kill_process(Pid::from_raw(self.child.id() as i32).unwrap(), signal);
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal(Signal::TERM);
            if self.wait(Duration::from_secs(20)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}
