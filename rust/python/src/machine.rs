//! `zdfuzz.Machine`, `Verdict`, `Violation`.

use crate::error::{Failure, Result};
use crate::program::{action_arg, rules_arg, rules_or_default, PyAction, PyProgram};
use crate::rules::PyRules;
use crate::shape::{shape_arg, PyShape};
use crate::InvariantViolation;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use zdfuzz_core::machine::TraceEntry;
use zdfuzz_core::oracle::Invariant;
use zdfuzz_core::{Config, Machine, ProgramError, Rules, Verdict, Violation};

fn trace_line(t: &TraceEntry) -> String {
    let mut s = format!("{:>4}  {}{}", t.step, if t.drain { "(drain) " } else { "" }, t.action);
    if !t.changes.is_empty() {
        s += &format!("   [{}]", t.changes.join(", "));
    }
    if !t.notes.is_empty() {
        s += &format!("   {}", t.notes.join("; "));
    }
    s
}

/// A broken invariant.
#[pyclass(module = "zdfuzz._core", name = "Violation", frozen, get_all, skip_from_py_object)]
#[derive(Clone)]
pub struct PyViolation {
    /// invariant id, e.g. "I-L2"
    invariant: &'static str,
    /// "safety", "liveness" or "conformance"
    category: &'static str,
    /// index of the action that broke it (drain steps continue the count)
    step: usize,
    /// that action as text
    action: String,
    message: String,
    /// the invariant in plain words
    doc: &'static str,
    objects: Vec<(&'static str, u32)>,
    expected: String,
    actual: String,
    /// the trace up to and including the step (empty when not traced)
    trace: Vec<String>,
}

impl PyViolation {
    pub(crate) fn new(v: &Violation, trace: &[TraceEntry]) -> PyViolation {
        PyViolation {
            invariant: v.invariant.id(),
            category: v.class().name(),
            step: v.step,
            action: v.action.clone(),
            message: v.message.clone(),
            doc: v.invariant.doc(),
            objects: v.objects.clone(),
            expected: v.expected.clone(),
            actual: v.actual.clone(),
            trace: trace.iter().filter(|t| t.step <= v.step).map(trace_line).collect(),
        }
    }
}

#[pymethods]
impl PyViolation {
    fn __str__(&self) -> String {
        format!("{} ({}) at step {} [{}]: {}", self.invariant, self.category, self.step, self.action, self.message)
    }

    fn __repr__(&self) -> String {
        format!("Violation({:?}, step={}, {:?})", self.invariant, self.step, self.message)
    }
}

/// The outcome of a program.
#[pyclass(module = "zdfuzz._core", name = "Verdict", frozen, skip_from_py_object)]
pub struct PyVerdict {
    pub(crate) inner: Verdict,
    signature: Option<crate::fuzz::SigTuple>,
}

impl PyVerdict {
    /// A verdict of machine `m` (the signature needs its layout and rules).
    fn of(m: &Machine, inner: Verdict) -> PyVerdict {
        let signature = m.signature_of(&inner).as_ref().map(crate::fuzz::sig_tuple);
        PyVerdict { inner, signature }
    }

    /// A verdict of a machine of configuration `cfg` (built elsewhere).
    pub(crate) fn of_config(cfg: &zdfuzz_core::Config, inner: Verdict) -> PyVerdict {
        let layout = zdfuzz_core::config::Layout::new(&cfg.shape);
        let signature = inner
            .reported()
            .map(|v| crate::fuzz::sig_tuple(&zdfuzz_core::signature::signature(&layout, &cfg.rules.name, v)));
        PyVerdict { inner, signature }
    }
}

#[pymethods]
impl PyVerdict {
    /// No violation and no conformance failure.
    #[getter]
    fn ok(&self) -> bool {
        self.inner.ok()
    }

    /// The violation to report: the first safety/liveness one, else the
    /// first conformance failure; None when clean.
    #[getter]
    fn violation(&self) -> Option<PyViolation> {
        self.inner.reported().map(|v| PyViolation::new(v, &self.inner.trace))
    }

    /// The first conformance failure (model/preset inconsistency), if any.
    #[getter]
    fn conformance(&self) -> Option<PyViolation> {
        self.inner.conformance.as_ref().map(|v| PyViolation::new(v, &self.inner.trace))
    }

