//! Verifier scripts on a node: each module is read from the ledger and
//! compiled once (a small cache by module id); the compilation and each
//! login's run go to a blocking thread, the run within the verifier's
//! budget (at most about 45 ms of interpretation:
//! `quorumkey_script::MAX_FUEL`).

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
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<CompiledScript>>> {
        self.compiled.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs the script of `config` on `input`. `load` reads the module off
    /// the ledger when it is not compiled yet; the compilation (once per
    /// module) and the run both happen off the async workers.
    pub async fn run(
        &self,
        config: &ScriptConfig,
        input: ScriptInput,
        load: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Result<ScriptOutcome, ScriptRunError> {
        let id = config.module_id().ok_or_else(|| ScriptRunError::Missing(config.module.clone()))?;
        let cached = self.lock().get(&id).cloned();
        let source = match cached {
            Some(compiled) => Ok(compiled),
            None => Err(load().ok_or_else(|| ScriptRunError::Missing(hex::encode(id)))?),
        };
        let budget = ScriptBudget { fuel: config.fuel, memory_pages: config.memory_pages };
        let (compiled, outcome) = tokio::task::spawn_blocking(move || {
            let compiled = match source {
                Ok(compiled) => compiled,
                Err(bytes) => Arc::new(ScriptModule::compile(&bytes)?),
            };
            let outcome = run_script(&compiled, &input, budget);
            Ok::<_, ScriptRunError>((compiled, outcome))
        })
        .await
        .map_err(|_| ScriptRunError::Thread)??;
        {
            let mut cache = self.lock();
            if !cache.contains_key(&id) {
                if cache.len() >= MAX_CACHED_MODULES {
                    cache.clear();
                }
                cache.insert(id, compiled);
            }
        }
        metrics::counter!(METRIC_SCRIPT_RUNS).increment(1);
        if let Ok(done) = &outcome {
            metrics::counter!(METRIC_SCRIPT_FUEL).increment(done.fuel_used);
        }
        Ok(outcome?)
    }
}
