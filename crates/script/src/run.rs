//! One run of a script: a fresh instance of the compiled module, its fuel
//! and memory budget, the input, and the outcome.

use thiserror::Error;
use wasmi::{Store, StoreLimitsBuilder, TrapCode};

use crate::host::{Decision, HostState, HostTrap};
use crate::input::ScriptInput;
use crate::module::CompiledScript;
use crate::{ENTRY_POINT, MAX_FUEL, MAX_MEMORY_PAGES};

/// What one login may spend (within the network's maxima).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptBudget {
    /// Fuel: roughly one per instruction, plus each host call's cost.
    pub fuel: u64,
    /// Memory, in 64 KiB pages.
    pub memory_pages: u32,
}

impl ScriptBudget {
    /// The budget, clamped to the network's maxima.
    pub fn clamped(self) -> Self {
        Self { fuel: self.fuel.min(MAX_FUEL), memory_pages: self.memory_pages.min(MAX_MEMORY_PAGES) }
    }
}

/// A run's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptOutcome {
    /// The user the script named.
    pub verifier_id: String,
    /// Fuel the run used.
    pub fuel_used: u64,
}

/// Why a run gives no verifier_id: each the same on every node for the same
/// module, budget and input.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ScriptError {
    /// The script refused the login, with its reason.
    #[error("the verifier script refused the login: {0}")]
    Refused(String),
    /// It ran out of fuel.
    #[error("the verifier script ran out of fuel ({0} units)")]
    OutOfFuel(u64),
    /// It trapped (unreachable, division by zero, out-of-bounds access,
    /// call stack exhausted, …), or a host call refused its arguments.
    #[error("the verifier script failed: {0}")]
    Trap(String),
    /// Its memory at start exceeds the budget.
    #[error("the verifier script needs more memory at start than its budget of {0} pages")]
    Memory(u32),
    /// It returned without accepting or refusing.
    #[error("the verifier script returned without accepting or refusing the login")]
    NoDecision,
}

/// Runs `script` on `input` within `budget`.
pub fn run_script(
    script: &CompiledScript,
    input: &ScriptInput,
    budget: ScriptBudget,
) -> Result<ScriptOutcome, ScriptError> {
    let budget = budget.clamped();
    let memory_bytes = (budget.memory_pages as usize) * 64 * 1024;
    let limits = StoreLimitsBuilder::new().memory_size(memory_bytes).memories(1).tables(4).instances(1).build();
    let state = HostState { input: input.clone(), decision: None, limits };
    let mut store = Store::new(&script.engine, state);
    store.limiter(|state| &mut state.limits);
    store.set_fuel(budget.fuel).map_err(|e| ScriptError::Trap(e.to_string()))?;
    let instance = match script.linker.instantiate_and_start(&mut store, &script.compiled) {
        Ok(instance) => instance,
        // A start function that ran out of fuel or trapped.
        Err(error) if error.as_trap_code().is_some() || error.downcast_ref::<HostTrap>().is_some() => {
            return Err(trap(&error, budget.fuel));
        }
        // Otherwise the only failure a validated module can meet is its
        // memory (or a table) exceeding the budget.
        Err(_) => return Err(ScriptError::Memory(budget.memory_pages)),
    };
    let entry = instance
        .get_typed_func::<(), i32>(&store, ENTRY_POINT)
        .map_err(|_| ScriptError::Trap(format!("no `{ENTRY_POINT}` export")))?;
    let called = entry.call(&mut store, ());
    let fuel_used = budget.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    if let Err(error) = called {
        return Err(trap(&error, budget.fuel));
    }
    match store.into_data().decision {
        Some(Decision::Accepted(verifier_id)) => Ok(ScriptOutcome { verifier_id, fuel_used }),
        Some(Decision::Refused(reason)) => Err(ScriptError::Refused(reason)),
        None => Err(ScriptError::NoDecision),
    }
}

/// The one error of a failed call: out of fuel, or the trap's meaning
/// (never a message that could differ between nodes).
fn trap(error: &wasmi::Error, fuel: u64) -> ScriptError {
    if let Some(host) = error.downcast_ref::<HostTrap>() {
        return match host {
            HostTrap::OutOfFuel => ScriptError::OutOfFuel(fuel),
            other => ScriptError::Trap(other.to_string()),
        };
    }
    match error.as_trap_code() {
        Some(TrapCode::OutOfFuel) => ScriptError::OutOfFuel(fuel),
        Some(code) => ScriptError::Trap(code.to_string()),
        None => ScriptError::Trap("the call failed".to_owned()),
    }
}
