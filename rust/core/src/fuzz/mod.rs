//! Fuzzing engines that live inside the core: the native engine (generate
//! and mutate byte programs, swarm testing, guided by model-level coverage)
//! and its pieces. Drivers that live in Python (atheris, hypothesis) only
//! call `Machine::run_bytes` / `Machine::step`; they need nothing here.

pub mod coverage;
pub mod native;
pub mod rng;

pub use coverage::Coverage;
pub use native::{Finding, NativeConfig, NativeFuzzer, Stats};
pub use rng::Rng;
