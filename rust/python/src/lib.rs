//! zdfuzz._core — the PyO3 binding of zdfuzz-core.
//!
//! Conversions only: every behaviour lives in the core crate, and every core
//! error becomes a Python exception in one place (`error.rs`): a
//! `ZdfuzzError` (a `ValueError`) — `ProgramError`, `RulesError`,
//! `ConfigError` or `MinimizeError` — naming the problem and, where the core
//! has one, the file, line and column. A broken invariant found by the model
//! is data (`Verdict.violation`, `StepResult.violation`), raised as
//! `InvariantViolation` only by the stateful `Machine.step`.

use pyo3::prelude::*;

mod error;
mod explore;
mod fuzz;
mod machine;
mod percpu;
mod program;
mod rules;
mod shape;

use error::{ConfigError, MinimizeError, ProgramError, RulesError, ZdfuzzError};
pyo3::create_exception!(
    _core,
    InvariantViolation,
    pyo3::exceptions::PyException,
    "Raised by Machine.step when an action breaks an invariant; .violation holds the details."
);

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_PRESET", zdfuzz_core::DEFAULT_PRESET)?;
    m.add("DEVICE_TYPES", shape::device_types())?;
    m.add("DEFAULT_DEVICE_TYPES", shape::default_device_types())?;
    m.add("ZdfuzzError", py.get_type::<ZdfuzzError>())?;
    m.add("ProgramError", py.get_type::<ProgramError>())?;
    m.add("RulesError", py.get_type::<RulesError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("MinimizeError", py.get_type::<MinimizeError>())?;
    m.add_class::<shape::PyShape>()?;
    m.add_class::<machine::PyStepResult>()?;
    m.add("InvariantViolation", py.get_type::<InvariantViolation>())?;
    m.add_class::<percpu::PyPercpuRef>()?;
    m.add_class::<percpu::PyRefEvent>()?;
    m.add_function(wrap_pyfunction!(percpu::percpu_ref_stress, m)?)?;
    m.add_function(wrap_pyfunction!(percpu::bench_percpu_ref, m)?)?;
    m.add_class::<rules::PyRules>()?;
    m.add_class::<program::PyAction>()?;
    m.add_class::<program::PyProgram>()?;
    m.add_class::<machine::PyMachine>()?;
    m.add_class::<machine::PyVerdict>()?;
    m.add_class::<machine::PyViolation>()?;
    m.add_function(wrap_pyfunction!(program::action_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(machine::invariants, m)?)?;
    m.add_class::<explore::PyExploreResult>()?;
    m.add_class::<explore::PyExpander>()?;
    m.add_function(wrap_pyfunction!(explore::explore, m)?)?;
    m.add_class::<fuzz::PyNativeFuzzer>()?;
    m.add_class::<fuzz::PyFinding>()?;
    m.add_class::<fuzz::PyMinimized>()?;
    m.add_function(wrap_pyfunction!(fuzz::minimize, m)?)?;
    m.add_function(wrap_pyfunction!(fuzz::kind_operands, m)?)?;
    Ok(())
}
