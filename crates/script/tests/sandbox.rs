//! The sandbox as the ledger and the nodes use it: what validation refuses,
//! what a run's budget stops, and that the same module on the same input
//! gives the same outcome and fuel every time, from any compilation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use quorumkey_script::{
    MAX_MODULE_BYTES, ModuleError, ScriptBudget, ScriptError, ScriptInput, ScriptModule, SubTokenInput, run_script,
};

const BUDGET: ScriptBudget = ScriptBudget { fuel: 1_000_000, memory_pages: 4 };

fn wasm(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap()
}

fn input(emails: &[&str]) -> ScriptInput {
    ScriptInput {
        sub_tokens: emails
            .iter()
            .enumerate()
            .map(|(i, email)| SubTokenInput {
                name: format!("provider-{i}"),
                verifier_id: (*email).to_owned(),
                claims: serde_json::json!({ "email": email, "email_verified": true, "n": i })
                    .as_object()
                    .unwrap()
                    .clone(),
            })
            .collect(),
        params: Default::default(),
        issued_at: 1_700_000_000,
        now: 1_700_000_060,
    }
}

/// Accepts the first sub-token's `email` claim.
const ACCEPT_EMAIL: &str = r#"
(module
  (import "quorumkey" "claim" (func $claim (param i32 i32 i32 i32 i32) (result i32)))
  (import "quorumkey" "accept" (func $accept (param i32 i32)))
  (import "quorumkey" "refuse" (func $refuse (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "email")
  (data (i32.const 16) "no email")
  (func (export "verify") (result i32) (local $len i32)
    (local.set $len (call $claim (i32.const 0) (i32.const 0) (i32.const 5) (i32.const 1024) (i32.const 512)))
    (if (i32.lt_s (local.get $len) (i32.const 0))
      (then (call $refuse (i32.const 16) (i32.const 8)) (return (i32.const 1))))
    (call $accept (i32.const 1024) (local.get $len))
    (i32.const 0)))
"#;

fn compile(text: &str) -> quorumkey_script::CompiledScript {
    ScriptModule::compile(&wasm(text)).unwrap()
}

#[test]
fn a_script_names_the_user_from_verified_claims() {
    let script = compile(ACCEPT_EMAIL);
    let outcome = run_script(&script, &input(&["alice@example.com"]), BUDGET).unwrap();
    assert_eq!(outcome.verifier_id, "alice@example.com");
    assert!(outcome.fuel_used > 0 && outcome.fuel_used < 2_000, "{}", outcome.fuel_used);
    assert_eq!(run_script(&script, &input(&[]), BUDGET), Err(ScriptError::Refused("no email".to_owned())));
}

#[test]
fn validation_refuses_what_a_script_may_not_be() {
    let refused = |text: &str| ScriptModule::validate(&wasm(text)).unwrap_err();
    // Any import but a host function.
    let error = refused(
        r#"(module (import "env" "abort" (func)) (memory (export "memory") 1) (func (export "verify") (result i32) i32.const 0))"#,
    );
    assert!(matches!(error, ModuleError::UnknownImport { ref module, .. } if module == "env"), "{error}");
    let error = refused(
        r#"(module (import "quorumkey" "open_socket" (func)) (memory (export "memory") 1) (func (export "verify") (result i32) i32.const 0))"#,
    );
    assert!(matches!(error, ModuleError::UnknownImport { .. }), "{error}");
    // A host function with another signature.
    let error = refused(
        r#"(module (import "quorumkey" "accept" (func (param i32))) (memory (export "memory") 1) (func (export "verify") (result i32) i32.const 0))"#,
    );
    assert_eq!(error, ModuleError::ImportSignature("accept".to_owned()));
    // Floats, in any instruction or type.
    let error = refused(
        r#"(module (memory (export "memory") 1) (func (export "verify") (result i32) f64.const 1.5 i32.trunc_f64_s))"#,
    );
    assert!(matches!(error, ModuleError::Invalid(_)), "{error}");
    let error = refused(
        r#"(module (memory (export "memory") 1) (global f32 (f32.const 0)) (func (export "verify") (result i32) i32.const 0))"#,
    );
    assert!(matches!(error, ModuleError::Invalid(_)), "{error}");
    // Exports.
    assert!(matches!(refused(r#"(module (func (export "verify") (result i32) i32.const 0))"#), ModuleError::Export(_)));
    assert!(matches!(
        refused(r#"(module (memory (export "memory") 1) (func (export "verify")))"#),
        ModuleError::Export(_)
    ));
    // Memory declared beyond any budget.
    let error = refused(r#"(module (memory (export "memory") 65) (func (export "verify") (result i32) i32.const 0))"#);
    assert_eq!(error, ModuleError::Memory(65));
    // Size.
    let big = vec![0u8; MAX_MODULE_BYTES + 1];
    assert_eq!(ScriptModule::validate(&big).unwrap_err(), ModuleError::TooLarge(MAX_MODULE_BYTES + 1));
    // Not WebAssembly at all.
    assert!(matches!(ScriptModule::validate(b"not wasm").unwrap_err(), ModuleError::Invalid(_)));
}

#[test]
fn an_infinite_loop_runs_out_of_fuel_every_time_alike() {
    let script = compile(
        r#"(module (memory (export "memory") 1) (func (export "verify") (result i32) (loop (br 0)) i32.const 0))"#,
    );
    let first = run_script(&script, &input(&["a@example.com"]), BUDGET);
    assert_eq!(first, Err(ScriptError::OutOfFuel(BUDGET.fuel)));
    assert_eq!(run_script(&script, &input(&["a@example.com"]), BUDGET), first);
    // In a start function too: it runs on the same budget.
    let script = compile(
        r#"(module (memory (export "memory") 1) (func $s (loop (br 0))) (start $s) (func (export "verify") (result i32) i32.const 0))"#,
    );
    assert_eq!(run_script(&script, &input(&[]), BUDGET), Err(ScriptError::OutOfFuel(BUDGET.fuel)));
}

#[test]
fn a_memory_bomb_stops_at_its_budget() {
    // Grows a page at a time until refused, then accepts the page count.
    let script = compile(
        r#"(module
          (import "quorumkey" "accept" (func $accept (param i32 i32)))
          (memory (export "memory") 1)
          (func (export "verify") (result i32)
            (block $full (loop $grow
              (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
              (br $grow)))
            ;; the page count as one byte
            (i32.store8 (i32.const 0) (memory.size))
            (call $accept (i32.const 0) (i32.const 1))
            i32.const 0))"#,
    );
    let outcome = run_script(&script, &input(&[]), BUDGET).unwrap();
    assert_eq!(outcome.verifier_id.as_bytes(), [4u8], "the memory stops at the budget's 4 pages");
    // A module whose memory at start exceeds the login's budget.
    let script = compile(r#"(module (memory (export "memory") 8) (func (export "verify") (result i32) i32.const 0))"#);
    assert_eq!(run_script(&script, &input(&[]), BUDGET), Err(ScriptError::Memory(4)));
}

#[test]
fn an_oversized_or_repeated_answer_and_bad_pointers_are_errors() {
    let answer = |body: &str| {
        compile(&format!(
            r#"(module
              (import "quorumkey" "accept" (func $accept (param i32 i32)))
              (import "quorumkey" "refuse" (func $refuse (param i32 i32)))
              (import "quorumkey" "claim" (func $claim (param i32 i32 i32 i32 i32) (result i32)))
              (memory (export "memory") 17)
              (func (export "verify") (result i32) {body} i32.const 0))"#
        ))
    };
    // A 1 MB verifier_id.
    let script = answer("(call $accept (i32.const 0) (i32.const 1048576))");
    let error = run_script(&script, &input(&[]), ScriptBudget { fuel: 1_000_000, memory_pages: 17 }).unwrap_err();
    assert!(matches!(error, ScriptError::Trap(ref m) if m.contains("longer than 256")), "{error}");
    // Accepting twice, or accepting then refusing.
    let script = answer("(call $accept (i32.const 0) (i32.const 1)) (call $refuse (i32.const 0) (i32.const 1))");
    let error = run_script(&script, &input(&[]), ScriptBudget { fuel: 1_000_000, memory_pages: 17 }).unwrap_err();
    assert!(matches!(error, ScriptError::Trap(ref m) if m.contains("twice")), "{error}");
    // A pointer outside memory.
    let script =
        answer("(drop (call $claim (i32.const 0) (i32.const 2147483000) (i32.const 100) (i32.const 0) (i32.const 0)))");
    let error =
        run_script(&script, &input(&["a@b.c"]), ScriptBudget { fuel: 1_000_000, memory_pages: 17 }).unwrap_err();
    assert!(matches!(error, ScriptError::Trap(ref m) if m.contains("outside")), "{error}");
    // Neither accepting nor refusing.
    let script = answer("");
    let error = run_script(&script, &input(&[]), ScriptBudget { fuel: 1_000_000, memory_pages: 17 }).unwrap_err();
    assert_eq!(error, ScriptError::NoDecision);
    // A trap of the module's own.
    let script = answer("unreachable");
    let error = run_script(&script, &input(&[]), ScriptBudget { fuel: 1_000_000, memory_pages: 17 }).unwrap_err();
    assert!(matches!(error, ScriptError::Trap(_)), "{error}");
    // A refusal's reason is cut at 256 bytes.
    let script = answer("(call $refuse (i32.const 0) (i32.const 100000))");
    let error = run_script(&script, &input(&[]), ScriptBudget { fuel: 1_000_000, memory_pages: 17 }).unwrap_err();
    assert!(matches!(error, ScriptError::Refused(ref reason) if reason.len() <= 256 * 3), "{error}");
}

#[test]
fn a_value_too_large_for_the_buffer_reports_its_length_and_is_not_written() {
    // Asks for the email into a 3-byte buffer, then accepts the length it
    // was told as a decimal digit string of one byte (len < 10 here).
    let script = compile(
        r#"(module
          (import "quorumkey" "claim" (func $claim (param i32 i32 i32 i32 i32) (result i32)))
          (import "quorumkey" "accept" (func $accept (param i32 i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "email")
          (data (i32.const 100) "untouched")
          (func (export "verify") (result i32) (local $len i32)
            (local.set $len (call $claim (i32.const 0) (i32.const 0) (i32.const 5) (i32.const 100) (i32.const 3)))
            (i32.store8 (i32.const 200) (i32.add (i32.const 48) (local.get $len)))
            (i32.store8 (i32.const 201) (i32.load8_u (i32.const 100)))
            (call $accept (i32.const 200) (i32.const 2))
            i32.const 0))"#,
    );
    let outcome = run_script(&script, &input(&["abc@d.ef"]), BUDGET).unwrap();
    assert_eq!(outcome.verifier_id, "8u", "length 8 reported, buffer left as it was");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Two nodes (two compilations) running the same module on the same
    /// input get the same outcome and spend the same fuel.
    #[test]
    fn the_same_module_and_input_give_the_same_outcome_and_fuel(
        email in "[a-z]{1,40}@[a-z]{1,20}\\.[a-z]{2,5}",
        fuel in 200u64..3_000,
    ) {
        let bytes = wasm(ACCEPT_EMAIL);
        let (one, two) = (ScriptModule::compile(&bytes).unwrap(), ScriptModule::compile(&bytes).unwrap());
        let budget = ScriptBudget { fuel, memory_pages: 1 };
        let input = input(&[email.as_str()]);
        prop_assert_eq!(run_script(&one, &input, budget), run_script(&two, &input, budget));
    }
}

#[test]
fn simd_and_threads_are_refused_too() {
    for text in [
        r#"(module (memory (export "memory") 1) (func (export "verify") (result i32) (drop (v128.const i64x2 0 0)) i32.const 0))"#,
        r#"(module (memory (export "memory") 1 1 shared) (func (export "verify") (result i32) (i32.atomic.load (i32.const 0))))"#,
    ] {
        let bytes = wat::parse_str(text).unwrap();
        assert!(matches!(ScriptModule::validate(&bytes), Err(ModuleError::Invalid(_))), "{text}");
    }
}
