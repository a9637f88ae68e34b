//! The device-private CPU fault: `do_swap_page` → `pgmap->ops->migrate_to_ram`.
//!
//! A CPU touching a device-private entry faults; the driver's
//! `migrate_to_ram` migrates the page (or, with a device-private PMD and
//! compound migration, the folio) back to system RAM with the same
//! migrate_vma steps a driver-initiated migration uses (`migrate.rs`), passing
//! the page as `fault_page`. The task's steps are the points where the
//! kernel can be preempted:
//!
//! 1. **read**: `handle_pte_fault` reads `orig_pte` without the PTL and
//!    finds a device-private entry (a migration entry makes the fault wait in
//!    `migration_entry_wait`; anything else means there is nothing to do);
//! 2. **lock** (E3+): `pte_offset_map_lock`, then `pte_same(orig_pte)` — if
//!    the entry changed meanwhile, unlock and return;
//! 3. **get** (E3+): `get_page` while the PTL keeps the page from being
//!    freed (v6.15: only after `trylock_page` succeeds; on failure unlock the
//!    PTL and return, so the access refaults), then `pte_unmap_unlock`;
//! 4. **migrate_to_ram**: the driver reads `page->pgmap` and
//!    `page->zone_device_data` and runs `migrate_vma_setup` (SELECT_DEVICE_PRIVATE,
//!    its owner, `fault_page`): the collect step — then unmap, copy, pages
//!    and finalize as in `migrate.rs`;
//! 5. **done**: `put_page` (v6.15: `unlock_page` first). If the page is still
//!    behind a device-private entry (the migration was refused because the
//!    page was busy), the access refaults: the task starts again.
//!
//! E1/E2 skip steps 2 and 3: `migrate_to_ram` runs on a page nobody holds a
//! reference to — the race `16ce101db85d` fixed (I-D1). E3 lets every faulting
//! thread take a reference, so two threads faulting the same page each see the
//! other's reference in `folio_migrate_mapping` and refault forever — the
//! livelock the v6.15 trylock fixed (I-D3, detected by the drain).

use crate::machine::{ok, Machine};
use crate::migrate::{MigCtx, Origin, GUP_FAULT, GUP_FAULT_PIN};
use crate::oracle::{lock_task, Obs, LOCK_NONE};
use crate::page::{PG_FREE_LIST, PG_LOCKED};
use crate::pagetable::{Level, Pte};
use crate::program::op::{SELECT_COMPOUND, SELECT_DEVICE_PRIVATE};
use crate::rules::FaultPath;

/// Steps of a migration task (driver-initiated or inside a fault).
pub const M_COLLECT: u8 = 0;
pub const M_UNMAP: u8 = 1;
pub const M_COPY: u8 = 2;
pub const M_PAGES: u8 = 3;
pub const M_FINALIZE: u8 = 4;
/// collect's `flush_tlb_range` after `pte_unmap_unlock` (before v6.0; see
/// `migrate.collect_flush_after_unlock`)
pub const M_FLUSH: u8 = 5;
/// Steps of the fault path around its migration.
pub const F_READ: u8 = 10;
pub const F_LOCK: u8 = 11;
pub const F_GET: u8 = 12;
pub const F_CALL: u8 = 13;
pub const F_DONE: u8 = 14;

impl Machine {
    /// Spawn the fault of (proc, addr).
    pub(crate) fn spawn_fault(&mut self, proc: usize, addr: usize, cpu: usize) {
        let ctx = MigCtx { origin: Origin::Fault, proc: proc as u8, addr: addr as u16, ..MigCtx::default() };
        self.spawn_migration(ctx, F_READ, cpu);
    }

