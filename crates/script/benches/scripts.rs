//! What a verifier script costs a node per login: for each example script
//! of `guest/assemblyscript` on its sample login, the fuel it uses, the
//! time of one run (a fresh instance of the compiled module, as at every
//! login) and the compile time (once per module update), next to the
//! floor: the same checks done natively in Rust, measured in the same run
//! (for `wallet-with-oauth`, mostly the EIP-191 recovery).
//!
//! `cargo bench -p quorumkey-script --bench scripts` (builds the examples
//! with npm first if they are missing: `cd guest/assemblyscript && npm ci
//! && npm run build`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use quorumkey_crypto::hash::keccak256;
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_script::{ScriptBudget, ScriptInput, ScriptModule, run_script};

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// Median time per call over 9 rounds of `runs` calls.
fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut rounds: Vec<Duration> = (0..9)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..runs {
                f();
            }
            start.elapsed() / runs as u32
        })
        .collect();
    rounds.sort();
    rounds[4]
}

fn example(dir: &Path, name: &str) -> (Vec<u8>, ScriptInput) {
    let wasm = dir.join("build").join(format!("{name}.wasm"));
    if !wasm.exists() {
        let npm = |args: &[&str]| std::process::Command::new("npm").args(args).current_dir(dir).status().unwrap();
        if !dir.join("node_modules/assemblyscript/package.json").exists() {
            assert!(npm(&["ci", "--no-audit", "--no-fund", "--loglevel=error"]).success());
        }
        assert!(npm(&["run", "build"]).success());
    }
    let input = std::fs::read_to_string(dir.join("examples").join(format!("{name}.input.json"))).unwrap();
    (std::fs::read(wasm).unwrap(), serde_json::from_str(&input).unwrap())
}

/// The native equivalent of each example's checks on its sample input.
fn native(name: &str, input: &ScriptInput) -> bool {
    match name {
        "same-email" => {
            let email = |i: usize| input.sub_tokens[i].claims["email"].as_str().unwrap().to_ascii_lowercase();
            input.sub_tokens.len() == 2 && email(0) == email(1)
        }
        _ => {
            let message = input.params["message"].as_str().unwrap();
            let nonce = input.sub_tokens[0].claims["nonce"].as_str().unwrap();
            let signature = hex::decode(input.params["signature"].as_str().unwrap().trim_start_matches("0x")).unwrap();
            let mut prefixed = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
            prefixed.extend_from_slice(message.as_bytes());
            let key = RecoverableSignature::from_bytes(&signature).unwrap().recover_keccak(&prefixed).unwrap();
            let point = quorumkey_crypto::group::public_key_to_uncompressed(&key);
            message.contains(nonce) && keccak256(&point[1..])[12..].len() == 20
        }
    }
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let runs = if full { 300 } else { 3 };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest/assemblyscript");
    let budget = ScriptBudget { fuel: 10_000_000, memory_pages: 16 };
    println!("verifier scripts ({}, on {})", if full { "full" } else { "short" }, machine());
    // How fast fuel burns: a loop until a budget is spent (what the worst
    // login of a verifier costs a node).
    let spin = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "verify") (result i32) (local i32)
             (loop (local.set 0 (i32.add (local.get 0) (i32.const 1))) (br 0)) i32.const 0))"#,
    )
    .unwrap();
    let spin = ScriptModule::compile(&spin).unwrap();
    let spin_budget = ScriptBudget { fuel: if full { 100_000_000 } else { 1_000_000 }, memory_pages: 1 };
    let spent = time(1, || {
        black_box(run_script(&spin, &ScriptInput::default(), spin_budget).unwrap_err());
    });
    println!(
        "  a loop to exhaustion: {} fuel in {:.1} ms ({:.0} fuel per microsecond)",
        spin_budget.fuel,
        spent.as_secs_f64() * 1e3,
        spin_budget.fuel as f64 / (spent.as_secs_f64() * 1e6)
    );
    for name in ["same-email", "wallet-with-oauth"] {
        let (bytes, input) = example(&dir, name);
        let compile = time(if full { 50 } else { 1 }, || {
            black_box(ScriptModule::compile(&bytes).unwrap());
        });
        let script = ScriptModule::compile(&bytes).unwrap();
        let outcome = run_script(&script, &input, budget).unwrap();
        let run = time(runs, || {
            black_box(run_script(&script, &input, budget).unwrap());
        });
        let floor = time(runs, || assert!(black_box(native(name, &input))));
        println!(
            "  {name}: {} fuel, {:.1} us per run, compile {:.1} us ({} bytes); native checks {:.1} us, ratio to the floor {:.1}",
            outcome.fuel_used,
            run.as_secs_f64() * 1e6,
            compile.as_secs_f64() * 1e6,
            bytes.len(),
            floor.as_secs_f64() * 1e6,
            run.as_secs_f64() / floor.as_secs_f64().max(1e-9),
        );
    }
}
