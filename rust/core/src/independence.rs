//! Which actions commute: a footprint per action, for the explorer's
//! sleep sets (`explore.rs`, docs/model.md §10.6).
//!
//! A footprint is a set of *resources*: pgmaps (with everything that belongs
//! to one: its `pgmap->ref`, its ledger entries, and its pages — refcounts,
//! mapcounts, flags, contents, holders), processes (page tables, PMDs,
//! page-table locks, `alive`, the user's view of their memory), files (DAX
//! entries), the task table's free slots, and the armed failure sites. Two
//! actions whose footprints are disjoint are *independent*: each one's
//! contract check, effect and invariant checks read and write only its own
//! resources, so in any state where both are enabled
//!
//! * neither enables or disables the other,
//! * applying them in either order gives the same state, and
//! * each breaks an invariant after the other exactly when it does alone.
//!
//! Only a few kinds are described precisely (below); every other kind is
//! [`GLOBAL`], dependent on everything, which is always sound. A kind is
//! added here only after reading every line of its contract and effect; the
//! test at the bottom checks the three properties above on random walks over
//! every preset and device type, and `rust/core/tests/explore.rs` checks that
//! the explorer with sleep sets finds exactly the states of the one without.

use crate::machine::Machine;
use crate::program::op::{Op, OpKind};

/// A set of resources, one bit each.
pub type Footprint = u64;

/// Touches everything: dependent on every action.
pub const GLOBAL: Footprint = u64::MAX;

/// Resource bits: pgmaps 0..16, processes 16..20, files 20..24, task slots
/// 24..32.
const PGMAP0: u32 = 0;
const PROC0: u32 = 16;
const FILE0: u32 = 20;
const TASK0: u32 = 24;
/// Every task slot: spawning reads which are free (it takes the lowest).
const TASK_SLOTS: Footprint = 0xff << TASK0;
/// The armed failure sites (`fail_next`): an insert that may fail reads and
/// decrements them. Only claimed in shapes with `faults=1`: elsewhere the
/// sites are never armed and reading them is reading a constant.
const FAIL_SITES: Footprint = 1 << 63;

#[inline]
fn pgmap(g: usize) -> Footprint {
    if g < 16 {
        1 << (PGMAP0 + g as u32)
    } else {
        GLOBAL
    }
}

#[inline]
fn proc(p: usize) -> Footprint {
    if p < 4 {
        1 << (PROC0 + p as u32)
    } else {
        GLOBAL
    }
}

#[inline]
fn task(t: usize) -> Footprint {
    if t < 8 {
        1 << (TASK0 + t as u32)
    } else {
        GLOBAL
    }
}

#[inline]
fn file(f: usize) -> Footprint {
    if f < 4 {
        1 << (FILE0 + f as u32)
    } else {
        GLOBAL
    }
}

/// May `a` and `b` be applied in either order with the same result?
#[inline]
pub fn independent(a: Footprint, b: Footprint) -> bool {
    a & b == 0
}

