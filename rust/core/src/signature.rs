//! The signature of a finding: (invariant, action kind, device type, rules).
//!
//! Campaigns keep one reproducer per signature, and the minimizer must keep
//! it while it shrinks a program, so the signature is what "the same bug"
//! means. It is coarse on purpose: the exact step, pfn or CPU changes with
//! every program that hits the bug, while the invariant broken, the kernel
//! function that broke it, the device type and the era do not.
//!
//! - *action kind*: the kind of the action that broke the invariant; for a
//!   `step` of a kernel task, the kind that spawned the task
//!   (`memunmap_pages`, `truncate`, ...), because "step" says nothing about
//!   which kernel function misbehaved. A drain phase that is not an action
//!   (the leak check) is named by its label, with `_` for spaces.
//! - *device type*: from the violation's objects, first match wins (a pfn:
//!   the type of its pgmap, or `ram` for system RAM; a pgmap: its type),
//!   else the task's pgmap, else the action's pgmap/pfn/file operand, else
//!   `none`.

use crate::config::Layout;
use crate::oracle::Violation;
use crate::program::op::{Dim, Op};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signature {
    pub invariant: String,
    pub kind: String,
    pub device: String,
    pub rules: String,
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} {}", self.invariant, self.kind, self.device, self.rules)
    }
}

impl Signature {
    /// A file-name friendly form: `p20-I-L2-memunmap_pages-generic`.
    pub fn slug(&self) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
                .collect()
        };
        format!("{}-{}-{}-{}", clean(&self.rules), clean(&self.invariant), clean(&self.kind), clean(&self.device))
    }
}

/// The action kind a violation is filed under (see the module comment).
pub fn violation_kind(v: &Violation) -> String {
    if let Some(t) = v.task {
        return t.spawned_by().name().to_string();
    }
    if let Some(op) = v.op {
        return op.kind.name().to_string();
    }
    let label = v.action.strip_prefix("drain: ").unwrap_or(&v.action);
    if label.is_empty() {
        "none".to_string()
    } else {
        label.replace(' ', "_")
    }
}

/// What a violation is about: a pgmap, or system RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    Pgmap(usize),
    Ram,
}

/// The memory a violation is about, if any (see the module comment).
pub fn violation_memory(l: &Layout, v: &Violation) -> Option<Memory> {
    for &(what, id) in &v.objects {
        let id = id as usize;
        match what {
            "pfn" if id < l.npfns => return Some(pfn_memory(l, id)),
            "pgmap" if id < l.npgmaps => return Some(Memory::Pgmap(id)),
            _ => {}
        }
    }
    if let Some(g) = v.task.and_then(|t| t.pgmap(l)) {
        return Some(Memory::Pgmap(g));
    }
    v.op.and_then(|op| op_memory(l, &op))
}

fn pfn_memory(l: &Layout, p: usize) -> Memory {
    if l.is_ram(p) {
        Memory::Ram
    } else {
        Memory::Pgmap(l.pgmap_of(p))
    }
}

/// The pgmap a violation is about, if any.
pub fn violation_pgmap(l: &Layout, v: &Violation) -> Option<usize> {
    match violation_memory(l, v) {
        Some(Memory::Pgmap(g)) => Some(g),
        _ => None,
    }
}

/// The memory an action names through a pgmap, pfn, file or cached operand.
pub fn op_memory(l: &Layout, op: &Op) -> Option<Memory> {
    let info = op.kind.info();
    for (i, (_, dim)) in info.args.iter().enumerate() {
        let v = op.args[i] as usize;
        match dim {
            Dim::Pgmap if v < l.npgmaps => return Some(Memory::Pgmap(v)),
            Dim::Pfn if v < l.npfns => return Some(pfn_memory(l, v)),
            Dim::File if v < l.nfiles => return Some(Memory::Pgmap(l.file_pgmap(v))),
            Dim::Cached if v >= 1 && v - 1 < l.npgmaps => return Some(Memory::Pgmap(v - 1)),
            _ => {}
        }
    }
    None
}

/// The pgmap an action names through a pgmap, pfn, file or cached operand.
pub fn op_pgmap(l: &Layout, op: &Op) -> Option<usize> {
    let info = op.kind.info();
    for (i, (_, dim)) in info.args.iter().enumerate() {
        let v = op.args[i] as usize;
        match dim {
            Dim::Pgmap if v < l.npgmaps => return Some(v),
            Dim::Pfn if v < l.ndev => return Some(l.pgmap_of(v)),
            Dim::File if v < l.nfiles => return Some(l.file_pgmap(v)),
            Dim::Cached if v >= 1 && v - 1 < l.npgmaps => return Some(v - 1),
            _ => {}
        }
    }
    None
}

/// The signature of a violation found on a machine of layout `l` under the
/// rules named `rules`.
pub fn signature(l: &Layout, rules: &str, v: &Violation) -> Signature {
    Signature {
        invariant: v.invariant.to_string(),
        kind: violation_kind(v),
        device: match violation_memory(l, v) {
            Some(Memory::Pgmap(g)) => l.pgmap_type[g].name(),
            Some(Memory::Ram) => "ram",
            None => "none",
        }
        .to_string(),
        rules: rules.to_string(),
    }
}

impl crate::machine::Machine {
    /// The signature of the violation a verdict reports (safety/liveness
    /// first, else conformance), under this machine's rules.
    pub fn signature_of(&self, verdict: &crate::machine::Verdict) -> Option<Signature> {
        verdict.reported().map(|v| signature(&self.layout, &self.rules.name, v))
    }
}

#[cfg(test)]
mod tests {
    use crate::program::text::parse_program;
    use crate::{Config, Machine, Rules};

    #[test]
    fn q1_is_filed_under_memunmap_pages_on_generic() {
        let p = parse_program(
            "rules p20\nconfig types=private,generic\nmemremap_pages pgmap=1\ndev_dax_huge_fault proc=0 addr=0 pfn=5 cpu=0\n\
             get_user_pages proc=0 addr=0 flags=0 cpu=1\nmemunmap_pages pgmap=1 cpu=0\nstep task=0\nstep task=0\nstep task=0\n\
             rcu_grace_period\nstep task=0\nstep task=0\n",
        )
        .unwrap();
        let mut m = Machine::new(Config::with_shape(Rules::preset("p20").unwrap(), p.shape.clone())).unwrap();
        let v = m.run(&p.ops).unwrap();
        let s = m.signature_of(&v).unwrap();
        assert_eq!(
            (s.invariant.as_str(), s.kind.as_str(), s.device.as_str(), s.rules.as_str()),
            ("I-L2", "memunmap_pages", "generic", "p20")
        );
        assert_eq!(s.slug(), "p20-I-L2-memunmap_pages-generic");
    }
}