    /// Actions executed, drain included.
    #[getter]
    fn steps(&self) -> usize {
        self.inner.steps
    }

    /// The reported violation's signature (invariant, action kind, device
    /// type, rules) — what campaigns deduplicate by; None when clean.
    #[getter]
    fn signature(&self) -> Option<crate::fuzz::SigTuple> {
        self.signature.clone()
    }

    /// Per executed action: {step, action, cpu, drain, changes, notes}
    /// (empty unless the run was traced).
    #[getter]
    fn trace<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let l = PyList::empty(py);
        for t in &self.inner.trace {
            let d = PyDict::new(py);
            d.set_item("step", t.step)?;
            d.set_item("action", &t.action)?;
            d.set_item("cpu", t.cpu)?;
            d.set_item("drain", t.drain)?;
            d.set_item("changes", &t.changes)?;
            d.set_item("notes", &t.notes)?;
            l.append(d)?;
        }
        Ok(l)
    }

    /// The trace as printable lines.
    fn trace_lines(&self) -> Vec<String> {
        self.inner.trace.iter().map(trace_line).collect()
    }

    fn __bool__(&self) -> bool {
        self.inner.ok()
    }

    fn __repr__(&self) -> String {
        match self.inner.reported() {
            None => format!("Verdict(ok, steps={})", self.inner.steps),
            Some(v) => format!("Verdict({} at step {}: {})", v.invariant, v.step, v.message),
        }
    }
}

/// The model: pgmaps, struct pages, page tables, tasks and the oracle.
#[pyclass(module = "zdfuzz._core", name = "Machine", unsendable)]
pub struct PyMachine {
    m: Machine,
}

#[pymethods]
impl PyMachine {
    #[new]
    #[pyo3(signature = (rules = None, shape = None))]
    fn new(rules: Option<&Bound<'_, PyAny>>, shape: Option<&Bound<'_, PyAny>>) -> Result<PyMachine> {
        let rules = rules_or_default(rules)?;
        Ok(PyMachine { m: Machine::new(Config::with_shape(rules, shape_arg(shape)?))? })
    }

    /// A machine shaped for `program`, under its own rules or `rules`.
    #[staticmethod]
    #[pyo3(signature = (program, rules = None))]
    fn for_program(program: &PyProgram, rules: Option<&Bound<'_, PyAny>>) -> Result<PyMachine> {
        let rules = match rules {
            Some(r) => rules_arg(r)?,
            None => Rules::resolve(&program.inner.rules)?,
        };
        Ok(PyMachine { m: Machine::new(Config::with_shape(rules, program.inner.shape.clone()))? })
    }

    #[getter]
    fn rules(&self) -> PyRules {
        PyRules { inner: (*self.m.rules).clone() }
    }

    #[getter]
    fn shape(&self) -> PyShape {
        PyShape { inner: self.m.cfg.shape.clone() }
    }

    /// Run a program from the initial state, then the drain. The program's
    /// shape must be the machine's.
    #[pyo3(signature = (program, trace = true))]
    fn run(&mut self, program: &PyProgram, trace: bool) -> Result<PyVerdict> {
        let p = &program.inner;
        if p.shape != self.m.cfg.shape {
            return Err(ProgramError::at(
                0,
                "the program was written for another machine shape (see its `config` line); use Machine.for_program"
                    .into(),
            )
            .into());
        }
        self.m.set_tracing(trace);
        let r = self.m.run(&p.ops);
        self.m.set_tracing(false);
        match r {
            Ok(v) => Ok(PyVerdict::of(&self.m, v)),
            Err((i, e)) => Err(p.step_error(i, &e).into()),
        }
    }

    /// Decode and run a byte program in one call (the fuzzers' entry point).
    #[pyo3(signature = (data, trace = false))]
    fn run_bytes(&mut self, data: &[u8], trace: bool) -> PyVerdict {
        self.m.set_tracing(trace);
        let v = self.m.run_bytes(data);
        self.m.set_tracing(false);
        PyVerdict::of(&self.m, v)
    }

    /// Apply one action (an Action or a line of text). Raises ProgramError
    /// if its actor may not take it now, InvariantViolation if it breaks an
    /// invariant.
    fn step(&mut self, py: Python<'_>, action: &Bound<'_, PyAny>) -> PyResult<()> {
        let op = action_arg(action)?;
        self.m.step(&op).map_err(|e| Failure::from(ProgramError::at(0, e.to_string())))?;
        self.raise_if_violated(py)
    }

