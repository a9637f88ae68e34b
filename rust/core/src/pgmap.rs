//! struct dev_pagemap: registration, teardown and lookups.
//!
//! Mirrors mm/memremap.c: `memremap_pages` (percpu_ref_init of `pgmap->ref`
//! with a release that completes `pgmap->done`, `memmap_init_zone_device`,
//! the per-page init references), `memunmap_pages` as a task with the steps
//! the kernel blocks between — kill, drop the init references (E1: put_page on
//! every pfn; E2+: percpu_ref_put_many; E3+ device-private: none), wait for
//! `pgmap->done`, tear down (`percpu_ref_exit`, `pageunmap_range` after
//! `synchronize_rcu`) — and `get_dev_pagemap(pfn, cached)` as a task whose two
//! steps are the RCU-protected `pgmap_array` lookup and the tryget.
//!
//! Before the kill the unbinding driver makes its memory unreachable from user
//! space: device-dax (`kill_dev_dax`) and P2P (sysfs `p2pmem/allocate`
//! removal) zap every user mapping; for FS-DAX the filesystem on the device
//! is shut down — mappings zapped, DAX entries dropped (nothing waits for
//! its pages: see `memunmap_blocked`).

use crate::machine::{ok, Machine};
use crate::oracle::{Life, Obs, Warn};
use crate::page::{PG_FREE_LIST, PG_INIT_REF};
use crate::percpu_ref::{Effects, PercpuRef};
use crate::rules::{DeviceType, MemunmapPut};
use std::cell::Cell;

/// The simulation's percpu_ref: plain words, one thread, explicit CPUs.
pub type SimRef = PercpuRef<Cell<u64>>;

/// The driver's view of its pgmap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PgmapState {
    /// not registered yet
    #[default]
    Unused,
    /// memremap_pages returned
    Live,
    /// memunmap_pages task running
    Unbinding,
    /// memunmap_pages returned
    Gone,
}

#[derive(Clone, Debug)]
pub struct Pgmap {
    pub state: PgmapState,
    /// `pgmap->ref`
    pub pref: SimRef,
    /// `pgmap->done` completed by the release callback
    pub done: bool,
    /// memunmap_pages dropped the init references (put_many)
    pub init_dropped: bool,
}

impl Pgmap {
    pub fn new(cpus: usize) -> Pgmap {
        Pgmap { state: PgmapState::Unused, pref: SimRef::uninit(cpus), done: false, init_dropped: false }
    }

    pub fn reset(&mut self) {
        self.state = PgmapState::Unused;
        self.pref.deinit();
        self.done = false;
        self.init_dropped = false;
    }
}

/// Steps of the memunmap_pages task.
pub const MU_SHUTDOWN: u8 = 0;
pub const MU_KILL: u8 = 1;
pub const MU_DROP: u8 = 2;
pub const MU_WAIT: u8 = 3;
pub const MU_TEARDOWN: u8 = 4;

impl Machine {
    /// Feed a percpu_ref operation's effects to the oracle.
    pub(crate) fn pref_effects(&mut self, g: usize, fx: Effects, what: &str) {
        for event in fx.events.iter() {
            self.observe(Obs::Warned { warn: Warn::PercpuRef { pgmap: g, event, value: fx.value }, what });
        }
        if fx.released {
            self.on_release(g);
        }
    }

    /// The release callback: `complete(&pgmap->done)`.
    fn on_release(&mut self, g: usize) {
        self.s.pgmaps[g].done = true;
        self.s.ledger.released[g] = true;
        self.trace_note(|| format!("pgmap {g}: percpu_ref release -> complete(&pgmap->done)"));
        self.observe(Obs::Released { pgmap: g });
    }

    fn pgmap_gone(&mut self, g: usize, what: &str) -> bool {
        self.observe(Obs::PgmapTouched { pgmap: g, what })
    }

    /// `percpu_ref_put_many(&pgmap->ref, n)` on `cpu`.
    pub(crate) fn pgmap_put(&mut self, g: usize, cpu: usize, n: u64, what: &str) {
        if self.pgmap_gone(g, what) {
            return;
        }
        self.touch_pgmap(g);
        let fx = self.s.pgmaps[g].pref.put_many(cpu, n).unwrap_or_default();
        self.pref_effects(g, fx, what);
    }

