//! zdfuzz._core — the PyO3 binding of zdfuzz-core.
//!
//! Conversions and exceptions only: every behaviour lives in the core crate.
//! A bad call (unknown preset, malformed program, action not allowed now)
//! raises `ProgramError` / `ValueError` naming the problem; a broken
//! invariant found by the model is data (`Verdict.violation`), raised as
//! `InvariantViolation` only by the stateful `Machine.step`.

use pyo3::prelude::*;

mod explore;
mod fuzz;
mod machine;
mod percpu;
mod program;
mod rules;

pyo3::create_exception!(
    _core,
    ProgramError,
    pyo3::exceptions::PyValueError,
    "A program or action that cannot be run: malformed text (with .line and .col), an operand out of range, or an action its actor may not take now."
);
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
    m.add("ProgramError", py.get_type::<ProgramError>())?;
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
    m.add_function(wrap_pyfunction!(explore::explore, m)?)?;
    m.add_class::<fuzz::PyNativeFuzzer>()?;
    m.add_class::<fuzz::PyFinding>()?;
    m.add_class::<fuzz::PyMinimized>()?;
    m.add_function(wrap_pyfunction!(fuzz::minimize, m)?)?;
    m.add_function(wrap_pyfunction!(fuzz::kind_operands, m)?)?;
    Ok(())
}
