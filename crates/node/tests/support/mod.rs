//! Helpers shared by the node's integration tests.
#![allow(dead_code, reason = "each test binary uses a different part")]

pub mod dkg;
