//! Kernel functions that can race, as tasks with explicit steps.
//!
//! A task is spawned by an action (`memunmap_pages`, `truncate`,
//! `get_dev_pagemap`) and advanced by `step task=N`; each step ends at a
//! point where the kernel function can be preempted or blocks, so any
//! interleaving with other actions is a deterministic, replayable sequence.
//! A task that must wait (for `pgmap->done`, for a DAX page to go idle, for
//! RCU readers) is *blocked*: its step is not enabled until the condition
//! holds.
//!
//! At the end of a program comes the drain: every actor does what it would
//! eventually do — GUP callers and kernel users release what they hold,
//! processes exit, drivers and kernel users free their allocations,
//! filesystems truncate their files, every driver unbinds — and live tasks are
//! driven to completion round-robin, with RCU grace periods whenever nothing
//! else can move. A task that still cannot finish is a hang (I-L4); a page
//! whose refcount does not return to its initial value once nobody holds it
//! is a leak (I-F10).

use crate::fault::*;
use crate::machine::Machine;
use crate::migrate::{MigCtx, Origin};
use crate::oracle::{Life, Obs};
use crate::pagetable::Pte;
use crate::pgmap::{PgmapState, MU_SHUTDOWN};
use crate::program::op::{Op, OpKind, BY_GUP, BY_KERNEL};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// memunmap_pages(pgmap)
    Memunmap { pgmap: u8 },
    /// get_dev_pagemap(pfn, cached): `cached` 0 = none, g+1 = pgmap g;
    /// `found` is the pgmap the lookup returned (valid at pc 1)
    GetDevPagemap { pfn: u16, cached: u8, found: u8 },
    /// the filesystem truncating one DAX entry (break layouts + free block)
    Truncate { file: u8, index: u8 },
    /// a migration (`migrate_vma_*`, `migrate_device_range`) or a
    /// device-private fault and its `migrate_to_ram`; its arrays live in
    /// `State::mig[slot]`
    Migrate { origin: Origin },
    /// memory_failure(pfn) on a ZONE_DEVICE page (memory_failure.rs);
    /// `found` is the pgmap its lookup returned (valid from pc 1)
    MemoryFailure { pfn: u16, found: u8 },
    /// the driver of pgmap `owner` between its `hmm_range_fault` walk of
    /// (proc, addr), which saw `pfn` (`write`), and its
    /// `mmu_interval_read_retry` (hmm.rs)
    HmmRangeFault { proc: u8, addr: u16, owner: u8, pfn: u16, write: bool },
    /// `free_zone_device_folio` after `->folio_free()` returned: its
    /// `percpu_ref_put_many(&folio->pgmap->ref, nr)` is still to run, with
    /// `nr` read before the callback and `folio->pgmap` read when it runs
    /// (page.rs; only where `thp.free_rereads_pgmap` opens the window)
    FreeFolio { pfn: u16, nr: u16 },
    /// `dax_writeback_one` on DAX entry (file, index) between
    /// `dax_lock_entry` and `dax_unlock_entry` (dax.rs): the entry is
    /// locked while this task exists
    DaxWriteback { file: u8, index: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Task {
    pub kind: TaskKind,
    /// the next step to run
    pub pc: u8,
    /// the CPU it runs on
    pub cpu: u8,
}

/// Steps of the truncate task: the busy scan, waiting for the busy page to
/// go idle (then scanning again), freeing the block, and (with
/// `dax.scan_waits_on_locked_entry`) the scan waiting for a locked entry.
pub const TR_SCAN: u8 = 0;
pub const TR_WAIT: u8 = 1;
pub const TR_FREE: u8 = 2;
pub const TR_ENTRY_WAIT: u8 = 3;

impl TaskKind {
    /// The action that spawns this kind of task: findings made inside a
    /// task are filed under the kernel function that ran, not under `step`.
    pub fn spawned_by(self) -> OpKind {
        match self {
            TaskKind::Memunmap { .. } => OpKind::MemunmapPages,
            TaskKind::GetDevPagemap { .. } => OpKind::GetDevPagemap,
            TaskKind::Truncate { .. } => OpKind::Truncate,
            TaskKind::Migrate { origin: Origin::Vma } => OpKind::MigrateVmaSetup,
            TaskKind::Migrate { origin: Origin::DeviceRange } => OpKind::MigrateDeviceRange,
            TaskKind::Migrate { origin: Origin::Fault } => OpKind::DoSwapPage,
            TaskKind::MemoryFailure { .. } => OpKind::MemoryFailure,
            TaskKind::HmmRangeFault { .. } => OpKind::HmmRangeFault,
            // the last put ran the free path (put_page → free_zone_device_folio)
            TaskKind::FreeFolio { .. } => OpKind::PutPage,
            TaskKind::DaxWriteback { .. } => OpKind::DaxWriteback,
        }
    }

    /// The pgmap the task works on (for a lookup: the pgmap of its pfn).
    pub fn pgmap(self, l: &crate::config::Layout) -> Option<usize> {
        match self {
            TaskKind::Memunmap { pgmap } => Some(pgmap as usize),
            TaskKind::GetDevPagemap { pfn, .. } | TaskKind::MemoryFailure { pfn, .. } => {
                (usize::from(pfn) < l.ndev).then(|| l.pgmap_of(pfn as usize))
            }
            TaskKind::Truncate { file, .. } | TaskKind::DaxWriteback { file, .. } => {
                (usize::from(file) < l.nfiles).then(|| l.file_pgmap(file as usize))
            }
            // the pgmap is in the migration's context, not in the kind
            TaskKind::Migrate { .. } => None,
            TaskKind::HmmRangeFault { owner, .. } => Some(owner as usize),
            // only a device-private folio's free path is ever a task
            TaskKind::FreeFolio { pfn, .. } => Some(l.pgmap_of(pfn as usize)),
        }
    }
}

impl Task {
    /// Between `xa_load` and the tryget: inside `rcu_read_lock()`.
    pub fn is_rcu_reader(&self) -> bool {
        matches!(self.kind, TaskKind::GetDevPagemap { .. } | TaskKind::MemoryFailure { .. }) && self.pc == 1
    }

    /// A task that never blocks and holds nothing a drain releases before
    /// it returns: the drain lets it return first (`get_dev_pagemap`,
    /// `memory_failure`).
    pub fn returns_unaided(&self) -> bool {
        matches!(
            self.kind,
            TaskKind::GetDevPagemap { .. }
                | TaskKind::MemoryFailure { .. }
                | TaskKind::HmmRangeFault { .. }
                | TaskKind::FreeFolio { .. }
                | TaskKind::DaxWriteback { .. }
        )
    }

    /// What the task is and which step it is at, for traces and reports.
    pub fn describe(&self) -> String {
        match self.kind {
            TaskKind::Memunmap { pgmap } => {
                let step =
                    ["shut user access down", "percpu_ref_kill", "drop init refs", "wait_for_completion", "teardown"];
                format!("memunmap_pages(pgmap={pgmap}) at \"{}\"", step.get(self.pc as usize).unwrap_or(&"?"))
            }
            TaskKind::GetDevPagemap { pfn, .. } => {
                format!("get_dev_pagemap(pfn={pfn}) at \"{}\"", if self.pc == 0 { "xa_load" } else { "tryget" })
            }
            TaskKind::MemoryFailure { pfn, .. } => {
                let step = ["xa_load", "tryget", "memory_failure_dev_pagemap"];
                format!("memory_failure(pfn={pfn}) at \"{}\"", step.get(self.pc as usize).unwrap_or(&"?"))
            }
            TaskKind::HmmRangeFault { proc, addr, pfn, .. } => {
                format!("hmm_range_fault(proc={proc}, addr={addr}) saw pfn {pfn} at \"mmu_interval_read_retry\"")
            }
            TaskKind::FreeFolio { pfn, nr } => {
                format!("free_zone_device_folio(pfn={pfn}, nr={nr}) at \"percpu_ref_put_many after ->folio_free()\"")
            }
            TaskKind::DaxWriteback { file, index } => {
                format!("dax_writeback_one(file={file}, index={index}) at \"dax_flush + dax_unlock_entry\"")
            }
            TaskKind::Truncate { file, index } => {
                let step = ["dax_layout_busy_page", "wait for idle page", "free block", "wait for the entry lock"];
                format!("truncate(file={file}, index={index}) at \"{}\"", step.get(self.pc as usize).unwrap_or(&"?"))
            }
            TaskKind::Migrate { origin } => {
                let what = match origin {
                    Origin::Vma => "migrate_vma",
                    Origin::DeviceRange => "migrate_device_range",
                    Origin::Fault => "do_swap_page",
                };
                let step = match self.pc {
                    M_COLLECT => "collect",
                    M_FLUSH => "flush_tlb_range (PTL released)",
                    M_UNMAP => "unmap",
                    M_COPY => "alloc and copy",
                    M_PAGES => "migrate_vma_pages",
                    M_FINALIZE => "migrate_vma_finalize",
                    F_READ => "read orig_pte",
                    F_LOCK => "pte_offset_map_lock + pte_same",
                    F_GET => "get_page + unlock PTL",
                    F_CALL => "migrate_to_ram",
                    _ => "put_page",
                };
                format!("{what} at \"{step}\"")
            }
        }
    }
}

/// Steps the drain gives a lookup in flight (`get_dev_pagemap` takes two):
/// far more than any needs, a bound so a task that never ends cannot hang it.
const TASK_STEPS_MAX: usize = 64;

impl Machine {
    pub(crate) fn spawn(&mut self, kind: TaskKind, cpu: usize) -> Option<usize> {
        self.spawn_at(kind, 0, cpu)
    }

    fn spawn_at(&mut self, kind: TaskKind, pc: u8, cpu: usize) -> Option<usize> {
        let slot = self.s.tasks.iter().position(|t| t.is_none())?;
        let t = Task { kind, pc, cpu: cpu as u8 };
        self.s.tasks[slot] = Some(t);
        self.trace_note(|| format!("task {slot}: {}", t.describe()));
        Some(slot)
    }

    /// Spawn a migration (or fault) task starting at step `pc`.
    pub(crate) fn spawn_migration(&mut self, ctx: MigCtx, pc: u8, cpu: usize) -> Option<usize> {
        let slot = self.s.tasks.iter().position(|t| t.is_none())?;
        self.s.mig[slot] = ctx;
        self.spawn_at(TaskKind::Migrate { origin: ctx.origin }, pc, cpu)
    }

    pub(crate) fn free_task_slot(&self) -> bool {
        self.s.tasks.iter().any(|t| t.is_none())
    }

    /// Why task `slot` cannot step now (None: it can).
    pub(crate) fn task_blocked(&self, slot: usize) -> Option<&'static str> {
        let t = self.s.tasks.get(slot).copied().flatten()?;
        match t.kind {
            TaskKind::Memunmap { pgmap } => self.memunmap_blocked(pgmap as usize, t.pc),
            TaskKind::GetDevPagemap { .. }
            | TaskKind::MemoryFailure { .. }
            | TaskKind::HmmRangeFault { .. }
            | TaskKind::FreeFolio { .. }
            | TaskKind::DaxWriteback { .. } => None,
            TaskKind::Truncate { file, index } => self.truncate_blocked(file as usize, index as usize, t.pc),
            TaskKind::Migrate { .. } => self.migrate_blocked(slot, t.pc),
        }
    }

    /// Run the next step of task `slot`.
    pub(crate) fn task_step(&mut self, slot: usize) {
        let Some(t) = self.s.tasks[slot] else { return };
        let cpu = t.cpu as usize;
        let next = match t.kind {
            TaskKind::Memunmap { pgmap } => self.memunmap_step(pgmap as usize, t.pc, cpu).map(|pc| (pc, t.kind)),
            TaskKind::GetDevPagemap { pfn, cached, .. } => {
                if t.pc == 0 {
                    self.get_dev_pagemap_lookup(pfn as usize, cached as usize, cpu)
                        .map(|g| (1, TaskKind::GetDevPagemap { pfn, cached, found: g as u8 }))
                } else {
                    if let TaskKind::GetDevPagemap { found, .. } = t.kind {
                        self.get_dev_pagemap_tryget(found as usize, cpu);
                    }
                    None
                }
            }
            TaskKind::Truncate { file, index } => {
                self.truncate_step(file as usize, index as usize, t.pc, cpu).map(|pc| (pc, t.kind))
            }
            TaskKind::Migrate { .. } => self.migrate_step(slot, t.pc, cpu).map(|pc| (pc, t.kind)),
            TaskKind::MemoryFailure { pfn, found } => self
                .memory_failure_step(pfn as usize, found as usize, t.pc, cpu)
                .map(|(pc, found)| (pc, TaskKind::MemoryFailure { pfn, found: found as u8 })),
            TaskKind::HmmRangeFault { proc, addr, owner, pfn, write } => {
                self.hmm_commit(proc as usize, addr as usize, owner as usize, pfn as usize, write);
                None
            }
            TaskKind::FreeFolio { pfn, nr } => {
                self.free_folio_put_pgmap(pfn as usize, nr as usize, cpu);
                None
            }
            TaskKind::DaxWriteback { file, index } => {
                self.dax_writeback_done(file as usize, index as usize);
                None
            }
        };
        self.s.tasks[slot] = next.map(|(pc, kind)| Task { kind, pc, cpu: t.cpu });
        if next.is_none() {
            self.task_finished(slot);
        }
    }

    /// A task returned: its migration arrays are cleared (nothing reads them
    /// again; clearing keeps equal states equal for the explorer), and I-D2:
    /// a kernel function returns with no page-table lock held.
    fn task_finished(&mut self, slot: usize) {
        let cap = self.layout.mig_cap();
        self.s.mig[slot] = crate::migrate::MigCtx::default();
        self.s.mig_entries[slot * cap..(slot + 1) * cap].fill(crate::migrate::MigEntry::default());
        if let Some(i) = self.s.ptl.iter().position(|&o| o as usize == slot + 1) {
            self.s.ptl[i] = 0;
            self.observe(Obs::ReturnedHoldingPtl { slot });
        }
    }

    /// Run every runnable task to completion, round-robin, with RCU grace
    /// periods when only blocked tasks remain. Returns when no task can move.
    fn drive_tasks(&mut self) {
        self.drive_tasks_where(|_| true)
    }

    /// `drive_tasks` for the tasks `which` selects. Device-private faults
    /// that keep refaulting are watched: the drain schedules
    /// deterministically, so if the whole state repeats at the start of a
    /// round in which a fault refaulted, the same rounds repeat forever — a
    /// livelock (I-D3).
    fn drive_tasks_where(&mut self, which: impl Fn(&Task) -> bool) {
        let mut budget = 10_000usize; // a terminating program needs far fewer steps
                                      // digests of the states at the start of rounds with refaults (a fixed
                                      // array: the drain allocates nothing; a cycle longer than this ends
                                      // in the step budget and is reported as a hang, I-L4)
        let mut seen = [0u64; 64];
        let mut nseen = 0usize;
        loop {
            if self.violation.is_some() || budget == 0 {
                return;
            }
            let retries: u32 = self.fault_retries();
            let mut moved = false;
            for slot in 0..self.s.tasks.len() {
                if budget > 0 && self.s.tasks[slot].is_some_and(|t| which(&t)) && self.task_blocked(slot).is_none() {
                    self.drain_step(Op::new(OpKind::Step, &[slot as u16]));
                    moved = true;
                    budget = budget.saturating_sub(1);
                    if self.violation.is_some() {
                        return;
                    }
                }
            }
            if self.fault_retries() != retries {
                let h = self.state_digest();
                if seen[..nseen].contains(&h) {
                    self.report_livelock();
                    return;
                }
                if nseen < seen.len() {
                    seen[nseen] = h;
                    nseen += 1;
                }
            }
            if !moved {
                if self.any_switch_pending() && !self.rcu_reader_active() {
                    self.drain_step(Op::new(OpKind::RcuGracePeriod, &[]));
                    budget = budget.saturating_sub(1);
                    continue;
                }
                return;
            }
        }
    }

    /// Refaults so far, over every fault task.
    fn fault_retries(&self) -> u32 {
        self.s
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_some_and(|t| matches!(t.kind, TaskKind::Migrate { origin: Origin::Fault })))
            .map(|(i, _)| self.s.mig[i].retries as u32)
            .sum()
    }

    /// I-D3: the faults on a device page refault forever.
    fn report_livelock(&mut self) {
        let faults: Vec<usize> = (0..self.s.tasks.len())
            .filter(|&i| self.s.tasks[i].is_some_and(|t| matches!(t.kind, TaskKind::Migrate { origin: Origin::Fault })))
            .collect();
        let pfns: Vec<String> =
            faults.iter().filter_map(|&i| self.s.mig[i].fault_pfn.checked_sub(1)).map(|p| p.to_string()).collect();
        let n = faults.len();
        self.at_label = Some("livelock check");
        let pfns = pfns.join(", ");
        self.observe(Obs::Livelock { task: faults.first().copied().unwrap_or(0), faults: n, pfns: &pfns });
        self.at_label = None;
    }

    /// A digest of everything a task's next steps depend on (the drain's
    /// livelock detector compares them; std's SipHash with fixed keys, so it
    /// is the same on every machine).
    fn state_digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let s = &self.s;
        (&s.rc, &s.mc, &s.flags, &s.mapping, &s.head, &s.order, &s.emc, &s.pincount).hash(&mut h);
        (&s.ptes, &s.pmds, &s.ptl, &s.tasks, &s.mig_entries, &s.ledger, &s.alive).hash(&mut h);
        for (i, m) in s.mig.iter().enumerate() {
            // the retry counter is what changes every round; leave it out
            (
                i,
                m.origin,
                m.proc,
                m.addr,
                m.npages,
                m.pgmap,
                m.select,
                m.fault_pfn,
                m.orig,
                m.fault_ref,
                m.fault_locked,
                m.oom,
            )
                .hash(&mut h);
        }
        for p in &s.pgmaps {
            (p.state, p.pref.count(), p.pref.is_dying(), p.pref.switch_pending(), p.done).hash(&mut h);
        }
        h.finish()
    }

    /// The end-of-program drain and the final sweep.
    pub(crate) fn drain(&mut self) {
        // 0. Lookups in flight return (they never block); their result is
        //    then held like any other reference and released below. So do a
        //    memory_failure in flight (it never blocks, and puts what it got
        //    itself) and a driver's HMM snapshot (it holds nothing).
        //    (Every loop here is bounded by the count it drains: a release
        //    that did not release — a model bug, or a mutant of one — ends
        //    the drain with holders left, which teardown then reports,
        //    instead of spinning for ever.)
        for slot in 0..self.s.tasks.len() {
            for _ in 0..TASK_STEPS_MAX {
                if self.violation.is_some() || !self.s.tasks[slot].is_some_and(|t| t.returns_unaided()) {
                    break;
                }
                self.drain_step(Op::new(OpKind::Step, &[slot as u16]));
            }
        }
        // 1. GUP callers and kernel users release what they hold.
        self.release_page_holders();
        for g in 0..self.layout.npgmaps {
            for _ in 0..self.s.ledger.kernel_pgmap_refs[g] {
                if self.violation.is_some() {
                    break;
                }
                self.drain_step(Op::new(OpKind::PutDevPagemap, &[g as u16, 0]));
            }
        }
        // 1b. Migrations and faults in flight finish (a process cannot exit
        //     while one of its threads is in a fault, or while a driver
        //     migrates its pages under its mmap_lock).
        for slot in 0..self.s.mig.len() {
            self.s.mig[slot].retries = 0;
        }
        self.drive_tasks_where(|t| matches!(t.kind, TaskKind::Migrate { .. }));
        //     A GUP call that faulted a device-private page in grabbed it
        //     when its fault returned: its caller releases it too.
        self.release_page_holders();
        // 2. Processes exit.
        for proc in 0..self.layout.procs {
            if self.violation.is_none() && self.s.alive[proc] && self.proc_has_mappings(proc) {
                self.drain_step(Op::new(OpKind::ExitMmap, &[proc as u16, 0]));
            }
        }
        // 3. Drivers and kernel users free their allocations.
        for p in 0..self.layout.npfns {
            if self.violation.is_none() && self.s.ledger.pages[p].driver {
                self.drain_step(Op::new(OpKind::FreeDevicePage, &[p as u16, 0]));
            }
            if self.violation.is_none() && self.s.p2p_len[p] > 0 {
                self.drain_step(Op::new(OpKind::PciFreeP2pmem, &[p as u16, 0]));
            }
        }
        // 4. Tasks already running finish (a GUP's fault among them: its
        //    caller releases what it got).
        self.drive_tasks();
        self.release_page_holders();
        // 5. Filesystems truncate their files.
        for file in 0..self.layout.nfiles {
            for index in 0..self.layout.file_pages {
                let slot = self.layout.entry_slot(file, index);
                if self.violation.is_none() && self.s.dax[slot] > 0 && !self.truncating(file) && self.free_task_slot() {
                    self.drain_step(Op::new(OpKind::Truncate, &[file as u16, index as u16, 0]));
                    self.drive_tasks();
                }
            }
        }
        if self.violation.is_none() {
            self.at_label = Some("leak check");
            self.check_leaks();
            self.at_label = None;
        }
        // 6. Every driver unbinds.
        for g in 0..self.layout.npgmaps {
            if self.violation.is_none() && self.s.pgmaps[g].state == PgmapState::Live && self.free_task_slot() {
                self.drain_step(Op::new(OpKind::MemunmapPages, &[g as u16, 0]));
                self.drive_tasks();
            }
        }
        self.drive_tasks();
        // 7. Whatever is left waits forever.
        self.at_label = Some("end of drain");
        if self.violation.is_none() {
            if let Some((slot, t)) = self.s.tasks.iter().enumerate().find_map(|(i, t)| t.map(|t| (i, t))) {
                let why = self.task_blocked(slot).unwrap_or("cannot make progress");
                let extra = match t.kind {
                    crate::sched::TaskKind::Memunmap { pgmap } => {
                        format!("; pgmap->ref stays at {}", self.s.pgmaps[pgmap as usize].pref.count())
                    }
                    _ => String::new(),
                };
                let d = t.describe();
                self.observe(Obs::Hang { task: slot, what: &d, why, extra: &extra });
            }
        }
        self.at_label = None;
    }

    /// Drain step 1: GUP callers and kernel users release the page
    /// references and pins they hold.
    fn release_page_holders(&mut self) {
        for p in 0..self.layout.npfns {
            let h = self.s.ledger.pages[p];
            let releases = [
                (h.gup_pins, Op::new(OpKind::UnpinUserPage, &[p as u16, 0])),
                (h.gup_gets, Op::new(OpKind::PutPage, &[p as u16, BY_GUP, 0])),
                (h.kernel_gets, Op::new(OpKind::PutPage, &[p as u16, BY_KERNEL, 0])),
            ];
            for (n, op) in releases {
                for _ in 0..n {
                    if self.violation.is_some() {
                        break;
                    }
                    self.drain_step(op);
                }
            }
        }
    }

    /// I-F10: once nobody holds a page, its refcount is its initial value.
    fn check_leaks(&mut self) {
        for g in 0..self.layout.npgmaps {
            if self.s.ledger.life[g] == Life::Registered {
                self.check_pgmap_leaks(g);
            }
        }
    }

    /// I-F10 for the pages of one pgmap (also run when its unbind is about
    /// to drop the init references, so a program that unbinds itself is
    /// checked too).
    pub(crate) fn check_pgmap_leaks(&mut self, g: usize) {
        for p in self.layout.pfns_of(g) {
            // a folio is judged by its head, where its references live
            if self.head_of(p) != p || self.folio_in_use(p) {
                continue;
            }
            let nr = self.folio_nr(p);
            if self.observe(Obs::Idle { head: p, nr, rc: self.s.rc[p] }) {
                return;
            }
        }
    }

    pub(crate) fn proc_has_mappings(&self, proc: usize) -> bool {
        (0..self.layout.addrs).any(|a| self.entry(proc, a).0 != Pte::None)
    }

    pub(crate) fn spawn_memunmap(&mut self, g: usize, cpu: usize) {
        self.s.pgmaps[g].state = PgmapState::Unbinding;
        let _ = self.spawn(TaskKind::Memunmap { pgmap: g as u8 }, cpu);
        const { assert!(MU_SHUTDOWN == 0) };
    }
}

