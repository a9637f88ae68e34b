//! `zdfuzz.Program` and `zdfuzz.Action`: the three program encodings.

use crate::rules::PyRules;
use crate::ProgramError;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use zdfuzz_core::program::json::{program_from_json_str, program_to_json_string};
use zdfuzz_core::program::op::Dim;
use zdfuzz_core::program::text::{op_to_text, parse_action, parse_program, program_to_text, value_text};
use zdfuzz_core::{Config, DeviceType, Machine, Op, Program, Rules, Shape};

/// A ProgramError carrying `.line` and `.col` (0 when not from text).
pub fn program_error(py: Python<'_>, e: &zdfuzz_core::ProgramError) -> PyErr {
    let err = ProgramError::new_err(e.to_string());
    let v = err.value(py);
    let _ = v.setattr("line", e.line);
    let _ = v.setattr("col", e.col);
    let _ = v.setattr("message", e.message.clone());
    err
}

pub fn plain_program_error(py: Python<'_>, line: usize, message: String) -> PyErr {
    program_error(py, &zdfuzz_core::ProgramError { line, col: if line > 0 { 1 } else { 0 }, message })
}

/// `rules=` argument: a preset name, a path to a TOML file, or a Rules.
pub fn rules_arg(obj: &Bound<'_, PyAny>) -> PyResult<Rules> {
    if let Ok(r) = obj.cast::<PyRules>() {
        return Ok(r.get().inner.clone());
    }
    let s: String =
        obj.extract().map_err(|_| PyValueError::new_err("rules must be a preset name, a .toml path or a Rules"))?;
    if let Some(r) = Rules::preset(&s) {
        return Ok(r);
    }
    if s.ends_with(".toml") || std::path::Path::new(&s).is_file() {
        return Rules::load(std::path::Path::new(&s)).map_err(|e| PyValueError::new_err(e.to_string()));
    }
    Err(PyValueError::new_err(format!(
        "unknown rules {s:?}: not a preset ({}) and not a .toml file",
        Rules::preset_names().join(", ")
    )))
}

/// Build a Shape from the keyword arguments shared by Machine and Program.
#[allow(clippy::too_many_arguments)]
pub fn shape_arg(
    types: Option<Vec<String>>,
    pgmaps: usize,
    pages: usize,
    cpus: usize,
    procs: usize,
    addrs: usize,
    files: usize,
    file_pages: usize,
    tasks: usize,
    ram: Option<usize>,
    order: Option<usize>,
) -> PyResult<Shape> {
    let mut shape = Shape::default();
    if let Some(types) = types {
        shape.types = types
            .iter()
            .map(|t| {
                DeviceType::from_name(t).ok_or_else(|| {
                    PyValueError::new_err(format!("unknown device type {t:?}; types: private, fsdax, generic, p2pdma"))
                })
            })
            .collect::<PyResult<_>>()?;
    }
    for (k, v) in [
        ("pgmaps", pgmaps),
        ("pages", pages),
        ("cpus", cpus),
        ("procs", procs),
        ("addrs", addrs),
        ("files", files),
        ("file_pages", file_pages),
        ("tasks", tasks),
    ] {
        shape.set(k, v);
    }
    // system RAM and huge pages default to none without a device-private type
    shape.apply_memory_defaults(ram.is_some(), order.is_some());
    if let Some(v) = ram {
        shape.ram = v;
    }
    if let Some(v) = order {
        shape.order = v;
    }
    shape.validate().map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(shape)
}

