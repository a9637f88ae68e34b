//! Programs: a header (rules and machine shape) and a list of [`Op`]s, in
//! three encodings that round-trip — compact bytes for fuzzers (a total
//! decoder), `.zdf` text for people, JSON for tools.

pub mod bytes;
pub mod json;
pub mod op;
pub mod text;

pub use crate::config::Shape;
pub use op::{Op, OpKind};

/// A program: what to run and on which machine. Equality ignores `lines`
/// (where the actions came from is not part of the program).
#[derive(Clone, Debug)]
pub struct Program {
    /// preset name (or a label for user rules)
    pub rules: String,
    pub shape: Shape,
    pub ops: Vec<Op>,
    /// source line of each op, when parsed from text (for error messages)
    pub lines: Vec<usize>,
}

impl PartialEq for Program {
    fn eq(&self, other: &Program) -> bool {
        self.rules == other.rules && self.shape == other.shape && self.ops == other.ops
    }
}

impl Eq for Program {}

impl Program {
    pub fn new(rules: &str, shape: Shape, ops: Vec<Op>) -> Program {
        Program { rules: rules.to_string(), shape, ops, lines: Vec::new() }
    }

    /// The source line of op `i`, if known.
    pub fn line_of(&self, i: usize) -> Option<usize> {
        self.lines.get(i).copied()
    }
}

/// A program that cannot be read: names the line, the column and the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramError {
    /// the file it was read from, when known ("" otherwise)
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl std::fmt::Display for ProgramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.file.as_str(), self.line) {
            ("", 0) => f.write_str(&self.message),
            ("", line) => write!(f, "line {line}, column {}: {}", self.col, self.message),
            (file, 0) => write!(f, "{file}: {}", self.message),
            (file, line) => write!(f, "{file}:{line}:{}: {}", self.col, self.message),
        }
    }
}

impl std::error::Error for ProgramError {}

impl ProgramError {
    /// An error about the program as a whole, or an action at `line` (0: unknown).
    pub fn at(line: usize, message: String) -> ProgramError {
        ProgramError { file: String::new(), line, col: usize::from(line > 0), message }
    }

    /// The same error, naming the file the program came from.
    pub fn in_file(mut self, file: &str) -> ProgramError {
        self.file = file.to_string();
        self
    }
}

impl Program {
    /// Why action `i` could not run, naming its source line when known.
    pub fn step_error(&self, i: usize, e: &crate::machine::StepError) -> ProgramError {
        let what = self.ops.get(i).map(text::op_to_text).unwrap_or_default();
        ProgramError::at(self.line_of(i).unwrap_or(0), format!("action {i} `{what}`: {e}"))
    }

    /// The byte encoding (what [`Machine::run_bytes`](crate::Machine::run_bytes)
    /// decodes back to these actions when each is enabled as it runs). Needs
    /// the shape only, not a machine.
    pub fn to_bytes(&self) -> Vec<u8> {
        bytes::encode_ops(&crate::config::Layout::new(&self.shape), &self.ops)
    }
}