    /// `percpu_ref_get_many(&pgmap->ref, n)` on `cpu`.
    pub(crate) fn pgmap_get(&mut self, g: usize, cpu: usize, n: u64, what: &str) {
        if self.pgmap_gone(g, what) {
            return;
        }
        self.touch_pgmap(g);
        let fx = self.s.pgmaps[g].pref.get_many(cpu, n).unwrap_or_default();
        self.pref_effects(g, fx, what);
    }

    /// `percpu_ref_tryget_live(&pgmap->ref)`.
    pub(crate) fn pgmap_tryget_live(&mut self, g: usize, cpu: usize, what: &str) -> bool {
        if self.pgmap_gone(g, what) {
            return false;
        }
        self.touch_pgmap(g);
        let (ok, fx) = self.s.pgmaps[g].pref.tryget_live(cpu).unwrap_or_default();
        self.pref_effects(g, fx, what);
        ok
    }

    /// `percpu_ref_tryget_many(&pgmap->ref, n)` (ignores DEAD).
    pub(crate) fn pgmap_tryget_many(&mut self, g: usize, cpu: usize, n: u64, what: &str) -> bool {
        if self.pgmap_gone(g, what) {
            return false;
        }
        self.touch_pgmap(g);
        let (ok, fx) = self.s.pgmaps[g].pref.tryget_many(cpu, n).unwrap_or_default();
        self.pref_effects(g, fx, what);
        ok
    }

    /// `memremap_pages(pgmap, nid)`.
    pub(crate) fn memremap_pages(&mut self, g: usize) {
        let t = self.layout.pgmap_type[g];
        let tr = *self.rules.of(t);
        let pg = &mut self.s.pgmaps[g];
        pg.state = PgmapState::Live;
        pg.done = false;
        pg.init_dropped = false;
        // percpu_ref_init(&pgmap->ref, dev_pagemap_percpu_release, 0, GFP_KERNEL)
        pg.pref.init(0);
        self.s.ledger.life[g] = Life::Registered;
        self.s.ledger.released[g] = false;
        // memmap_init_zone_device
        for p in self.layout.pfns_of(g) {
            self.s.rc[p] = tr.init_rc as i32;
            self.s.mc[p] = 0;
            self.s.mapping[p] = 0;
            self.s.flags[p] = if tr.init_pgmap_refs { PG_INIT_REF } else { 0 };
            self.s.head[p] = p as u16;
            self.s.order[p] = 0;
            self.s.pincount[p] = 0;
            self.s.emc[p] = 0;
            self.s.ledger.locker[p] = crate::oracle::LOCK_NONE;
            if t.driver_allocated() {
                self.s.flags[p] |= PG_FREE_LIST;
            }
            self.s.ledger.init_rc[p] = tr.init_rc as i32;
            self.s.ledger.pages[p] = Default::default();
            self.touch_page(p);
        }
        // memmap_init_compound where vmemmap_shift > 0 (a no-op for order-0
        // pages): every page points at its folio's head, the head keeps the
        // initial refcount, the tails are at 0
        let shift = self.vmemmap_shift(g);
        let nr = 1usize << shift;
        for h in self.layout.pfns_of(g).step_by(nr) {
            self.s.order[h] = shift as u8;
            for p in h + 1..h + nr {
                self.s.head[p] = h as u16;
                self.s.rc[p] = 0;
                self.s.ledger.init_rc[p] = 0;
                // the folio's one init reference is its head's
                self.s.flags[p] &= !PG_INIT_REF;
            }
        }
        if tr.init_pgmap_refs {
            // percpu_ref_get_many(&pgmap->ref, pfn_len(pgmap, range_id)):
            // one per folio (pfn_len is shifted by vmemmap_shift)
            self.pgmap_get(g, 0, self.init_pgmap_refs(g), "memremap_pages");
        }
        self.touch_pgmap(g);
    }

