//! `quorumkey verifier test-script`: a verifier script run on this machine,
//! on a sample login, with the checks and the sandbox every node applies.

use std::path::Path;
use std::time::Instant;

use quorumkey_script::{ScriptBudget, ScriptInput, ScriptModule, run_script};

use crate::error::CommandError;

/// The largest input file read (a login's tokens' claims and evidence).
const MAX_INPUT_BYTES: u64 = 1024 * 1024;

/// Validates `module` as the ledger would, runs it on the login in `input`
/// within `budget`, and prints the verifier_id and the fuel used (or why
/// it gives none, as an error).
pub fn test_script(module: &Path, input: &Path, budget: ScriptBudget) -> Result<(), CommandError> {
    let read = |path: &Path| {
        let file = std::fs::File::open(path).map_err(|source| CommandError::Read { path: path.to_owned(), source })?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_INPUT_BYTES + 1), &mut bytes)
            .map_err(|source| CommandError::Read { path: path.to_owned(), source })?;
        Ok::<_, CommandError>(bytes)
    };
    let bytes = std::fs::read(module).map_err(|source| CommandError::Read { path: module.to_owned(), source })?;
    let compiled = ScriptModule::compile(&bytes)?;
    println!("module       {} ({} bytes): valid", hex::encode(compiled.id()), bytes.len());
    let text = read(input)?;
    if text.len() as u64 > MAX_INPUT_BYTES {
        return Err(CommandError::Script(format!("{} is over {MAX_INPUT_BYTES} bytes", input.display())));
    }
    let input: ScriptInput = serde_json::from_slice(&text)
        .map_err(|e| CommandError::Script(format!("{}: not a script input: {e}", input.display())))?;
    let budget = budget.clamped();
    let started = Instant::now();
    let outcome = run_script(&compiled, &input, budget)?;
    let elapsed = started.elapsed();
    println!("verifier_id  {}", outcome.verifier_id);
    println!("fuel         {} of {}", outcome.fuel_used, budget.fuel);
    println!("time         {:.2} ms (this machine, one run)", elapsed.as_secs_f64() * 1000.0);
    Ok(())
}
