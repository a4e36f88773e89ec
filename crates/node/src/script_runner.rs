//! Verifier scripts on a node: each module is loaded from the ledger and
//! compiled once (a small cache by module id), and each login's run goes to
//! a blocking thread, within the verifier's budget (at most about 45 ms of
//! interpretation: `quorumkey_script::MAX_FUEL`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use quorumkey_script::{CompiledScript, ScriptBudget, ScriptInput, ScriptModule, ScriptOutcome, run_script};
use quorumkey_verifier::ScriptConfig;

/// Most compiled modules kept; past it the cache starts over (a module
/// compiles in well under a millisecond: `docs/benchmarks.md`).
const MAX_CACHED_MODULES: usize = 64;

/// Runs of verifier scripts.
pub const METRIC_SCRIPT_RUNS: &str = "quorumkey_script_runs_total";
/// Fuel verifier scripts used.
pub const METRIC_SCRIPT_FUEL: &str = "quorumkey_script_fuel_used_total";

/// Why a script gave no verifier_id.
#[derive(Debug, thiserror::Error)]
pub enum ScriptRunError {
    /// The ledger holds no such module (it refuses configurations naming
    /// one it does not hold, so only a corrupt state gets here).
    #[error("the verifier's script module {0} is not on the ledger")]
    Missing(String),
    /// The module does not compile (the ledger validated it when it was
    /// published, so only another interpreter version gets here).
    #[error("the verifier's script module does not compile here: {0}")]
    Module(#[from] quorumkey_script::ModuleError),
    /// The run gave no verifier_id: the same error on every node.
    #[error(transparent)]
    Run(#[from] quorumkey_script::ScriptError),
    /// The blocking thread failed.
    #[error("the verifier script's thread failed")]
    Thread,
}

/// The compiled modules of one node.
#[derive(Debug, Default)]
pub struct ScriptRunner {
    compiled: Mutex<HashMap<[u8; 32], Arc<CompiledScript>>>,
}

impl ScriptRunner {
    /// The compiled module `id`, compiling it from what `load` reads off
    /// the ledger if it is not cached.
    fn compiled(
        &self,
        id: [u8; 32],
        load: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Result<Arc<CompiledScript>, ScriptRunError> {
        if let Some(compiled) = self.lock().get(&id) {
            return Ok(compiled.clone());
        }
        let bytes = load().ok_or_else(|| ScriptRunError::Missing(hex::encode(id)))?;
        let compiled = Arc::new(ScriptModule::compile(&bytes)?);
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED_MODULES {
            cache.clear();
        }
        cache.insert(id, compiled.clone());
        Ok(compiled)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<CompiledScript>>> {
        self.compiled.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs the script of `config` on `input`, off the async workers;
    /// `load` reads the module off the ledger when it is not compiled yet.
    pub async fn run(
        &self,
        config: &ScriptConfig,
        input: ScriptInput,
        load: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Result<ScriptOutcome, ScriptRunError> {
        let id = config.module_id().ok_or_else(|| ScriptRunError::Missing(config.module.clone()))?;
        let compiled = self.compiled(id, load)?;
        let budget = ScriptBudget { fuel: config.fuel, memory_pages: config.memory_pages };
        let outcome = tokio::task::spawn_blocking(move || run_script(&compiled, &input, budget))
            .await
            .map_err(|_| ScriptRunError::Thread)?;
        metrics::counter!(METRIC_SCRIPT_RUNS).increment(1);
        if let Ok(done) = &outcome {
            metrics::counter!(METRIC_SCRIPT_FUEL).increment(done.fuel_used);
        }
        Ok(outcome?)
    }
}