    /// `pgmap->vmemmap_shift`: the order of the compound pages
    /// `memremap_pages` builds (device-dax aligned to a PMD, from v5.17),
    /// 0 for order-0 pages.
    pub(crate) fn vmemmap_shift(&self, g: usize) -> usize {
        let devdax = self.layout.pgmap_type[g] == DeviceType::Generic && self.layout.devdax_pmd;
        if devdax && self.rules.dax.devdax_compound {
            self.layout.order
        } else {
            0
        }
    }

    /// The init references `memremap_pages` takes on pgmap `g`:
    /// `pfn_len(pgmap, range_id)`, one per page shifted by `vmemmap_shift`
    /// (one per folio).
    pub(crate) fn init_pgmap_refs(&self, g: usize) -> u64 {
        (self.layout.pages >> self.vmemmap_shift(g)) as u64
    }

    /// One step of the memunmap_pages task for pgmap `g`; returns the next pc
    /// or None when the task is finished.
    pub(crate) fn memunmap_step(&mut self, g: usize, pc: u8, cpu: usize) -> Option<u8> {
        let t = self.layout.pgmap_type[g];
        let tr = *self.rules.of(t);
        match pc {
            MU_SHUTDOWN => {
                // make the memory unreachable from user space first
                match t {
                    DeviceType::Generic | DeviceType::P2pdma => self.zap_pgmap_mappings(g, cpu),
                    DeviceType::Fsdax => {
                        self.zap_pgmap_mappings(g, cpu);
                        self.dax_drop_filesystem(g);
                    }
                    // the driver's pages: nothing to unmap (a device-private
                    // or coherent driver migrates its pages back itself)
                    DeviceType::Private | DeviceType::Coherent => {}
                }
                Some(MU_KILL)
            }
            MU_KILL => {
                // percpu_ref_kill(&pgmap->ref)
                self.touch_pgmap(g);
                let fx = self.s.pgmaps[g].pref.kill();
                self.s.ledger.life[g] = Life::Killed;
                self.pref_effects(g, fx, "memunmap_pages: percpu_ref_kill");
                Some(MU_DROP)
            }
            MU_DROP => {
                self.check_pgmap_leaks(g);
                if tr.init_pgmap_refs {
                    match tr.memunmap_put {
                        MemunmapPut::EveryPage => {
                            // one put per struct page, or per folio (its
                            // head) where the pages are compound
                            let nr = 1usize << self.vmemmap_shift(g);
                            for p in self.layout.pfns_of(g).step_by(nr) {
                                self.put_page_refs(p, 1, cpu, "memunmap_pages: put_page");
                            }
                        }
                        MemunmapPut::PutMany => {
                            self.s.pgmaps[g].init_dropped = true;
                            for p in self.layout.pfns_of(g) {
                                self.s.flags[p] &= !PG_INIT_REF;
                            }
                            let n = self.init_pgmap_refs(g);
                            self.pgmap_put(g, cpu, n, "memunmap_pages: percpu_ref_put_many");
                        }
                        MemunmapPut::None => {}
                    }
                }
                Some(MU_WAIT)
            }
            MU_WAIT => Some(MU_TEARDOWN), // runnable only once pgmap->done completed
            _ => {
                self.memunmap_teardown(g);
                None
            }
        }
    }

