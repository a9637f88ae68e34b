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
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl std::fmt::Display for ProgramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "line {}, column {}: {}", self.line, self.col, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for ProgramError {}