    /// Spawn the fault a GUP call takes on a device-private entry
    /// (`__get_user_pages`: `follow_page_mask` finds no present page, so
    /// `faultin_page` → `handle_mm_fault` → `do_swap_page`). When the fault
    /// returns, GUP looks the address up again ([`Machine::gup_retry`]).
    pub(crate) fn spawn_gup_fault(&mut self, proc: usize, addr: usize, flags: u16, pin: bool, cpu: usize) {
        let gup = GUP_FAULT | if pin { GUP_FAULT_PIN } else { 0 } | (flags as u8) << 2;
        let ctx = MigCtx { origin: Origin::Fault, proc: proc as u8, addr: addr as u16, gup, ..MigCtx::default() };
        if let Some(slot) = self.spawn_migration(ctx, F_READ, cpu) {
            self.trace_note(|| format!("GUP faults the device-private entry in: task {slot}"));
        }
    }

    /// One step of a migration or fault task; the next pc, or None when done.
    pub(crate) fn migrate_step(&mut self, slot: usize, pc: u8, cpu: usize) -> Option<u8> {
        let next = self.migrate_step_inner(slot, pc, cpu);
        let ctx = self.s.mig[slot];
        if next.is_none() && ctx.origin == Origin::Fault && ctx.gup != 0 && self.violation.is_none() {
            return self.gup_retry(slot, cpu);
        }
        next
    }

    /// `__get_user_pages` once `faultin_page` returned: look the address up
    /// again. A present page now: grab it — the GUP call returns it. A
    /// device-private or migration entry again:
    /// fault again (the read step waits out a migration). Nothing mapped,
    /// the process gone, or the fault out of memory: the call fails.
    fn gup_retry(&mut self, slot: usize, cpu: usize) -> Option<u8> {
        let ctx = self.s.mig[slot];
        let (proc, addr) = (ctx.proc as usize, ctx.addr as usize);
        if ctx.oom {
            self.trace_note(|| "GUP -> -ENOMEM (VM_FAULT_OOM)".into());
            return None;
        }
        if !self.s.alive[proc] {
            self.trace_note(|| "GUP -> -EFAULT (the process exited)".into());
            return None;
        }
        let (e, _) = self.entry(proc, addr);
        match e {
            Pte::DevicePrivate { .. } | Pte::Migration { .. } => {
                self.s.mig[slot].retries = self.s.mig[slot].retries.wrapping_add(1);
                self.trace_note(|| "GUP: still not present: fault again".into());
                Some(F_READ)
            }
            Pte::None => {
                self.trace_note(|| "GUP -> -EFAULT (nothing mapped any more)".into());
                None
            }
            Pte::Present { .. } => {
                // a FOLL_WRITE pin started on a writable entry (the contract),
                // and nothing write-protects the address while the fault
                // holds the mmap_lock (fork takes it for writing): the
                // migration maps the RAM page writable, so no COW break here
                let pin = ctx.gup & GUP_FAULT_PIN != 0;
                let r = self.gup(proc, addr, (ctx.gup >> 2) as u16, pin, cpu);
                self.trace_note(|| match r {
                    Ok(p) => format!("GUP -> pfn {p}"),
                    Err(e) => format!("GUP -> {}", e.errno()),
                });
                None
            }
        }
    }

    fn migrate_step_inner(&mut self, slot: usize, pc: u8, cpu: usize) -> Option<u8> {
        let origin = self.s.mig[slot].origin;
        match pc {
            M_COLLECT => {
                self.migrate_collect(slot, cpu);
                // before 60bae7370896 the PTL is dropped before the TLB
                // flush: a step of its own where a present PTE was replaced
                // (a device-private entry is never in a TLB)
                let ctx = self.s.mig[slot];
                let window = self.rules.migrate.collect_flush_after_unlock
                    && origin != Origin::DeviceRange
                    && (ctx.addr as usize..ctx.addr as usize + ctx.npages as usize)
                        .any(|a| self.collected_present(slot, a).is_some());
                Some(if window { M_FLUSH } else { M_UNMAP })
            }
            M_FLUSH => {
                let ctx = self.s.mig[slot];
                self.trace_note(|| {
                    format!("flush_tlb_range(proc {}, {}..{})", ctx.proc, ctx.addr, ctx.addr + ctx.npages)
                });
                Some(M_UNMAP)
            }
            M_UNMAP => {
                self.migrate_unmap(slot, cpu);
                Some(M_COPY)
            }
            M_COPY => {
                self.migrate_alloc_copy(slot, cpu);
                Some(M_PAGES)
            }
            M_PAGES => {
                self.migrate_pages(slot);
                Some(M_FINALIZE)
            }
            M_FINALIZE => {
                self.migrate_finalize(slot, cpu);
                (origin == Origin::Fault).then_some(F_DONE)
            }
            F_READ => self.fault_read(slot),
            F_LOCK => self.fault_lock(slot),
            F_GET => self.fault_get(slot, cpu),
            F_CALL => self.fault_call(slot, cpu),
            _ => self.fault_done(slot, cpu),
        }
    }

