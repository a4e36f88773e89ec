//! Node processes whose wall clock runs ahead, to see what a network does
//! hours later without waiting hours: Debian's libfaketime, preloaded into
//! `quorumkey node run`, shifts what the process reads as the time of day
//! (monotonic clocks, which timers use, are left alone). The library is
//! fetched from Debian's archive into the test's scratch directory on
//! first use (`apt-get download`, unpacked with `dpkg-deb`; no root
//! needed), or taken from `QUORUMKEY_LIBFAKETIME`.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The multi-threaded libfaketime (the nodes run many threads).
const LIBRARY: &str = "libfaketimeMT.so.1";

fn find(dir: &Path) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find(&path) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|name| name == LIBRARY) {
            return Some(path);
        }
    }
    None
}

/// The library's path, fetched if this machine has none yet.
pub fn library() -> PathBuf {
    if let Ok(path) = std::env::var("QUORUMKEY_LIBFAKETIME") {
        return PathBuf::from(path);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libfaketime");
    if let Some(found) = find(&dir) {
        return found;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let fetched = Command::new("apt-get").args(["download", "libfaketime"]).current_dir(&dir).status();
    assert!(
        fetched.is_ok_and(|status| status.success()),
        "this test needs Debian's libfaketime: `apt-get download libfaketime` failed in {} (or set QUORUMKEY_LIBFAKETIME to {LIBRARY})",
        dir.display()
    );
    let package = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "deb"))
        .expect("the downloaded package");
    let unpacked = Command::new("dpkg-deb").arg("-x").arg(&package).arg(dir.join("root")).status().unwrap();
    assert!(unpacked.success(), "dpkg-deb -x {} failed", package.display());
    find(&dir).unwrap_or_else(|| panic!("{LIBRARY} is not in {}", package.display()))
}

/// Starts node `index` of the devnet in `devnet_dir` with `binary`, its
/// clock `ahead_secs` seconds ahead, its output appended to its log.
pub fn start_node_ahead(binary: &Path, devnet_dir: &Path, index: u16, ahead_secs: u64) -> tokio::process::Child {
    let node_dir = devnet_dir.join(format!("node-{index}"));
    let log = OpenOptions::new().create(true).append(true).open(node_dir.join("node.log")).unwrap();
    tokio::process::Command::new(binary)
        .args(["node", "run", "--config"])
        .arg(quorumkey_node::run::node_config_path(devnet_dir, index))
        .env("LD_PRELOAD", library())
        .env("FAKETIME", format!("+{ahead_secs}"))
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}
