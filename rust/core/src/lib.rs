//! zdfuzz-core: an executable model of how Linux accounts references to
//! ZONE_DEVICE memory — the `pgmap->ref` percpu_ref, struct page / folio
//! refcounts, mapcounts and pins — for the device types PRIVATE, FS_DAX,
//! GENERIC and PCI_P2PDMA, under each kernel era's rules.
//!
//! No Python here: the `zdfuzz-python` crate is a thin PyO3 binding.

pub mod bench;
pub mod config;
mod conformance;
mod data;
mod dax;
pub mod device;
mod driver;
pub mod error;
pub mod explore;
mod failure;
pub mod fault;
pub mod fingerprint;
mod folio;
pub mod fuzz;
mod gup;
pub mod hmm;
pub mod independence;
pub mod machine;
pub mod memory;
mod memory_failure;
pub mod migrate;
pub mod minimize;
pub mod oracle;
mod p2pdma;
pub mod page;
pub mod pagetable;
pub mod percpu_ref;
pub mod pgmap;
mod process;
pub mod program;
mod ram;
pub mod rcu;
mod rmap;
pub mod rules;
pub mod sched;
pub mod signature;
pub mod stress;
pub mod sync;
pub mod word;

pub use config::{Config, ConfigError, Shape};
pub use error::Error;
pub use machine::{Machine, StepError, Verdict};
pub use oracle::{Class, Invariant, Violation};
pub use percpu_ref::{init_flags, Effects, Events, Mode, NoSuchCpu, PercpuRef, RefEvent};
pub use program::{Op, OpKind, Program, ProgramError};
pub use rules::{DeviceType, Rules, RulesError, DEFAULT_PRESET};