pub fn shape_dict<'py>(py: Python<'py>, s: &Shape) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("types", s.types.iter().map(|t| t.name()).collect::<Vec<_>>())?;
    for (k, v) in s.fields() {
        d.set_item(k, v)?;
    }
    Ok(d)
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
    fn parse(py: Python<'_>, text: &str) -> PyResult<PyAction> {
        parse_action(text).map(|op| PyAction { op }).map_err(|e| program_error(py, &e))
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
pub fn action_arg(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Op> {
    if let Ok(a) = obj.cast::<PyAction>() {
        return Ok(a.get().op);
    }
    let s: String =
        obj.extract().map_err(|_| PyValueError::new_err("an action is an Action or a line of .zdf text"))?;
    parse_action(&s).map_err(|e| program_error(py, &e))
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
    #[pyo3(signature = (actions, rules = "e3".to_string(), types = None, pgmaps = 1, pages = 4, cpus = 2, procs = 2,
                        addrs = 4, files = 2, file_pages = 2, tasks = 4, ram = None, order = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        actions: Vec<Bound<'_, PyAny>>,
        rules: String,
        types: Option<Vec<String>>,
        pgmaps: usize,
        pages: usize,
        cpus: usize,
        procs: usize,
        addrs: usize,
        files: usize,
        file_pages: usize,
        tasks: usize,
        ram: Option<usize>,
        order: Option<usize>,
    ) -> PyResult<PyProgram> {
        let shape = shape_arg(types, pgmaps, pages, cpus, procs, addrs, files, file_pages, tasks, ram, order)?;
        let ops = actions.iter().map(|a| action_arg(py, a)).collect::<PyResult<Vec<_>>>()?;
        Ok(PyProgram { inner: Program::new(&rules, shape, ops) })
    }

    /// Parse .zdf text; errors name the line and column.
    #[staticmethod]
    fn parse(py: Python<'_>, text: &str) -> PyResult<PyProgram> {
        parse_program(text).map(|inner| PyProgram { inner }).map_err(|e| program_error(py, &e))
    }

    /// Decode bytes with the total decoder (every byte string is a program)
    /// on a machine of the given rules and shape.
    #[staticmethod]
    #[pyo3(signature = (data, rules = None, types = None, pgmaps = 1, pages = 4, cpus = 2, procs = 2,
                        addrs = 4, files = 2, file_pages = 2, tasks = 4, ram = None, order = None))]
    #[allow(clippy::too_many_arguments)]
    fn from_bytes(
        data: &[u8],
        rules: Option<&Bound<'_, PyAny>>,
        types: Option<Vec<String>>,
        pgmaps: usize,
        pages: usize,
        cpus: usize,
        procs: usize,
        addrs: usize,
        files: usize,
        file_pages: usize,
        tasks: usize,
        ram: Option<usize>,
        order: Option<usize>,
    ) -> PyResult<PyProgram> {
        let rules = match rules {
            Some(r) => rules_arg(r)?,
            None => Rules::preset("e3").ok_or_else(|| PyValueError::new_err("no e3 preset"))?,
        };
        let shape = shape_arg(types, pgmaps, pages, cpus, procs, addrs, files, file_pages, tasks, ram, order)?;
        let name = rules.name.clone();
        let mut m = Machine::new(Config::with_shape(rules, shape.clone())).map_err(|e| PyValueError::new_err(e.0))?;
        let ops = m.decode_program(data);
        Ok(PyProgram { inner: Program::new(&name, shape, ops) })
    }

    /// Parse the JSON encoding.
    #[staticmethod]
    fn from_json(py: Python<'_>, text: &str) -> PyResult<PyProgram> {
        program_from_json_str(text).map(|inner| PyProgram { inner }).map_err(|e| program_error(py, &e))
    }

    fn to_text(&self) -> String {
        program_to_text(&self.inner)
    }

    fn to_json(&self) -> String {
        program_to_json_string(&self.inner)
    }

    /// The byte encoding (round-trips through from_bytes for programs whose
    /// actions are all enabled when they run).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let rules = Rules::preset("e3").ok_or_else(|| PyValueError::new_err("no e3 preset"))?;
        let m = Machine::new(Config::with_shape(rules, self.inner.shape.clone()))
            .map_err(|e| PyValueError::new_err(e.0))?;
        Ok(PyBytes::new(py, &m.encode_program(&self.inner.ops)))
    }

    #[getter]
    fn rules(&self) -> String {
        self.inner.rules.clone()
    }

    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        shape_dict(py, &self.inner.shape)
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
    fn select(&self, indices: Vec<usize>) -> PyResult<PyProgram> {
        let mut p = self.inner.clone();
        p.ops = indices
            .iter()
            .map(|&i| self.inner.ops.get(i).copied().ok_or_else(|| PyValueError::new_err(format!("no action {i}"))))
            .collect::<PyResult<_>>()?;
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