    /// Why a memunmap_pages task cannot take its next step, if it cannot.
    ///
    /// No era waits for FS-DAX pages to go idle when the pmem device goes:
    /// the unbind runs `kill_dax` (`dax_holder_notify_failure` with
    /// MF_MEM_PRE_REMOVE: a holder file system such as XFS kills the
    /// processes mapping the device and shuts down), `del_gendisk`, then
    /// `memunmap_pages`. `dax_break_layout_final`, the v6.15 wait for idle
    /// pages, runs only from `->evict_inode` (ext4_evict_inode,
    /// xfs_fs_evict_inode, fuse and erofs), i.e. at unmount, which the model
    /// does not have (`dax.unmount_waits_idle` describes that unmount).
    pub(crate) fn memunmap_blocked(&self, g: usize, pc: u8) -> Option<&'static str> {
        match pc {
            MU_WAIT if self.rules.pgmap.memunmap_waits && !self.s.pgmaps[g].done => {
                Some("wait_for_completion(&pgmap->done): waits for pgmap->ref to reach zero")
            }
            MU_TEARDOWN if self.rules.pgmap.teardown_syncs_rcu && self.rcu_reader_active() => {
                Some("synchronize_rcu: waits for get_dev_pagemap lookups in their RCU read section")
            }
            _ => None,
        }
    }

    /// percpu_ref_exit + pageunmap_range: the struct pages are gone. The
    /// oracle checks nobody still uses them (I-L2).
    fn memunmap_teardown(&mut self, g: usize) {
        self.touch_pgmap(g);
        let fx = self.s.pgmaps[g].pref.exit();
        self.pref_effects(g, fx, "memunmap_pages: percpu_ref_exit");
        self.observe(Obs::TornDown { pgmap: g });
        self.s.ledger.life[g] = Life::TornDown;
        self.s.pgmaps[g].state = PgmapState::Gone;
    }

    /// Some get_dev_pagemap lookup is between its xa_load and its tryget.
    pub(crate) fn rcu_reader_active(&self) -> bool {
        self.s.tasks.iter().flatten().any(|t| t.is_rcu_reader())
    }

    /// `rcu_grace_period`: run every pending percpu_ref switch callback.
    pub(crate) fn rcu_grace_period(&mut self) {
        for g in 0..self.layout.npgmaps {
            if self.s.pgmaps[g].pref.switch_pending() {
                self.touch_pgmap(g);
                let fx = self.s.pgmaps[g].pref.grace_period();
                self.pref_effects(g, fx, "RCU callback percpu_ref_switch_to_atomic_rcu");
            }
        }
    }

    pub(crate) fn any_switch_pending(&self) -> bool {
        self.s.pgmaps.iter().any(|p| p.pref.switch_pending())
    }

    /// get_dev_pagemap step 1: the `cached` argument, then `xa_load`.
    /// Returns Some(pgmap found) to continue with the tryget, None if done.
    pub(crate) fn get_dev_pagemap_lookup(&mut self, pfn: usize, cached: usize, cpu: usize) -> Option<usize> {
        if cached > 0 {
            let c = cached - 1;
            self.s.ledger.inflight_pgmap_refs[c] -= 1;
            if !self.layout.is_ram(pfn) && self.layout.pgmap_of(pfn) == c {
                // covered: the caller's reference comes back, no new one
                self.s.ledger.kernel_pgmap_refs[c] += 1;
                self.trace_note(|| format!("cached pgmap {c} covers pfn {pfn}: reused"));
                return None;
            }
            // not covering: the caller's reference is consumed
            self.pgmap_put(c, cpu, 1, "get_dev_pagemap: put_dev_pagemap(cached)");
        }
        if self.layout.is_ram(pfn) {
            self.trace_note(|| format!("xa_load(pfn {pfn}) -> NULL (system RAM)"));
            return None;
        }
        let g = self.layout.pgmap_of(pfn);
        match self.s.ledger.life[g] {
            Life::Registered | Life::Killed => Some(g),
            _ => {
                self.trace_note(|| format!("xa_load(pfn {pfn}) -> NULL"));
                None
            }
        }
    }

    /// The reference `get_dev_pagemap` takes on the pgmap its lookup found:
    /// `percpu_ref_tryget_live`, or plain `tryget` where the rules say so.
    /// Every caller of `get_dev_pagemap` (a kernel user, memory_failure)
    /// goes through it.
    pub(crate) fn get_dev_pagemap_ref(&mut self, g: usize, cpu: usize, what: &str) -> bool {
        if self.rules.pgmap.get_dev_pagemap_live {
            self.pgmap_tryget_live(g, cpu, what)
        } else {
            self.pgmap_tryget_many(g, cpu, 1, what)
        }
    }

    /// get_dev_pagemap step 2: `percpu_ref_tryget_live` (or `tryget`).
    pub(crate) fn get_dev_pagemap_tryget(&mut self, g: usize, cpu: usize) {
        let ok = self.get_dev_pagemap_ref(g, cpu, "get_dev_pagemap");
        if ok {
            self.s.ledger.kernel_pgmap_refs[g] += 1;
        }
        self.trace_note(|| format!("get_dev_pagemap -> {}", if ok { "pgmap" } else { "NULL (dying)" }));
    }

    /// `put_dev_pagemap(pgmap)` by a kernel user.
    pub(crate) fn put_dev_pagemap(&mut self, g: usize, cpu: usize) {
        self.s.ledger.kernel_pgmap_refs[g] -= 1;
        self.pgmap_put(g, cpu, 1, "put_dev_pagemap");
    }
}