impl Machine {
    /// The resources `op` may read or write from the current state (the
    /// state picks, for example, the page a DAX entry names). `op` should be
    /// enabled; for anything else the answer is [`GLOBAL`].
    ///
    /// Why each described kind stays inside its footprint:
    ///
    /// * `memremap_pages g` — contract: pgmap `g` is unused. Effect: pgmap
    ///   `g`'s state and `pgmap->ref`, its ledger life/released flags, and
    ///   each of its pages' words and ledger entries; conformance checks of
    ///   those pages and that pgmap. Nothing maps an unused pgmap's pages
    ///   (its unbind zapped them, or it was never registered).
    /// * `get_dev_pagemap pfn cached` — contract: a free task slot, and a
    ///   kernel reference on the cached pgmap. Effect: a GetDevPagemap task in
    ///   the lowest free slot (the lookup itself runs in `step`, which is
    ///   global), the cached pgmap's kernel/in-flight reference counts. No
    ///   contract or check of another described kind looks at a task of that
    ///   kind: `mm_busy` and the page-table locks concern faults and
    ///   migrations, `truncating` truncates.
    /// * `step t` of a get_dev_pagemap task — contract: the task exists (it
    ///   never blocks). Effect: its slot (freed when it returns, with the
    ///   slot's migration arrays, which it never used), the cached pgmap's
    ///   reference counts (and a put on it), then a `pgmap->ref` tryget on
    ///   the pgmap of its pfn and the kernel's count there. The lookup reads
    ///   that pgmap's ledger life. Steps of any other task are global.
    /// * `dev_dax_huge_fault proc addr pfn`, `dax_iomap_fault proc addr file
    ///   index` — contract: the process is alive, no fault/migration task
    ///   holds its mmap_lock or the slot's page-table lock (only global
    ///   actions spawn or step those), the slot is empty, the page's pgmap is
    ///   live (and the file's entry exists, no truncate runs on it and no
    ///   writeback holds its lock: spawned and stepped by global actions
    ///   only). Effect: the slot, the user's
    ///   view of it, and the page's refcount, mapcount and holders (on its
    ///   pgmap, possibly a `pgmap->ref` get); the failure sites when armed.
    /// * `dax_associate_entry file index pfn` — the file's entry, the page's
    ///   mapping and ledger (pgmap), the filesystem's pgmap state.
    /// * `p2pmem_alloc_mmap g proc addr pages` — pgmap `g` (its pool, pages
    ///   and `pgmap->ref`), the process's slots `addr..`, the failure sites.
    pub fn footprint(&self, op: &Op) -> Footprint {
        use OpKind::*;
        let l = &self.layout;
        let fail = if l.faults { FAIL_SITES } else { 0 };
        let dev_pgmap = |p: usize| if p < l.ndev { pgmap(l.pgmap_of(p)) } else { GLOBAL };
        match op.kind {
            MemremapPages => pgmap(op.a(0)),
            GetDevPagemap => match op.a(1) {
                0 => TASK_SLOTS,
                c => TASK_SLOTS | pgmap(c - 1),
            },
            Step => match self.s.tasks.get(op.a(0)).copied().flatten().map(|t| t.kind) {
                Some(crate::sched::TaskKind::GetDevPagemap { pfn, cached, .. }) => {
                    let cached = match cached {
                        0 => 0,
                        c => pgmap(c as usize - 1),
                    };
                    // a RAM pfn finds no pgmap: nothing else is read
                    let looked_up = if (pfn as usize) < l.ndev { pgmap(l.pgmap_of(pfn as usize)) } else { 0 };
                    task(op.a(0)) | cached | looked_up
                }
                _ => GLOBAL,
            },
            DevDaxFault => proc(op.a(0)) | dev_pgmap(op.a(2)) | fail,
            DaxIomapFault => {
                let (f, i) = (op.a(2), op.a(3));
                let entry = match self.dax_entry(f, i) {
                    Some(p) => dev_pgmap(p),
                    None => GLOBAL,
                };
                proc(op.a(0)) | file(f) | pgmap(l.file_pgmap(f)) | entry | fail
            }
            DaxAssociateEntry => {
                let f = op.a(0);
                file(f) | pgmap(l.file_pgmap(f)) | dev_pgmap(op.a(2))
            }
            P2pmemAllocMmap => pgmap(op.a(0)) | proc(op.a(1)) | fail,
            _ => GLOBAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Shape};
    use crate::fingerprint::{Canon, Reduction};
    use crate::rules::{DeviceType, Rules};

    fn copy_of(m: &Machine) -> Machine {
        let mut c = Machine::new(m.cfg.clone()).unwrap();
        c.s.copy_from(&m.s);
        c
    }

    /// After `a`: (broken, exact fingerprint), or None if `a` is not enabled.
    fn after(m: &Machine, ops: &[Op], canon: &mut Canon) -> Option<(bool, u64)> {
        let mut c = copy_of(m);
        for op in ops {
            if c.enabled(op).is_err() {
                return None;
            }
            c.step(op).ok()?;
            if c.violation.is_some() || c.conformance.is_some() {
                return Some((true, 0));
            }
        }
        Some((false, canon.fingerprint(&c.s, &c.layout, Reduction::None)))
    }

    /// Every pair of enabled actions with disjoint footprints, in states
    /// along pseudo-random walks on every preset: both orders enabled, the
    /// same state, the same violations, and the footprints unchanged by the
    /// other action.
    #[test]
    fn disjoint_footprints_commute() {
        let mut canon = Canon::new();
        let mut checked = 0u64;
        for preset in Rules::preset_names() {
            for faults in [0, 1] {
                let shape = Shape { types: DeviceType::DEFAULT.to_vec(), pages: 2, faults, ..Shape::default() };
                let cfg = Config::with_shape(Rules::preset(preset).unwrap(), shape);
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ preset.len() as u64;
                for _walk in 0..6 {
                    let mut m = Machine::new(cfg.clone()).unwrap();
                    for _step in 0..10 {
                        let ops = m.enabled_actions();
                        if ops.is_empty() {
                            break;
                        }
                        let feet: Vec<Footprint> = ops.iter().map(|o| m.footprint(o)).collect();
                        for i in 0..ops.len() {
                            for j in i + 1..ops.len() {
                                if !independent(feet[i], feet[j]) {
                                    continue;
                                }
                                let (a, b) = (ops[i], ops[j]);
                                let ab = after(&m, &[a, b], &mut canon);
                                let ba = after(&m, &[b, a], &mut canon);
                                assert!(ab.is_some() && ba.is_some(), "{preset}: {a:?} and {b:?} disable each other");
                                let (a1, b1) = (after(&m, &[a], &mut canon), after(&m, &[b], &mut canon));
                                let broke = |r: Option<(bool, u64)>| r.map(|x| x.0);
                                // broken after both iff one of them breaks alone
                                assert_eq!(
                                    broke(ab),
                                    Some(broke(a1) == Some(true) || broke(b1) == Some(true)),
                                    "{preset}: {a:?} then {b:?}"
                                );
                                assert_eq!(broke(ab), broke(ba), "{preset}: {a:?} / {b:?}");
                                if broke(ab) == Some(false) {
                                    assert_eq!(ab, ba, "{preset}: {a:?} and {b:?} do not commute");
                                    let mut ma = copy_of(&m);
                                    ma.step(&a).unwrap();
                                    assert_eq!(ma.footprint(&b), feet[j], "{preset}: {a:?} moved {b:?}'s footprint");
                                }
                                checked += 1;
                            }
                        }
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let op = ops[(seed % ops.len() as u64) as usize];
                        m.step(&op).unwrap();
                        if m.violation.is_some() {
                            break;
                        }
                    }
                }
            }
        }
        assert!(checked > 1000, "only {checked} independent pairs checked");
    }

    #[test]
    fn undescribed_kinds_are_global() {
        let cfg = Config::with_shape(Rules::preset("e4").unwrap(), Shape::default());
        let m = Machine::new(cfg).unwrap();
        for op in m.enabled_actions() {
            let f = m.footprint(&op);
            if matches!(op.kind, OpKind::Step | OpKind::Fork | OpKind::ExitMmap | OpKind::Munmap) {
                assert_eq!(f, GLOBAL);
            }
        }
    }
}
