//! One error type for everything the core can refuse.
//!
//! Each part of the core has a precise error of its own — a program that
//! cannot be read ([`ProgramError`], with the file, line and column), rules
//! that cannot be loaded ([`RulesError`], likewise), a machine shape or
//! option out of range ([`ConfigError`]), a program that cannot be minimized
//! ([`MinimizeError`]) — and each converts into [`Error`], which the Python
//! binding turns into the matching exception in one place.

use crate::config::ConfigError;
use crate::explore::ExploreError;
use crate::minimize::MinimizeError;
use crate::program::ProgramError;
use crate::rules::RulesError;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    Program(ProgramError),
    Rules(RulesError),
    Config(ConfigError),
    Minimize(MinimizeError),
    /// a broken promise inside the core (a search that does not replay);
    /// never the caller's input
    Internal(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Program(e) => e.fmt(f),
            Error::Rules(e) => e.fmt(f),
            Error::Config(e) => e.fmt(f),
            Error::Minimize(e) => e.fmt(f),
            Error::Internal(s) => write!(f, "internal error: {s}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ProgramError> for Error {
    fn from(e: ProgramError) -> Error {
        Error::Program(e)
    }
}

impl From<RulesError> for Error {
    fn from(e: RulesError) -> Error {
        Error::Rules(e)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

impl From<MinimizeError> for Error {
    fn from(e: MinimizeError) -> Error {
        Error::Minimize(e)
    }
}

impl From<ExploreError> for Error {
    fn from(e: ExploreError) -> Error {
        match e {
            ExploreError::Config(c) => Error::Config(c),
            ExploreError::Internal(s) => Error::Internal(s),
        }
    }
}
