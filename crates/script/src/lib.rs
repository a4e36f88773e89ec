//! Verifier scripts: an application's own login logic, as a WebAssembly
//! module that every node runs, in a sandbox, on the same inputs.
//!
//! A script sees what the node established before it runs (each
//! sub-token's verified claims and verifier_id, the evidence the login
//! carries) and decides who the user is: it accepts with a `verifier_id`
//! or refuses with a reason. It has no other way out: no imports but the
//! host functions of [`host`], no clock but the two the login gives, no
//! floating point, a fuel budget and a memory cap.
//!
//! - [`module`]: a module as the ledger takes it: size, features, imports
//!   and exports checked ([`ScriptModule::validate`]), compiled once
//!   ([`CompiledScript`]).
//! - [`input`]: what a run sees ([`ScriptInput`]).
//! - [`host`]: the host functions, their fuel costs and ABI.
//! - [`run`](mod@run): one run, with its budget ([`run_script`]).
//!
//! Why every node computes the same result: the interpreter (wasmi) is
//! deterministic for integer code, float instructions are refused when a
//! module is validated, fuel counts the same instructions on every node of
//! a release, memory is capped by a count of pages, host functions are
//! pure functions of their arguments and the input, and every failure
//! (out of fuel, a trap, a refused allocation, an oversized answer) maps to
//! one [`ScriptError`] whose text names no node-local detail. Only `now()`
//! differs between nodes (their clocks); `docs/verifiers.md` says how to
//! use it.

pub mod host;
pub mod input;
pub mod module;
pub mod run;

pub use input::{ScriptInput, SubTokenInput};
pub use module::{CompiledScript, ModuleError, ScriptModule};
pub use run::{ScriptBudget, ScriptError, ScriptOutcome, run_script};

/// The largest module the ledger stores (bytes): it travels in one
/// transaction, whose limit is 256 KiB.
pub const MAX_MODULE_BYTES: usize = 192 * 1024;
/// The largest fuel budget a verifier may give one login: about 45 ms of
/// interpretation on one core of the reference machine (2,200 fuel per
/// microsecond; `docs/benchmarks.md`). The verifier configuration's limit.
pub const MAX_FUEL: u64 = quorumkey_verifier::config::MAX_SCRIPT_FUEL;
/// The largest memory a verifier may give one login, in 64 KiB pages
/// (4 MiB). The verifier configuration's limit.
pub const MAX_MEMORY_PAGES: u32 = quorumkey_verifier::config::MAX_SCRIPT_MEMORY_PAGES;
/// The longest `verifier_id` a script may accept (as the ledger's).
pub const MAX_VERIFIER_ID_LEN: usize = 256;
/// The longest refusal reason a script may give.
pub const MAX_REASON_LEN: usize = 256;
/// The import module of every host function.
pub const HOST_MODULE: &str = "quorumkey";
/// The function a script exports and the node calls.
pub const ENTRY_POINT: &str = "verify";
