//! Model-level coverage: abstract state transitions seen.
//!
//! Code coverage of the model says little (every action runs the same few
//! functions); what matters is which *situations* a program reaches: a
//! pgmap killed while one of its pages is pinned, a truncate waiting on a
//! busy page, a lookup inside rcu_read_lock while memunmap_pages waits. So
//! the native engine abstracts the machine state and records transitions.
//!
//! The abstraction is per pgmap, not global, so it stays small and shared
//! between machines of different shapes: a pgmap's *feature* packs its
//! lifecycle (registered / killed / torn down, unbinding, percpu_ref mode,
//! dying, released) and which kinds of holders any of its pages has (a
//! mapping, a GUP reference, a pin, a long-term pin, a kernel reference, the
//! driver, a P2P allocation, a filesystem block), whether some page is at
//! refcount 0, off its initial refcount, or locked, and how many pages are in
//! use (0, 1, 2+). The running kernel tasks add a feature of their own (which
//! kind of task at which step). An *edge* is (device type, feature before,
//! action kind, feature after) for each pgmap whose feature changed, plus
//! (tasks before, kind, tasks after); edges are hashed into a bitmap, as
//! AFL does with branch edges.

use crate::config::MAX_PGMAPS;
use crate::machine::Machine;
use crate::oracle::Life;
use crate::page::PG_LOCKED;
use crate::percpu_ref::Mode;
use crate::pgmap::PgmapState;
use crate::program::op::OpKind;

/// Bitmap size (edges are hashed into it).
pub const MAP_BITS: usize = 1 << 18;

/// The set of edges seen.
#[derive(Clone, Debug)]
pub struct Coverage {
    bits: Vec<u64>,
    count: usize,
}

impl Default for Coverage {
    fn default() -> Coverage {
        Coverage::new()
    }
}

impl Coverage {
    pub fn new() -> Coverage {
        Coverage { bits: vec![0; MAP_BITS / 64], count: 0 }
    }

    /// Record an edge; true if it is new.
    #[inline]
    pub fn add(&mut self, edge: u64) -> bool {
        let i = (edge as usize) & (MAP_BITS - 1);
        let (w, b) = (i / 64, 1u64 << (i % 64));
        if self.bits[w] & b == 0 {
            self.bits[w] |= b;
            self.count += 1;
            true
        } else {
            false
        }
    }

    /// Distinct edges seen.
    pub fn count(&self) -> usize {
        self.count
    }
}

#[inline]
fn mix(mut h: u64, v: u64) -> u64 {
    h ^= v.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_add(h << 6).wrapping_add(h >> 2);
    h.wrapping_mul(0xFF51_AFD7_ED55_8CCD)
}

/// The abstract state of pgmap `g` (see the module comment).
pub fn pgmap_feature(m: &Machine, g: usize) -> u32 {
    let s = &m.s;
    let pg = &s.pgmaps[g];
    let mut f: u32 = match s.ledger.life[g] {
        Life::Unregistered => 0,
        Life::Registered => 1,
        Life::Killed => 2,
        Life::TornDown => 3,
    };
    f |= (match pg.state {
        PgmapState::Unused => 0,
        PgmapState::Live => 1,
        PgmapState::Unbinding => 2,
        PgmapState::Gone => 3,
    }) << 2;
    if pg.state != PgmapState::Unused {
        f |= u32::from(pg.pref.mode() == Mode::Atomic) << 4;
        f |= u32::from(pg.pref.is_dying()) << 5;
    }
    f |= u32::from(s.ledger.released[g]) << 6;
    f |= u32::from(s.ledger.kernel_pgmap_refs[g] > 0) << 7;
    f |= u32::from(s.ledger.p2p_allocs[g] > 0) << 8;
    f |= u32::from(s.ledger.inflight_pgmap_refs[g] > 0) << 9;
    let mut in_use = 0u32;
    // the pgmap's pages as slices zipped together: no bounds check per field
    // (this runs for every pgmap after every action the native engine runs)
    let r = m.layout.pfns_of(g);
    let pages =
        s.ledger.pages[r.clone()].iter().zip(&s.rc[r.clone()]).zip(&s.ledger.init_rc[r.clone()]).zip(&s.flags[r]);
    for (((h, &rc), &init_rc), &flags) in pages {
        f |= u32::from(h.maps > 0) << 10;
        f |= u32::from(h.gup_gets > 0) << 11;
        f |= u32::from(h.gup_pins > 0) << 12;
        f |= u32::from(h.longterm_pins > 0) << 13;
        f |= u32::from(h.kernel_gets > 0) << 14;
        f |= u32::from(h.driver) << 15;
        f |= u32::from(h.p2p_kernel) << 16;
        f |= u32::from(h.fs) << 17;
        f |= u32::from(rc == 0) << 18;
        f |= u32::from(rc != init_rc) << 19;
        f |= u32::from(flags & PG_LOCKED != 0) << 20;
        f |= u32::from(h.maps > 1 || h.gup_gets + h.gup_pins + h.kernel_gets > 1) << 21;
        in_use += u32::from(h.in_use());
    }
    f | in_use.min(2) << 22
}

