//! The operating system's random number generator.

/// A cryptographically secure RNG backed by the operating system
/// (`getrandom`). It panics only if the OS cannot give randomness at all,
/// in which case no key can be made safely anyway.
pub type OsRng = rand_core::UnwrapErr<getrandom::SysRng>;

/// The operating system's RNG.
pub fn os_rng() -> OsRng {
    rand_core::UnwrapErr(getrandom::SysRng)
}
