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

use crate::machine::Machine;
use crate::oracle::{Class, Life};
use crate::page::Pte;
use crate::program::op::{Op, OpKind, BY_GUP, BY_KERNEL};
use crate::pgmap::{PgmapState, MU_SHUTDOWN};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// memunmap_pages(pgmap)
    Memunmap { pgmap: u8 },
    /// get_dev_pagemap(pfn, cached): `cached` 0 = none, g+1 = pgmap g;
    /// `found` is the pgmap the lookup returned (valid at pc 1)
    GetDevPagemap { pfn: u16, cached: u8, found: u8 },
    /// the filesystem truncating one DAX entry (break layouts + free block)
    Truncate { file: u8, index: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Task {
    pub kind: TaskKind,
    /// the next step to run
    pub pc: u8,
    /// the CPU it runs on
    pub cpu: u8,
}

/// Steps of the truncate task.
pub const TR_SCAN: u8 = 0;
pub const TR_WAIT: u8 = 1;
pub const TR_FREE: u8 = 2;

impl TaskKind {
    /// The action that spawns this kind of task: findings made inside a
    /// task are filed under the kernel function that ran, not under `step`.
    pub fn spawned_by(self) -> OpKind {
        match self {
            TaskKind::Memunmap { .. } => OpKind::MemunmapPages,
            TaskKind::GetDevPagemap { .. } => OpKind::GetDevPagemap,
            TaskKind::Truncate { .. } => OpKind::Truncate,
        }
    }

    /// The pgmap the task works on (for a lookup: the pgmap of its pfn).
    pub fn pgmap(self, l: &crate::config::Layout) -> Option<usize> {
        match self {
            TaskKind::Memunmap { pgmap } => Some(pgmap as usize),
            TaskKind::GetDevPagemap { pfn, .. } => (usize::from(pfn) < l.npfns).then(|| l.pgmap_of(pfn as usize)),
            TaskKind::Truncate { file, .. } => (usize::from(file) < l.nfiles).then(|| l.file_pgmap(file as usize)),
        }
    }
}

impl Task {
    /// Between `xa_load` and the tryget: inside `rcu_read_lock()`.
    pub fn is_rcu_reader(&self) -> bool {
        matches!(self.kind, TaskKind::GetDevPagemap { .. }) && self.pc == 1
    }

    /// What the task is and which step it is at, for traces and reports.
    pub fn describe(&self) -> String {
        match self.kind {
            TaskKind::Memunmap { pgmap } => {
                let step = ["shut user access down", "percpu_ref_kill", "drop init refs", "wait_for_completion", "teardown"];
                format!("memunmap_pages(pgmap={pgmap}) at \"{}\"", step.get(self.pc as usize).unwrap_or(&"?"))
            }
            TaskKind::GetDevPagemap { pfn, .. } => {
                format!("get_dev_pagemap(pfn={pfn}) at \"{}\"", if self.pc == 0 { "xa_load" } else { "tryget" })
            }
            TaskKind::Truncate { file, index } => {
                let step = ["dax_layout_busy_page", "wait for idle page", "free block"];
                format!("truncate(file={file}, index={index}) at \"{}\"", step.get(self.pc as usize).unwrap_or(&"?"))
            }
        }
    }
}

impl Machine {
    pub(crate) fn spawn(&mut self, kind: TaskKind, cpu: usize) {
        if let Some(slot) = self.s.tasks.iter().position(|t| t.is_none()) {
            let t = Task { kind, pc: 0, cpu: cpu as u8 };
            self.s.tasks[slot] = Some(t);
            self.trace_note(|| format!("task {slot}: {}", t.describe()));
        }
    }

    pub(crate) fn free_task_slot(&self) -> bool {
        self.s.tasks.iter().any(|t| t.is_none())
    }

    /// Why task `slot` cannot step now (None: it can).
    pub(crate) fn task_blocked(&self, slot: usize) -> Option<&'static str> {
        let t = self.s.tasks.get(slot).copied().flatten()?;
        match t.kind {
            TaskKind::Memunmap { pgmap } => self.memunmap_blocked(pgmap as usize, t.pc),
            TaskKind::GetDevPagemap { .. } => None,
            TaskKind::Truncate { file, index } => {
                if t.pc == TR_WAIT {
                    let slot = self.layout.entry_slot(file as usize, index as usize);
                    let pfn = self.s.dax[slot] as usize;
                    if pfn > 0 && self.dax_busy(pfn - 1) {
                        return Some("wait_page_idle: waits for the DAX page to become idle");
                    }
                }
                None
            }
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
        };
        self.s.tasks[slot] = next.map(|(pc, kind)| Task { kind, pc, cpu: t.cpu });
    }

    /// Run every runnable task to completion, round-robin, with RCU grace
    /// periods when only blocked tasks remain. Returns when no task can move.
    fn drive_tasks(&mut self) {
        let mut budget = 10_000usize; // a terminating program needs far fewer steps
        loop {
            if self.violation.is_some() || budget == 0 {
                return;
            }
            let mut moved = false;
            for slot in 0..self.s.tasks.len() {
                if self.s.tasks[slot].is_some() && self.task_blocked(slot).is_none() {
                    self.drain_step(Op::new(OpKind::Step, &[slot as u16]));
                    moved = true;
                    budget -= 1;
                    if self.violation.is_some() {
                        return;
                    }
                }
            }
            if !moved {
                if self.any_switch_pending() && !self.rcu_reader_active() {
                    self.drain_step(Op::new(OpKind::RcuGracePeriod, &[]));
                    budget -= 1;
                    continue;
                }
                return;
            }
        }
    }

    /// The end-of-program drain and the final sweep.
    pub(crate) fn drain(&mut self) {
        // 0. Lookups in flight return (they never block); their result is
        //    then held like any other reference and released below.
        for slot in 0..self.s.tasks.len() {
            while self.violation.is_none()
                && matches!(self.s.tasks[slot], Some(Task { kind: TaskKind::GetDevPagemap { .. }, .. }))
            {
                self.drain_step(Op::new(OpKind::Step, &[slot as u16]));
            }
        }
        // 1. GUP callers and kernel users release what they hold.
        for p in 0..self.layout.npfns {
            while self.violation.is_none() && self.s.ledger.pages[p].gup_pins > 0 {
                self.drain_step(Op::new(OpKind::UnpinUserPage, &[p as u16, 0]));
            }
            while self.violation.is_none() && self.s.ledger.pages[p].gup_gets > 0 {
                self.drain_step(Op::new(OpKind::PutPage, &[p as u16, BY_GUP, 0]));
            }
            while self.violation.is_none() && self.s.ledger.pages[p].kernel_gets > 0 {
                self.drain_step(Op::new(OpKind::PutPage, &[p as u16, BY_KERNEL, 0]));
            }
        }
        for g in 0..self.layout.npgmaps {
            while self.violation.is_none() && self.s.ledger.kernel_pgmap_refs[g] > 0 {
                self.drain_step(Op::new(OpKind::PutDevPagemap, &[g as u16, 0]));
            }
        }
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
        // 4. Tasks already running finish.
        self.drive_tasks();
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
                self.violate("I-L4", Class::Liveness, &[("task", slot as u32)], || {
                    (format!("hang: {d} never completes: {why}{extra}"), "completes".into(), "blocked forever".into())
                });
            }
        }
        self.at_label = None;
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
            if self.s.ledger.pages[p].in_use() {
                continue;
            }
            let (rc, init) = (self.s.rc[p], self.s.ledger.init_rc[p]);
            if rc != init {
                self.violate("I-F10", Class::Liveness, &[("pfn", p as u32)], || {
                    (format!("pfn {p}'s refcount is {rc} after every holder released it; it started at {init} \
                              ({} reference(s) {})", (rc - init).abs(), if rc > init { "leaked" } else { "dropped twice" }),
                     format!("{init}"), format!("{rc}"))
                });
                return;
            }
        }
    }

    pub(crate) fn proc_has_mappings(&self, proc: usize) -> bool {
        (0..self.layout.addrs).any(|a| self.s.ptes[self.layout.pte_slot(proc, a)] != Pte::None)
    }

    pub(crate) fn spawn_memunmap(&mut self, g: usize, cpu: usize) {
        self.s.pgmaps[g].state = PgmapState::Unbinding;
        self.spawn(TaskKind::Memunmap { pgmap: g as u8 }, cpu);
        debug_assert!(MU_SHUTDOWN == 0);
    }
}