// ---------------------------------------------------------------------------
// Legality: when the actors may call these kernel functions
// ---------------------------------------------------------------------------

impl Machine {
    /// Is `Step` allowed now (the actor's contract)?
    pub(crate) fn step_enabled(&self, op: &Op) -> Result<(), &'static str> {
        match self.s.tasks[op.a(0)] {
            None => Err("no such task"),
            Some(_) => self.task_blocked(op.a(0)).map_or(Ok(()), Err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TaskKind;
    use crate::config::{Layout, Shape};
    use crate::rules::DeviceType;

    /// The pgmap a task works on (a finding inside it is filed under that
    /// pgmap's device type): a lookup's and a memory_failure's is the pgmap
    /// of their pfn, none for system RAM; an HMM snapshot's is its driver's.
    #[test]
    fn a_task_names_the_pgmap_it_works_on() {
        let shape =
            Shape { types: vec![DeviceType::Private, DeviceType::Generic], pages: 2, ram: 2, ..Shape::default() };
        let l = Layout::new(&shape);
        assert_eq!((l.ndev, l.pgmap_of(2)), (4, 1));
        for (pfn, want) in [(0, Some(0)), (1, Some(0)), (2, Some(1)), (3, Some(1)), (4, None), (5, None)] {
            let lookup = TaskKind::GetDevPagemap { pfn, cached: 0, found: 0 };
            let mf = TaskKind::MemoryFailure { pfn, found: 0 };
            assert_eq!((lookup.pgmap(&l), mf.pgmap(&l)), (want, want), "pfn {pfn}");
        }
        let hmm = TaskKind::HmmRangeFault { proc: 0, addr: 0, owner: 1, pfn: 0, write: false };
        assert_eq!(hmm.pgmap(&l), Some(1));
        // a pending free path: the pgmap of the page it frees
        let free = |pfn| TaskKind::FreeFolio { pfn, nr: 1 }.pgmap(&l);
        assert_eq!((free(1), free(2)), (Some(0), Some(1)));
        // a truncate's and a writeback's: the pgmap of the file's
        // filesystem; none for a file the shape does not have
        let dax = Shape { types: vec![DeviceType::Generic, DeviceType::Fsdax], files: 2, ..Shape::default() };
        let l = Layout::new(&dax);
        assert_eq!(l.nfiles, 2);
        for file in [0, 1, 2] {
            let want = (file < 2).then_some(1);
            let tr = TaskKind::Truncate { file, index: 0 }.pgmap(&l);
            let wb = TaskKind::DaxWriteback { file, index: 0 }.pgmap(&l);
            assert_eq!((tr, wb), (want, want), "file {file}");
        }
    }
}
