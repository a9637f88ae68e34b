//! `zdfuzz.Rules`: presets and TOML rules.

use crate::error::Result;
use pyo3::prelude::*;
use zdfuzz_core::{Rules, RulesError};

/// One kernel era's rules: a preset, or a TOML file overriding one.
#[pyclass(module = "zdfuzz._core", name = "Rules", frozen, skip_from_py_object)]
#[derive(Clone)]
pub struct PyRules {
    pub inner: Rules,
}

#[pymethods]
impl PyRules {
    /// A built-in preset by name or kernel-version alias (e1, e2, e3, e4, p20, v6.1, ...).
    #[staticmethod]
    pub fn preset(name: &str) -> Result<PyRules> {
        let inner = Rules::preset(name).ok_or_else(|| RulesError {
            file: String::new(),
            line: 0,
            col: 0,
            message: format!(
                "unknown rules preset {name:?}; presets: {}; regression presets: {}",
                Rules::preset_names().join(", "),
                Rules::regression_names().join(", ")
            ),
        })?;
        Ok(PyRules { inner })
    }

    /// A preset name or alias, a regression preset, or a TOML file: how
    /// every `--rules` argument is read.
    #[staticmethod]
    pub fn resolve(name_or_path: &str) -> Result<PyRules> {
        Ok(PyRules { inner: Rules::resolve(name_or_path)? })
    }

    /// Rules from a TOML file (`base = "<preset>"` plus overridden switches).
    #[staticmethod]
    pub fn load(path: std::path::PathBuf) -> Result<PyRules> {
        Ok(PyRules { inner: Rules::load(&path)? })
    }

    /// Rules from TOML text; `filename` is used in error messages.
    #[staticmethod]
    #[pyo3(signature = (text, filename = "<string>"))]
    pub fn from_toml(text: &str, filename: &str) -> Result<PyRules> {
        Ok(PyRules { inner: Rules::from_toml_str(text, filename)? })
    }

    /// Names of the built-in presets.
    #[staticmethod]
    pub fn presets() -> Vec<&'static str> {
        Rules::preset_names()
    }

    /// The regression presets: (name, the preset that has the fix, the fix).
    #[staticmethod]
    pub fn regressions() -> Vec<(&'static str, &'static str, &'static str)> {
        Rules::regressions()
            .map(|r| (r.name.as_str(), r.base.as_deref().unwrap_or(""), r.fix.as_deref().unwrap_or("")))
            .collect()
    }

    /// Kernel-version aliases of each preset: {"e1": ["v5.10", ...], ...}.
    #[staticmethod]
    pub fn aliases() -> Vec<(&'static str, Vec<&'static str>)> {
        Rules::builtin()
            .iter()
            .filter(|r| r.fix.is_none())
            .map(|r| (r.name.as_str(), r.aliases.iter().map(String::as_str).collect()))
            .collect()
    }

    #[getter]
    pub fn name(&self) -> String {
        self.inner.name.clone()
    }

    #[getter]
    pub fn kernel(&self) -> String {
        self.inner.kernel.clone()
    }

    #[getter]
    pub fn description(&self) -> String {
        self.inner.description.clone()
    }

    #[getter]
    pub fn base(&self) -> Option<String> {
        self.inner.base.clone()
    }

    /// Every switch: (dotted name, value, documentation).
    pub fn switches(&self) -> Vec<(String, String, &'static str)> {
        self.inner.describe()
    }

    /// The rules as a complete TOML preset.
    pub fn to_toml(&self) -> String {
        self.inner.to_toml()
    }

    fn __eq__(&self, other: &PyRules) -> bool {
        self.inner == other.inner
    }

    fn __repr__(&self) -> String {
        format!("Rules({:?}, kernel={:?})", self.inner.name, self.inner.kernel)
    }
}