    /// Apply one action and say, in one call, what came of it: the
    /// violation (None while clean; nothing is raised), the objects it
    /// brought into use and the actions enabled now — what a state-machine
    /// test needs per step. Raises ProgramError if the action is not enabled.
    fn act(&mut self, action: &Bound<'_, PyAny>) -> Result<PyStepResult> {
        let op = action_arg(action)?;
        let c = self.m.act(&op).map_err(|e| Failure::from(ProgramError::at(0, e.to_string())))?;
        let violation = self.m.violation().map(|v| PyViolation::new(v, &[]));
        let enabled = if violation.is_some() { Vec::new() } else { self.enabled_actions() };
        Ok(PyStepResult { violation, pgmaps: c.pgmaps, pages: c.pages, pins: c.pins, tasks: c.tasks, enabled })
    }

    /// The drain, then the verdict. Raises nothing; read the verdict.
    fn finish(&mut self) -> PyVerdict {
        self.m.finish();
        let v = self.m.verdict();
        PyVerdict::of(&self.m, v)
    }

    /// Every action the actors may take now.
    fn enabled_actions(&self) -> Vec<PyAction> {
        self.m.enabled_actions().into_iter().map(|op| PyAction { op }).collect()
    }

    /// Why `action` is not enabled now (None if it is).
    fn why_not(&self, action: &Bound<'_, PyAny>) -> Result<Option<String>> {
        let op = action_arg(action)?;
        if let Err(e) = op.in_domain(&self.m.layout) {
            return Ok(Some(e.0));
        }
        Ok(self.m.enabled(&op).err().map(String::from))
    }

    /// A readable snapshot: pgmaps, pages, processes, tasks.
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?.call_method1("loads", (self.m.view_json(),))
    }

    /// The kernel tasks now: (slot, what it does next, why it is blocked or
    /// None) — `state()["tasks"]` without the rest of the snapshot.
    fn tasks(&self) -> Vec<(usize, String, Option<String>)> {
        self.m.tasks_view()
    }

    /// Back to the initial state (no reallocation).
    fn reset(&mut self) {
        self.m.reset();
    }

    /// The violation so far (None if clean so far).
    #[getter]
    fn violation(&self) -> Option<PyViolation> {
        self.m.violation().map(|v| PyViolation::new(v, &[]))
    }

    /// Actions applied so far.
    #[getter]
    fn steps(&self) -> usize {
        self.m.steps()
    }

    fn __repr__(&self) -> String {
        format!("Machine(rules={:?}, steps={})", self.m.rules.name, self.m.steps())
    }
}

impl PyMachine {
    fn raise_if_violated(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(v) = self.m.violation() {
            let pv = PyViolation::new(v, &[]);
            let err = InvariantViolation::new_err(pv.__str__());
            err.value(py).setattr("violation", Py::new(py, pv)?)?;
            return Err(err);
        }
        Ok(())
    }
}

/// What one `Machine.act` did.
#[pyclass(module = "zdfuzz._core", name = "StepResult", frozen, get_all, skip_from_py_object)]
pub struct PyStepResult {
    /// the violation, once the machine has stopped at one (None while clean)
    violation: Option<PyViolation>,
    /// pgmaps the action registered
    pgmaps: Vec<usize>,
    /// pfns somebody came to hold (map, reference, pin, allocation, file)
    pages: Vec<usize>,
    /// pfns somebody came to pin
    pins: Vec<usize>,
    /// task slots of kernel tasks the action started
    tasks: Vec<usize>,
    /// every action enabled now (none once stopped)
    enabled: Vec<PyAction>,
}

#[pymethods]
impl PyStepResult {
    fn __repr__(&self) -> String {
        format!(
            "StepResult(violation={}, pgmaps={:?}, pages={:?}, pins={:?}, tasks={:?}, enabled={})",
            self.violation.as_ref().map_or("None".into(), |v| v.__str__()),
            self.pgmaps,
            self.pages,
            self.pins,
            self.tasks,
            self.enabled.len()
        )
    }
}

/// Every invariant id the machine reports, with its plain-words meaning.
#[pyfunction]
pub fn invariants() -> Vec<(&'static str, &'static str)> {
    Invariant::ALL.iter().map(|i| (i.id(), i.doc())).collect()
}
