//! `zdfuzz.Program` and `zdfuzz.Action`: the three program encodings.

use crate::error::{Failure, Result};
use crate::rules::PyRules;
use crate::shape::{shape_arg, PyShape};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use zdfuzz_core::program::json::{program_from_json_str, program_to_json_string};
use zdfuzz_core::program::op::Dim;
use zdfuzz_core::program::text::{op_to_text, parse_action, parse_program, program_to_text, value_text};
use zdfuzz_core::{Config, Machine, Op, Program, ProgramError, Rules, DEFAULT_PRESET};

/// `rules=` argument: a preset name, a path to a TOML file, or a Rules.
pub fn rules_arg(obj: &Bound<'_, PyAny>) -> Result<Rules> {
    if let Ok(r) = obj.cast::<PyRules>() {
        return Ok(r.get().inner.clone());
    }
    let s: String = obj.extract().map_err(|_| {
        Failure(zdfuzz_core::Error::Rules(zdfuzz_core::RulesError {
            file: String::new(),
            line: 0,
            col: 0,
            message: "rules must be a preset name, a .toml path or a Rules".into(),
        }))
    })?;
    Ok(Rules::resolve(&s)?)
}

/// `rules=` with the default preset when None.
pub fn rules_or_default(obj: Option<&Bound<'_, PyAny>>) -> Result<Rules> {
    match obj {
        Some(r) => rules_arg(r),
        None => Ok(Rules::resolve(DEFAULT_PRESET)?),
    }
}

/// One action: a kernel function or event with its operands.
#[pyclass(module = "zdfuzz._core", name = "Action", frozen, eq, hash, skip_from_py_object)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyAction {
    pub op: Op,
}

#[pymethods]
impl PyAction {
    /// Parse one line of .zdf text, e.g. "put_page pfn=3 by=gup cpu=1".
    #[staticmethod]
    fn parse(text: &str) -> Result<PyAction> {
        Ok(PyAction { op: parse_action(text)? })
    }

    /// The kernel function or event (e.g. "memunmap_pages").
    #[getter]
    fn name(&self) -> &'static str {
        self.op.kind.name()
    }

    /// Operands by name, as in the text format (numbers; "none"/"gup"/flag text).
    #[getter]
    fn args<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let info = self.op.kind.info();
        for (i, (name, dim)) in info.args.iter().enumerate() {
            let v = self.op.args[i];
            match dim {
                Dim::Cached if v == 0 => d.set_item(*name, py.None())?,
                Dim::Cached => d.set_item(*name, v - 1)?,
                Dim::By | Dim::Flags | Dim::Select => d.set_item(*name, value_text(*dim, v))?,
                _ => d.set_item(*name, v)?,
            }
        }
        Ok(d)
    }

    fn __str__(&self) -> String {
        op_to_text(&self.op)
    }

    fn __repr__(&self) -> String {
        format!("Action({:?})", op_to_text(&self.op))
    }
}

/// Accept an Action or a line of text.
pub fn action_arg(obj: &Bound<'_, PyAny>) -> Result<Op> {
    if let Ok(a) = obj.cast::<PyAction>() {
        return Ok(a.get().op);
    }
    let s: String =
        obj.extract().map_err(|_| ProgramError::at(0, "an action is an Action or a line of .zdf text".into()))?;
    Ok(parse_action(&s)?)
}

/// A program: rules, machine shape, and actions.
#[pyclass(module = "zdfuzz._core", name = "Program", frozen, eq, skip_from_py_object)]
#[derive(Clone, PartialEq)]
pub struct PyProgram {
    pub inner: Program,
}

#[pymethods]
impl PyProgram {
    #[new]
    #[pyo3(signature = (actions, rules = DEFAULT_PRESET.to_string(), shape = None))]
    fn new(actions: Vec<Bound<'_, PyAny>>, rules: String, shape: Option<&Bound<'_, PyAny>>) -> Result<PyProgram> {
        let shape = shape_arg(shape)?;
        let ops = actions.iter().map(action_arg).collect::<Result<Vec<_>>>()?;
        Ok(PyProgram { inner: Program::new(&rules, shape, ops) })
    }

    /// Parse .zdf text; errors name the line and column (and `filename`).
    #[staticmethod]
    #[pyo3(signature = (text, filename = None))]
    fn parse(text: &str, filename: Option<&str>) -> Result<PyProgram> {
        parse_program(text)
            .map(|inner| PyProgram { inner })
            .map_err(|e| Failure::from(e.in_file(filename.unwrap_or(""))))
    }

    /// Decode bytes with the total decoder (every byte string is a program)
    /// on a machine of the given rules and shape.
    #[staticmethod]
    #[pyo3(signature = (data, rules = None, shape = None))]
    fn from_bytes(
        data: &[u8],
        rules: Option<&Bound<'_, PyAny>>,
        shape: Option<&Bound<'_, PyAny>>,
    ) -> Result<PyProgram> {
        let rules = rules_or_default(rules)?;
        let shape = shape_arg(shape)?;
        let name = rules.name.clone();
        let mut m = Machine::new(Config::with_shape(rules, shape.clone()))?;
        let ops = m.decode_program(data);
        Ok(PyProgram { inner: Program::new(&name, shape, ops) })
    }

    /// Parse the JSON encoding.
    #[staticmethod]
    fn from_json(text: &str) -> Result<PyProgram> {
        Ok(PyProgram { inner: program_from_json_str(text)? })
    }

    fn to_text(&self) -> String {
        program_to_text(&self.inner)
    }

    fn to_json(&self) -> String {
        program_to_json_string(&self.inner)
    }

    /// The byte encoding (round-trips through from_bytes for programs whose
    /// actions are all enabled when they run).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    #[getter]
    fn rules(&self) -> String {
        self.inner.rules.clone()
    }

    #[getter]
    fn shape(&self) -> PyShape {
        PyShape { inner: self.inner.shape.clone() }
    }

    #[getter]
    fn actions(&self) -> Vec<PyAction> {
        self.inner.ops.iter().map(|op| PyAction { op: *op }).collect()
    }

    /// Source line of action `i` when parsed from text, else None.
    fn line_of(&self, i: usize) -> Option<usize> {
        self.inner.line_of(i)
    }

    /// A copy with other rules (name only; the machine resolves it).
    fn with_rules(&self, rules: String) -> PyProgram {
        let mut p = self.inner.clone();
        p.rules = rules;
        PyProgram { inner: p }
    }

    /// A copy keeping only the actions at `indices` (in that order).
    fn select(&self, indices: Vec<usize>) -> Result<PyProgram> {
        let mut p = self.inner.clone();
        p.ops = indices
            .iter()
            .map(|&i| self.inner.ops.get(i).copied().ok_or_else(|| ProgramError::at(0, format!("no action {i}"))))
            .collect::<std::result::Result<_, _>>()?;
        p.lines = indices.iter().filter_map(|&i| self.inner.lines.get(i).copied()).collect();
        Ok(PyProgram { inner: p })
    }

    fn __len__(&self) -> usize {
        self.inner.ops.len()
    }

    fn __repr__(&self) -> String {
        format!("Program(rules={:?}, actions={})", self.inner.rules, self.inner.ops.len())
    }
}

/// Every action kind: (name, operand names, documentation).
#[pyfunction]
pub fn action_kinds() -> Vec<(&'static str, Vec<&'static str>, &'static str)> {
    zdfuzz_core::program::op::KINDS.iter().map(|k| (k.name, k.args.iter().map(|(n, _)| *n).collect(), k.doc)).collect()
}
