//! The node's client connections fit its open-file limit: it raises the
//! soft limit to the hard one, lowers `max_connections` to what the limit
//! leaves beside the files it keeps for itself, and refuses to start with
//! room for too few. (Its own test binary: it lowers this process's hard
//! limit, which cannot be raised again.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorumkey_node::http::server::{MIN_CONNECTIONS, RESERVED_FILES, fit_connections_to_file_limit};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

#[test]
fn connections_fit_the_open_file_limit() {
    let hard = getrlimit(Resource::Nofile).maximum;
    // A low soft limit is raised to the hard one.
    setrlimit(Resource::Nofile, Rlimit { current: Some(600), maximum: hard }).unwrap();
    let fitted = fit_connections_to_file_limit(4096).unwrap();
    assert_eq!(getrlimit(Resource::Nofile).current, hard, "the soft limit is the hard one now");
    let room = hard.map_or(usize::MAX, |files| (files - RESERVED_FILES) as usize);
    assert_eq!(fitted, room.min(4096));

    // A hard limit of 1,000 leaves room for 488 connections.
    setrlimit(Resource::Nofile, Rlimit { current: Some(1000), maximum: Some(1000) }).unwrap();
    assert_eq!(fit_connections_to_file_limit(4096).unwrap(), 1000 - RESERVED_FILES as usize);
    assert_eq!(fit_connections_to_file_limit(100).unwrap(), 100, "a lower setting stays");

    // Too little room: refused, saying what to do.
    let files = RESERVED_FILES + MIN_CONNECTIONS - 1;
    setrlimit(Resource::Nofile, Rlimit { current: Some(files), maximum: Some(files) }).unwrap();
    let refused = fit_connections_to_file_limit(4096).unwrap_err().to_string();
    assert!(refused.contains(&format!("may open only {files} files (RLIMIT_NOFILE)")), "{refused}");
    assert!(refused.contains("raise the limit"), "{refused}");
}
