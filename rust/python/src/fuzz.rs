//! The fuzzing API of the core for Python: the native engine, the
//! minimizer and finding signatures. Conversions and errors only.
//!
//! A signature crosses as a tuple `(invariant, kind, device, rules)`.

use crate::error::{config, Result};
use crate::program::{rules_arg, PyProgram};
use crate::shape::shape_arg;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::time::{Duration, Instant};
use zdfuzz_core::fuzz::{Finding, NativeConfig, NativeFuzzer};
use zdfuzz_core::minimize::minimize as core_minimize;
use zdfuzz_core::signature::Signature;
use zdfuzz_core::{DeviceType, Rules};

pub type SigTuple = (String, String, String, String);

pub fn sig_tuple(s: &Signature) -> SigTuple {
    (s.invariant.clone(), s.kind.clone(), s.device.clone(), s.rules.clone())
}

fn sig_from(t: SigTuple) -> Signature {
    Signature { invariant: t.0, kind: t.1, device: t.2, rules: t.3 }
}

/// A new signature found by the native engine.
#[pyclass(module = "zdfuzz._core", name = "Finding", frozen, get_all, skip_from_py_object)]
pub struct PyFinding {
    /// (invariant, kind, device, rules)
    signature: SigTuple,
    /// "safety", "liveness" or "conformance"
    category: &'static str,
    /// the program as found (every action enabled; replays as is)
    program: PyProgram,
    /// executions of this engine before it
    execs: u64,
    /// seconds since this engine started
    seconds: f64,
    message: String,
}

impl PyFinding {
    fn new(f: Finding) -> PyFinding {
        PyFinding {
            signature: sig_tuple(&f.signature),
            category: f.class.name(),
            program: PyProgram { inner: f.program },
            execs: f.exec,
            seconds: f.seconds,
            message: f.message,
        }
    }
}

#[pymethods]
impl PyFinding {
    fn __repr__(&self) -> String {
        format!("Finding({:?}, execs={}, actions={})", self.signature, self.execs, self.program.inner.ops.len())
    }
}

/// The native engine: generate and mutate byte programs in Rust, swarm
/// testing over action kinds and device types, guided by abstract state
/// transitions. Deterministic for a seed.
#[pyclass(module = "zdfuzz._core", name = "NativeFuzzer", unsendable)]
pub struct PyNativeFuzzer {
    f: NativeFuzzer,
}

#[pymethods]
impl PyNativeFuzzer {
    #[new]
    #[pyo3(signature = (rules, shape = None, seed = 0, max_actions = 64, swarm = true))]
    fn new(
        rules: &Bound<'_, PyAny>,
        shape: Option<&Bound<'_, PyAny>>,
        seed: u64,
        max_actions: usize,
        swarm: bool,
    ) -> Result<PyNativeFuzzer> {
        let rules = rules_arg(rules)?;
        let shape = shape_arg(shape)?;
        let types: Vec<DeviceType> = shape.types.clone();
        let cfg = NativeConfig { rules, types, shape, seed, max_actions, swarm };
        Ok(PyNativeFuzzer { f: NativeFuzzer::new(cfg)? })
    }

    /// Run up to `max_execs` programs or `seconds`, whichever ends first;
    /// returns the signatures found that were not known, in order.
    #[pyo3(signature = (max_execs = None, seconds = None))]
    fn run(&mut self, max_execs: Option<u64>, seconds: Option<f64>) -> Result<Vec<PyFinding>> {
        let deadline = match seconds {
            Some(s) if !(s.is_finite() && s >= 0.0) => return Err(config("seconds must be a finite number >= 0")),
            Some(s) => Some(Instant::now() + Duration::from_secs_f64(s)),
            None => None,
        };
        if max_execs.is_none() && deadline.is_none() {
            return Err(config("give max_execs or seconds (or both)"));
        }
        Ok(self.f.run(max_execs.unwrap_or(u64::MAX), deadline).into_iter().map(PyFinding::new).collect())
    }

    /// Counters: execs, steps, corpus, edges, findings, violations.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.f.stats();
        let d = PyDict::new(py);
        d.set_item("execs", s.execs)?;
        d.set_item("steps", s.steps)?;
        d.set_item("corpus", s.corpus)?;
        d.set_item("edges", s.edges)?;
        d.set_item("findings", s.findings)?;
        d.set_item("violations", s.violations)?;
        Ok(d)
    }

    /// A signature not to report again (found before).
    fn add_known(&mut self, signature: SigTuple) {
        self.f.add_known(sig_from(signature));
    }

    /// Seed the corpus with a program of one of the engine's machine shapes;
    /// False when its shape or actions do not fit.
    fn add_program(&mut self, program: &PyProgram) -> bool {
        self.f.add_program(&program.inner)
    }

    /// Add a saved corpus entry (from take_new_entries); False when it adds
    /// no coverage or does not fit this engine's types.
    fn add_entry(&mut self, data: &[u8]) -> bool {
        match self.f.decode_entry(data) {
            Some(e) => self.f.add_entry(e),
            None => false,
        }
    }

    /// The program a saved corpus entry decodes to (as the engine decodes
    /// it: with the entry's swarm of kinds); None when it does not fit.
    fn entry_program(&mut self, data: &[u8]) -> Option<PyProgram> {
        self.f.entry_program(data).map(|inner| PyProgram { inner })
    }

    /// Corpus entries added since the last call, as bytes to save.
    fn take_new_entries<'py>(&mut self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        self.f.take_new_entries().iter().map(|b| PyBytes::new(py, b)).collect()
    }
}

/// The result of `minimize`.
#[pyclass(module = "zdfuzz._core", name = "Minimized", frozen, get_all, skip_from_py_object)]
pub struct PyMinimized {
    program: PyProgram,
    /// (invariant, kind, device, rules)
    signature: SigTuple,
    /// candidate programs run
    runs: usize,
    /// actions in the input
    original_len: usize,
}

/// Shrink a violating program, keeping its signature (or `signature`, which
/// it must have): ddmin over actions, machine shape, renaming, operands.
/// The result is 1-minimal. Raises ValueError when the program is clean,
/// not replayable, or breaks another signature.
#[pyfunction]
#[pyo3(signature = (program, rules = None, signature = None, max_runs = 1_000_000))]
pub fn minimize(
    py: Python<'_>,
    program: &PyProgram,
    rules: Option<&Bound<'_, PyAny>>,
    signature: Option<SigTuple>,
    max_runs: usize,
) -> Result<PyMinimized> {
    let rules = match rules {
        Some(r) => rules_arg(r)?,
        None => Rules::resolve(&program.inner.rules)?,
    };
    let target = signature.map(sig_from);
    let p = program.inner.clone();
    let r = py.detach(move || core_minimize(&rules, &p, target.as_ref(), max_runs))?;
    Ok(PyMinimized {
        program: PyProgram { inner: r.program },
        signature: sig_tuple(&r.signature),
        runs: r.runs,
        original_len: r.original_len,
    })
}

/// Every action kind with its operands' domains: (name, [(operand, domain)]).
#[pyfunction]
pub fn kind_operands() -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    zdfuzz_core::program::op::KINDS
        .iter()
        .map(|k| (k.name, k.args.iter().map(|(n, d)| (*n, format!("{d:?}").to_lowercase())).collect()))
        .collect()
}