/// The running tasks: which kind of task is at which step (as a set).
pub fn task_feature(m: &Machine) -> u64 {
    let mut f = 0u64;
    for t in m.s.tasks.iter().flatten() {
        let k = mix(t.kind.spawned_by() as u64, u64::from(t.pc));
        f |= 1 << (k % 64);
    }
    f
}

/// Features of every pgmap and of the tasks, before an action.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    pgmaps: [u32; MAX_PGMAPS],
    tasks: u64,
}

impl Snapshot {
    pub fn take(m: &Machine) -> Snapshot {
        let mut pgmaps = [0u32; MAX_PGMAPS];
        for (g, f) in pgmaps.iter_mut().enumerate().take(m.layout.npgmaps) {
            *f = pgmap_feature(m, g);
        }
        Snapshot { pgmaps, tasks: task_feature(m) }
    }

    /// Record the edges from `self` (before `kind` ran) to the machine's
    /// state now, and become the new state. Returns how many edges were new.
    pub fn advance(&mut self, m: &Machine, kind: OpKind, cov: &mut Coverage) -> usize {
        let mut new = 0;
        let k = kind as u64;
        for g in 0..m.layout.npgmaps {
            let after = pgmap_feature(m, g);
            let before = self.pgmaps[g];
            if after != before {
                let t = m.layout.pgmap_type[g] as u64;
                let e = mix(mix(mix(mix(1, t), u64::from(before)), k), u64::from(after));
                new += usize::from(cov.add(e));
                self.pgmaps[g] = after;
            }
        }
        let tasks = task_feature(m);
        if tasks != self.tasks {
            let e = mix(mix(mix(2, self.tasks), k), tasks);
            new += usize::from(cov.add(e));
            self.tasks = tasks;
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::text::parse_program;
    use crate::{Config, Machine, Rules};

    #[test]
    fn a_new_situation_is_a_new_edge_and_a_repeat_is_not() {
        let p = parse_program(
            "config types=generic\nmemremap_pages pgmap=0\ndev_dax_huge_fault proc=0 addr=0 pfn=1 cpu=0\n\
             get_user_pages proc=0 addr=0 flags=0 cpu=1\nput_page pfn=1 by=gup cpu=0\n\
             get_user_pages proc=0 addr=0 flags=0 cpu=1\n",
        )
        .unwrap();
        let mut m = Machine::new(Config::with_shape(Rules::preset("e3").unwrap(), p.shape.clone())).unwrap();
        let mut cov = Coverage::new();
        let mut snap = Snapshot::take(&m);
        let mut news = Vec::new();
        for op in &p.ops {
            m.step(op).unwrap();
            news.push(snap.advance(&m, op.kind, &mut cov));
        }
        // registering, mapping and the first GUP are new; the put returns
        // to the mapped state by a new edge; the second GUP repeats the first
        assert_eq!(news, vec![1, 1, 1, 1, 0], "{news:?}");
        assert_eq!(cov.count(), 4);
    }
}
