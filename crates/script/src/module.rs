//! A module as the ledger takes it, and compiled for runs.
//!
//! [`ScriptModule::validate`] is what a registration or update is checked
//! against (deterministic: the same bytes pass or fail on every node, with
//! the same message): at most [`MAX_MODULE_BYTES`]; WebAssembly 2.0 without
//! floats, SIMD, threads, 64-bit or multiple memories; imports only from [`HOST_MODULE`], each a known host function
//! with its exact signature; exports `memory` and `verify: [] -> [i32]`;
//! at most [`MAX_MEMORY_PAGES`] pages of memory declared up front.
//! [`CompiledScript`] is the module translated once (eagerly: every
//! function body is validated before the first run), to be run many
//! times.

use sha2::{Digest as _, Sha256};
use thiserror::Error;
use wasmi::{CompilationMode, Config, Engine, ExternType, Module};

use crate::host::HOST_FUNCTIONS;
use crate::{ENTRY_POINT, HOST_MODULE, MAX_MEMORY_PAGES, MAX_MODULE_BYTES};

/// Why a module is refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ModuleError {
    /// Too large.
    #[error("the module is {0} bytes; at most {MAX_MODULE_BYTES} are allowed")]
    TooLarge(usize),
    /// Not valid WebAssembly, or uses a feature scripts may not (floats
    /// above all: they are not computed alike everywhere).
    #[error("the module is not valid WebAssembly for a script (no floats, SIMD, threads or 64-bit memory): {0}")]
    Invalid(String),
    /// An import that is not a host function.
    #[error(
        "the module imports {module}.{name}, which is not a host function (scripts may import only quorumkey.*: docs/verifiers.md)"
    )]
    UnknownImport {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
    },
    /// A host function imported with another signature.
    #[error("the module imports quorumkey.{0} with the wrong signature (docs/verifiers.md lists each)")]
    ImportSignature(String),
    /// A required export is missing or of the wrong kind.
    #[error("the module must export {0}")]
    Export(&'static str),
    /// More memory declared than any script may have.
    #[error("the module declares {0} pages of memory at start; at most {MAX_MEMORY_PAGES} are allowed")]
    Memory(u64),
}

/// A module's bytes and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptModule {
    bytes: Vec<u8>,
}

/// The wasmi configuration of every script: fuel on, floats and every
/// nondeterministic or unneeded proposal off, eager translation. A start
/// function is allowed (compilers initialize their heap in one): it runs
/// at instantiation, on the login's fuel and memory budget, and sees the
/// same host functions.
fn engine() -> Engine {
    let mut config = Config::default();
    config
        .consume_fuel(true)
        .floats(false)
        .wasm_multi_memory(false)
        .wasm_custom_page_sizes(false)
        .wasm_wide_arithmetic(false)
        .ignore_custom_sections(true)
        .compilation_mode(CompilationMode::Eager);
    Engine::new(&config)
}

impl ScriptModule {
    /// The sha-256 of a module's bytes: how the ledger and configurations
    /// name it.
    pub fn id_of(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    /// Checks `bytes` as the ledger does (see the module documentation).
    pub fn validate(bytes: &[u8]) -> Result<Self, ModuleError> {
        Self::compile(bytes).map(|compiled| compiled.module)
    }

    /// Checks and compiles `bytes`.
    pub fn compile(bytes: &[u8]) -> Result<CompiledScript, ModuleError> {
        if bytes.len() > MAX_MODULE_BYTES {
            return Err(ModuleError::TooLarge(bytes.len()));
        }
        let engine = engine();
        let module = Module::new(&engine, bytes).map_err(|e| ModuleError::Invalid(e.to_string()))?;
        for import in module.imports() {
            if import.module() != HOST_MODULE {
                return Err(ModuleError::UnknownImport {
                    module: import.module().to_owned(),
                    name: import.name().to_owned(),
                });
            }
            let Some(host) = HOST_FUNCTIONS.iter().find(|host| host.name == import.name()) else {
                return Err(ModuleError::UnknownImport {
                    module: import.module().to_owned(),
                    name: import.name().to_owned(),
                });
            };
            match import.ty() {
                ExternType::Func(ty) if ty.params() == host.params && ty.results() == host.results => {}
                _ => return Err(ModuleError::ImportSignature(import.name().to_owned())),
            }
        }
        let mut memory = false;
        let mut entry = false;
        for export in module.exports() {
            match (export.name(), export.ty()) {
                ("memory", ExternType::Memory(ty)) => {
                    if ty.minimum() > u64::from(MAX_MEMORY_PAGES) {
                        return Err(ModuleError::Memory(ty.minimum()));
                    }
                    memory = true;
                }
                (name, ExternType::Func(ty)) if name == ENTRY_POINT => {
                    entry = ty.params().is_empty() && ty.results() == [wasmi::ValType::I32];
                }
                _ => {}
            }
        }
        if !memory {
            return Err(ModuleError::Export("its memory as `memory`"));
        }
        if !entry {
            return Err(ModuleError::Export("`verify`, a function of no parameters returning an i32"));
        }
        // The host functions are linked once per module, not per login.
        let linker = crate::host::linker(&engine).map_err(|e| ModuleError::Invalid(e.to_string()))?;
        Ok(CompiledScript { engine, compiled: module, linker, module: Self { bytes: bytes.to_vec() } })
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The id (sha-256 of the bytes).
    pub fn id(&self) -> [u8; 32] {
        Self::id_of(&self.bytes)
    }
}

/// A compiled module and the engine it was compiled for.
#[derive(Clone, Debug)]
pub struct CompiledScript {
    pub(crate) engine: Engine,
    pub(crate) compiled: Module,
    pub(crate) linker: wasmi::Linker<crate::host::HostState>,
    /// The module it was compiled from.
    pub module: ScriptModule,
}

impl CompiledScript {
    /// The module's id.
    pub fn id(&self) -> [u8; 32] {
        self.module.id()
    }
}