// ---------------------------------------------------------------------------
// Legality: when the actors may call these kernel functions
// ---------------------------------------------------------------------------

use crate::program::op::Op;

impl Machine {
    /// Is `MemremapPages` allowed now (the actor's contract)?
    pub(crate) fn memremap_pages_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.s.pgmaps[op.a(0)].state == PgmapState::Unused, "the pgmap is already registered")
    }

    /// Is `MemunmapPages` allowed now (the actor's contract)?
    pub(crate) fn memunmap_pages_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let g = op.a(0);
        ok(self.pgmap_live(g), "the pgmap is not registered, or already unbinding")?;
        ok(self.free_task_slot(), "no free task slot")?;
        ok(!self.driver_migrating(g), "the driver finishes its migrations before it unbinds")?;
        ok(
            !self.layout.pfns_of(g).any(|p| self.s.ledger.pages[p].driver),
            "the driver frees the pages it still holds before it unbinds",
        )?;
        ok(
            !(self.layout.pgmap_type[g].driver_allocated()
                && self.rules.private.unbind_after_eviction
                && self.layout.pfns_of(g).any(|p| self.s.ledger.pages[p].in_use())),
            "the driver migrates its pages back before it unbinds (private.unbind_after_eviction)",
        )
    }

    /// Is `RcuGracePeriod` allowed now (the actor's contract)?
    pub(crate) fn rcu_grace_period_enabled(&self, _op: &Op) -> Result<(), &'static str> {
        ok(self.any_switch_pending(), "no RCU callback is pending")?;
        ok(!self.rcu_reader_active(), "a get_dev_pagemap lookup is inside rcu_read_lock()")
    }

    /// Is `GetDevPagemap` allowed now (the actor's contract)?
    pub(crate) fn get_dev_pagemap_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.free_task_slot(), "no free task slot")?;
        let c = op.a(1);
        ok(
            c == 0 || self.s.ledger.kernel_pgmap_refs[c - 1] > 0,
            "the kernel user holds no reference on the cached pgmap",
        )
    }

    /// Is `PutDevPagemap` allowed now (the actor's contract)?
    pub(crate) fn put_dev_pagemap_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.s.ledger.kernel_pgmap_refs[op.a(0)] > 0, "the kernel user holds no reference on this pgmap")
    }
}

#[cfg(test)]
mod tests {
    use crate::page::{PG_FREE_LIST, PG_INIT_REF};
    use crate::program::text::parse_program;
    use crate::{Config, Machine, Rules};

    /// `memunmap_pages`' `percpu_ref_put_many` of the initial references
    /// clears each page's initial-reference mark and nothing else: a page
    /// still in use keeps its state until its user lets go.
    #[test]
    fn dropping_the_initial_references_touches_only_their_mark() {
        let text = "
config types=private pgmaps=1 pages=2 cpus=1 procs=1 addrs=1 tasks=1 ram=0
memremap_pages pgmap=0
memunmap_pages pgmap=0 cpu=0
step task=0
step task=0
step task=0
";
        let p = parse_program(text).unwrap();
        let mut m = Machine::new(Config::with_shape(Rules::preset("e2").unwrap(), p.shape.clone())).unwrap();
        for op in &p.ops[..2] {
            m.step(op).unwrap();
        }
        let before: Vec<u8> = m.s.flags.clone();
        assert!(before.iter().all(|f| f & PG_INIT_REF != 0), "{before:?}");
        assert!(before.iter().all(|f| f & PG_FREE_LIST != 0), "on the driver's free list: {before:?}");
        for op in &p.ops[2..] {
            m.step(op).unwrap();
        }
        assert!(m.s.pgmaps[0].init_dropped);
        let after: Vec<u8> = m.s.flags.clone();
        let expect: Vec<u8> = before.iter().map(|f| f & !PG_INIT_REF).collect();
        assert_eq!(after, expect);
    }
}