    /// Why a migration or fault task cannot step now.
    pub(crate) fn migrate_blocked(&self, slot: usize, pc: u8) -> Option<&'static str> {
        let ctx = self.s.mig[slot];
        let (proc, addr) = (ctx.proc as usize, ctx.addr as usize);
        let _ = (proc, addr);
        // collect, try_to_migrate, remove_migration_ptes and the hole insert
        // take the page-table locks of every mapping they change; a fault
        // holds one across its lock and get steps (conservatively: any PTL
        // held by another task blocks them)
        let ptl_busy = |m: &Machine| m.s.ptl.iter().any(|&o| o != 0 && o as usize != slot + 1);
        match pc {
            M_COLLECT | M_UNMAP | M_PAGES | M_FINALIZE | F_LOCK | F_CALL if ptl_busy(self) => {
                Some("pte_offset_map_lock: another task holds a page-table lock")
            }
            F_READ if self.entry(proc, addr).0.is_migration() => {
                Some("migration_entry_wait: the page is being migrated")
            }
            _ => None,
        }
    }

    /// Step 1: read `orig_pte` (no lock).
    fn fault_read(&mut self, slot: usize) -> Option<u8> {
        let ctx = self.s.mig[slot];
        let (e, level) = self.entry(ctx.proc as usize, ctx.addr as usize);
        let Pte::DevicePrivate { pfn, .. } = e else {
            self.trace_note(|| "the entry is no longer device-private: nothing to do".into());
            return None;
        };
        let m = &mut self.s.mig[slot];
        m.orig = e;
        m.orig_pmd = level == Level::Pmd;
        m.fault_pfn = if level == Level::Pmd { 0 } else { pfn + 1 };
        // a PMD-level entry migrates its folio whole where that exists (E5)
        m.fault_pfn = if level == Level::Pmd { self.s.head[pfn as usize] + 1 } else { m.fault_pfn };
        m.fault_ref = false;
        m.fault_locked = false;
        m.oom = false;
        Some(if self.rules.fault.path == FaultPath::NoRef { F_CALL } else { F_LOCK })
    }

    /// Step 2 (E3+): take the PTL and re-check the entry.
    fn fault_lock(&mut self, slot: usize) -> Option<u8> {
        let ctx = self.s.mig[slot];
        let (proc, addr) = (ctx.proc as usize, ctx.addr as usize);
        self.ptl_lock(proc, addr, slot);
        // pte_same / pmd_same (do_huge_pmd_device_private): the entry and the
        // level it was read at
        let (e, level) = self.entry(proc, addr);
        if e != ctx.orig || (level == Level::Pmd) != ctx.orig_pmd {
            self.trace_note(|| "pte_same fails: the entry changed".into());
            if self.rules.fault.bail_unlocks_ptl {
                self.ptl_unlock(proc, addr);
            }
            return None;
        }
        Some(F_GET)
    }

    /// Step 3 (E3+): reference (and v6.15 lock) the page, drop the PTL.
    fn fault_get(&mut self, slot: usize, _cpu: usize) -> Option<u8> {
        let ctx = self.s.mig[slot];
        let (proc, addr) = (ctx.proc as usize, ctx.addr as usize);
        let p = ctx.fault_pfn as usize - 1;
        let h = self.head_of(p);
        if self.rules.fault.path == FaultPath::Trylock {
            if self.s.flags[h] & PG_LOCKED != 0 {
                self.ptl_unlock(proc, addr);
                self.trace_note(|| format!("trylock_page(pfn {p}) fails: refault"));
                self.s.mig[slot].retries = self.s.mig[slot].retries.wrapping_add(1);
                return Some(F_READ);
            }
            self.s.flags[h] |= PG_LOCKED;
            self.s.ledger.locker[h] = lock_task(slot);
            self.s.mig[slot].fault_locked = true;
        }
        self.page_get(p, 1, "do_swap_page: get_page");
        self.s.ledger.pages[p].fault += 1;
        self.s.mig[slot].fault_ref = true;
        self.ptl_unlock(proc, addr);
        Some(F_CALL)
    }

    /// Step 4: `migrate_to_ram` — the driver dereferences the page, then
    /// `migrate_vma_setup` collects.
    fn fault_call(&mut self, slot: usize, cpu: usize) -> Option<u8> {
        let ctx = self.s.mig[slot];
        let p = ctx.fault_pfn as usize - 1;
        let g = self.layout.pgmap_of(p);
        // I-D1: the driver reads page->pgmap->ops and zone_device_data. Safe
        // only if the page is still the one the entry named: referenced by the
        // fault path, or at least not yet given back to its allocator.
        let head = self.head_of(p);
        let obs = Obs::MigrateToRam {
            pgmap: g,
            pfn: p,
            head,
            nr: self.folio_nr(head),
            fault_ref: ctx.fault_ref,
            on_free_list: self.s.flags[p] & PG_FREE_LIST != 0,
        };
        if self.observe(obs) {
            return None;
        }
        // migrate_vma_setup: fault_page must be device-private, and (v6.15)
        // locked by the caller
        if self.rules.migrate.fault_page_prelocked && !ctx.fault_locked {
            self.trace_note(|| "migrate_vma_setup: fault_page not locked: -EINVAL".into());
            return Some(F_DONE);
        }
        let compound =
            matches!(self.entry(ctx.proc as usize, ctx.addr as usize), (_, Level::Pmd)) && self.rules.migrate.compound;
        let m = &mut self.s.mig[slot];
        m.pgmap = g as u8;
        m.select = (SELECT_DEVICE_PRIVATE | if compound { SELECT_COMPOUND } else { 0 }) as u8;
        self.migrate_collect(slot, cpu);
        Some(crate::fault::M_UNMAP)
    }

    /// Step 5: drop the fault path's reference (and lock); refault if the
    /// page is still on the device.
    fn fault_done(&mut self, slot: usize, cpu: usize) -> Option<u8> {
        let ctx = self.s.mig[slot];
        let p = ctx.fault_pfn as usize - 1;
        // the fault folio (after a split in collect, the fault page's own)
        let unlock = |m: &mut Machine| {
            let h = m.head_of(p);
            m.s.flags[h] &= !PG_LOCKED;
            m.s.ledger.locker[h] = LOCK_NONE;
            m.s.mig[slot].fault_locked = false;
        };
        // unlocking touches the page: it must still be held (I-D1)
        let unlock_held = |m: &mut Machine| {
            let head = m.head_of(p);
            m.observe(Obs::FaultUnlocked { pfn: p, head, nr: m.folio_nr(head) });
            unlock(m);
        };
        if ctx.fault_locked && self.rules.fault.unlock_before_put {
            unlock_held(self);
        }
        if ctx.fault_ref {
            self.s.ledger.pages[p].fault -= 1;
            self.s.mig[slot].fault_ref = false;
            self.put_page_refs(p, 1, cpu, "do_swap_page: put_page");
        }
        if ctx.fault_locked && !self.rules.fault.unlock_before_put {
            unlock_held(self);
        }
        let (e, _) = self.entry(ctx.proc as usize, ctx.addr as usize);
        if e == ctx.orig && !ctx.oom && self.s.alive[ctx.proc as usize] {
            // migrate_to_ram gave up on a busy page: the access refaults
            self.s.mig[slot].retries = self.s.mig[slot].retries.wrapping_add(1);
            self.trace_note(|| "the page is still on the device: refault".into());
            return Some(F_READ);
        }
        None
    }

    /// Does any fault or migrate_vma task work on `proc`'s address space
    /// (holding its mmap_lock for read)?
    pub(crate) fn mm_busy(&self, proc: usize) -> bool {
        self.s.tasks.iter().enumerate().any(|(i, t)| {
            t.is_some_and(|t| matches!(t.kind, crate::sched::TaskKind::Migrate { .. }))
                && self.mig_proc(i) == Some(proc)
        })
    }

    /// Does a migration of the driver of pgmap `g` run?
    pub(crate) fn driver_migrating(&self, g: usize) -> bool {
        self.s.tasks.iter().enumerate().any(|(i, t)| {
            t.is_some_and(|t| matches!(t.kind, crate::sched::TaskKind::Migrate { origin } if origin != Origin::Fault))
                && self.s.mig[i].pgmap as usize == g
        })
    }
}

