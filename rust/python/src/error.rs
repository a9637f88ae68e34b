//! The one conversion of core errors into Python exceptions.
//!
//! Python sees one hierarchy: `ZdfuzzError` (a `ValueError`) and, under it,
//! `ProgramError`, `RulesError`, `ConfigError` and `MinimizeError`, each with
//! `.message`, `.file`, `.line` and `.col` (empty / 0 where the core has no
//! location). Every fallible binding function returns [`Result`]; `?` on a
//! core error converts it here and nowhere else.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use zdfuzz_core::Error;

pyo3::create_exception!(
    zdfuzz,
    ZdfuzzError,
    PyValueError,
    "Base class of every error zdfuzz raises for bad input: .message, .file, .line, .col (\"\" / 0 when unknown)."
);
pyo3::create_exception!(
    zdfuzz,
    ProgramError,
    ZdfuzzError,
    "A program or action that cannot be run: malformed text (with .line and .col), an operand out of range, or an action its actor may not take now."
);
pyo3::create_exception!(
    zdfuzz,
    RulesError,
    ZdfuzzError,
    "Rules that cannot be loaded: an unknown preset, or a TOML file with a problem at .file:.line:.col."
);
pyo3::create_exception!(zdfuzz, ConfigError, ZdfuzzError, "A machine shape or an option out of range.");
pyo3::create_exception!(
    zdfuzz,
    MinimizeError,
    ZdfuzzError,
    "A program that cannot be minimized: clean, not replayable (.line when known) or breaking another signature."
);

/// A core error on its way to Python.
#[derive(Debug)]
pub struct Failure(pub Error);

impl<E: Into<Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.into())
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

/// A configuration error raised by the binding itself (an argument of the
/// wrong kind).
pub fn config(message: impl Into<String>) -> Failure {
    Failure(Error::Config(zdfuzz_core::ConfigError(message.into())))
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        let message = f.0.to_string();
        let (err, detail, file, line, col) = match f.0 {
            Error::Program(e) => (ProgramError::new_err(message), e.message, e.file, e.line, e.col),
            Error::Rules(e) => (RulesError::new_err(message), e.message, e.file, e.line, e.col),
            Error::Config(e) => (ConfigError::new_err(message), e.0, String::new(), 0, 0),
            Error::Minimize(e) => {
                let line = match &e {
                    zdfuzz_core::minimize::MinimizeError::NotReplayable { line, .. } => *line,
                    _ => 0,
                };
                (MinimizeError::new_err(message.clone()), message, String::new(), line, 0)
            }
            Error::Internal(_) => (ZdfuzzError::new_err(message.clone()), message, String::new(), 0, 0),
        };
        Python::attach(|py| {
            let v = err.value(py);
            // setting attributes on a fresh exception instance cannot fail
            let _ = v.setattr("message", detail);
            let _ = v.setattr("file", file);
            let _ = v.setattr("line", line);
            let _ = v.setattr("col", col);
        });
        err
    }
}