// ---------------------------------------------------------------------------
// Legality: when the actors may call these kernel functions
// ---------------------------------------------------------------------------

use crate::program::op::Op;

impl Machine {
    /// Is `DoSwapPage` allowed now (the actor's contract)?
    pub(crate) fn do_swap_page_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.s.alive[op.a(0)], "no such process")?;
        ok(matches!(self.entry_at(op.a(0), op.a(1)), Pte::DevicePrivate { .. }), "not a device-private entry")?;
        ok(self.free_task_slot(), "no free task slot")
    }
}

#[cfg(test)]
mod tests {
    use crate::program::text::parse_program;
    use crate::{Config, Machine, Rules};

    /// A GUP fault remembers where it faulted and what the GUP asked for:
    /// the retry pins the RAM page at that address, as FOLL_LONGTERM.
    #[test]
    fn a_gup_fault_retries_the_gup_it_was_spawned_for() {
        let text = "
config types=private pgmaps=1 pages=1 cpus=1 procs=2 addrs=2 tasks=1 ram=1 order=0
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
migrate_vma_insert_page proc=1 addr=1 pfn=0 cpu=0
pin_user_pages proc=1 addr=1 flags=FOLL_LONGTERM cpu=0
";
        let p = parse_program(text).unwrap();
        let mut m = Machine::new(Config::with_shape(Rules::preset("e4").unwrap(), p.shape.clone())).unwrap();
        for op in &p.ops {
            m.step(op).unwrap();
        }
        let ctx = m.s.mig[0];
        assert_eq!((ctx.proc, ctx.addr), (1, 1));
        let step = crate::program::op::Op::new(crate::program::op::OpKind::Step, &[0]);
        for _ in 0..9 {
            m.step(&step).unwrap();
        }
        assert!(m.s.tasks[0].is_none() && m.violation().is_none());
        let ram = m.layout.ndev;
        assert_eq!(m.entry(1, 1).0.pfn(), Some(ram));
        let h = m.s.ledger.pages[ram];
        assert_eq!((h.gup_pins, h.longterm_pins, h.gup_gets), (1, 1, 0));
        // a FOLL_GET stays a FOLL_GET; a CPU fault remembers its address too
        let get =
            text.replace("pin_user_pages proc=1 addr=1 flags=FOLL_LONGTERM", "get_user_pages proc=1 addr=1 flags=0");
        let cpu = text.replace("pin_user_pages proc=1 addr=1 flags=FOLL_LONGTERM", "do_swap_page proc=1 addr=1");
        for (t, gets) in [(get, 1), (cpu, 0)] {
            let p = parse_program(&t).unwrap();
            let mut m = Machine::new(Config::with_shape(Rules::preset("e4").unwrap(), p.shape.clone())).unwrap();
            for op in &p.ops {
                m.step(op).unwrap();
            }
            assert_eq!((m.s.mig[0].proc, m.s.mig[0].addr), (1, 1));
            for _ in 0..9 {
                m.step(&step).unwrap();
            }
            let h = m.s.ledger.pages[ram];
            assert_eq!((h.gup_pins, h.gup_gets), (0, gets), "{t}");
            assert_eq!(m.entry(1, 1).0.pfn(), Some(ram));
        }
    }
}
