//! The machine: pgmaps, struct pages, page tables, tasks and the oracle's
//! ledger, driven one action at a time.
//!
//! [`Machine::enabled`] is the actors' contract: an action is offered only
//! when the actor issuing it may legally do so in its era (only a holder puts,
//! only the pinner unpins, a driver frees only what it allocated and stops
//! allocating once it unbinds, a filesystem faults nothing in while it
//! truncates, ...). A violation is therefore a defect of the refcount design
//! under test, never of the caller. [`Machine::step`] applies one action
//! through the kernel functions in the domain modules (`page`, `pgmap`,
//! `driver`, `p2pdma`, `dax`, `gup`, `process`, `sched`); the oracle checks
//! run inside them (safety) and after each action on what it touched
//! (conformance), so the cost per action is O(objects touched).

use crate::config::{Config, ConfigError, Layout};
use crate::migrate::{MigCtx, MigEntry, Origin};
use crate::oracle::{self, Class, Invariant, Ledger, Obs, Violation};
use crate::page::{PG_BUDDY, PG_LOCKED};
use crate::pagetable::Pte;
use crate::pgmap::{Pgmap, PgmapState};
use crate::program::op::{Op, OpKind, BY_GUP, KINDS, MAX_ARGS, SITE_NAMES};
use crate::rules::Rules;
use crate::sched::{Task, TaskKind};
use serde::Serialize;
use std::sync::Arc;

/// Everything that changes while a program runs (cheap to clone; the
/// explorer hashes it).
#[derive(Clone, Debug)]
pub struct State {
    pub pgmaps: Vec<Pgmap>,
    /// `_refcount` per pfn
    pub rc: Vec<i32>,
    /// mapcount per pfn (refcounted mappings only, as rmap counts them)
    pub mc: Vec<i32>,
    pub flags: Vec<u8>,
    pub mapping: Vec<u8>,
    /// compound head of each pfn (itself for a head or an order-0 page)
    pub head: Vec<u16>,
    /// folio order, valid on heads
    pub order: Vec<u8>,
    /// `_pincount` of a large folio (on its head)
    pub pincount: Vec<i32>,
    /// entire (PMD) mapcount of a large folio (on its head)
    pub emc: Vec<i32>,
    /// the data each physical page holds (a token; writes make new ones)
    pub content: Vec<u32>,
    /// the next data token
    pub next_token: u32,
    /// page tables: procs × addrs
    pub ptes: Vec<Pte>,
    /// PMDs: procs × blocks (a PMD maps `1 << order` slots)
    pub pmds: Vec<Pte>,
    /// page-table locks: owner task + 1, 0 = free
    pub ptl: Vec<u8>,
    /// per task slot: the migration it runs (migrate_vma, migrate_device_range,
    /// the device-private fault's migrate_to_ram)
    pub mig: Vec<MigCtx>,
    /// per task slot × entry: the `src`/`dst` arrays of that migration
    pub mig_entries: Vec<MigEntry>,
    /// per pgmap: pgmap references the split of a device-private folio took
    /// (the 2020 THP patch's `get_many(nr - 1)`), for I-P1's accounting
    pub split_pgmap_refs: Vec<u32>,
    /// per pgmap: references a kernel error path took and never put (the
    /// leak of a modelled bug, e.g. `__gup_device_huge` before
    /// 6401c4eb57f9): I-P1 counts them; nothing ever puts them, so the
    /// unbind that waits for the pgmap to reach zero hangs (I-L4)
    pub lost_pgmap_refs: Vec<u32>,
    /// per pgmap: pgmap references taken by get_page minus those dropped by
    /// put_page (before v4.11, `pgmap.page_refs_take_pgmap_refs`)
    pub page_pgmap_refs: Vec<i64>,
    pub alive: Vec<bool>,
    /// per process: the anon_vmas its VMA is linked to (`anon_vma_chain`),
    /// one bit per anon_vma id: its own (bit `proc`) and, after a fork, its
    /// parent's chain (`anon_vma_fork` → `anon_vma_clone`). Empty once it
    /// exited (`unlink_anon_vmas`). `rmap.rs` walks it.
    pub avc: Vec<u8>,
    /// DAX entries: files × file_pages, pfn + 1 (0 = none)
    pub dax: Vec<u16>,
    /// pci_alloc_p2pmem allocations: length at the start pfn
    pub p2p_len: Vec<u8>,
    /// per failure site (`fail_next`): 0 = nothing armed, n = the n-th next
    /// call at that site fails
    pub armed: [u8; SITE_NAMES.len()],
    pub tasks: Vec<Option<Task>>,
    pub ledger: Ledger,
}

/// One executed action, for `explain` and reproducers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceEntry {
    pub step: usize,
    pub action: String,
    pub cpu: usize,
    /// part of the end-of-program drain
    pub drain: bool,
    /// counter changes: "pfn 3 refcount 1 -> 2", "pgmap 0 ref 5 -> 4"
    pub changes: Vec<String>,
    /// kernel events: "page_free(pfn 3)", "task 0: ..."
    pub notes: Vec<String>,
}

/// The outcome of a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// first safety or liveness violation
    pub violation: Option<Violation>,
    /// first conformance failure (the run goes on after one)
    pub conformance: Option<Violation>,
    /// actions executed (program + drain)
    pub steps: usize,
    pub trace: Vec<TraceEntry>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.violation.is_none() && self.conformance.is_none()
    }
    /// The violation to report: safety/liveness first, else conformance.
    pub fn reported(&self) -> Option<&Violation> {
        self.violation.as_ref().or(self.conformance.as_ref())
    }
}

/// What one action brought into use, in increasing order: pgmaps it
/// registered, pages somebody came to hold, pages somebody came to pin,
/// kernel tasks it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Created {
    pub pgmaps: Vec<usize>,
    pub pages: Vec<usize>,
    pub pins: Vec<usize>,
    pub tasks: Vec<usize>,
}

/// Why an action could not be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepError {
    /// an operand outside its domain
    Domain(crate::program::op::DomainError),
    /// the actor's contract does not allow the action now
    NotEnabled(&'static str),
    /// the machine already stopped at a violation
    Stopped,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Domain(s) => write!(f, "bad operand: {s}"),
            StepError::NotEnabled(s) => write!(f, "not enabled: {s}"),
            StepError::Stopped => f.write_str("the machine stopped at a violation"),
        }
    }
}

pub(crate) const TOUCH_CAP: usize = 24;

/// A contract's verdict: allowed when `c` holds, else `why`.
#[inline]
pub(crate) fn ok(c: bool, why: &'static str) -> Result<(), &'static str> {
    if c {
        Ok(())
    } else {
        Err(why)
    }
}

/// `GUP_PIN_COUNTING_BIAS` (include/linux/mm.h).
pub const GUP_PIN_COUNTING_BIAS: i32 = 1024;

pub struct Machine {
    pub cfg: Config,
    pub layout: Layout,
    pub rules: Arc<Rules>,
    pub s: State,
    pub(crate) violation: Option<Violation>,
    pub(crate) conformance: Option<Violation>,
    /// index of the action being applied
    pub(crate) at: usize,
    pub(crate) at_op: Option<Op>,
    /// a phase of the drain that is not an action ("leak check", ...)
    pub(crate) at_label: Option<&'static str>,
    pub(crate) in_drain: bool,
    pub(crate) in_drain_step: bool,
    /// GUP is grabbing a page reference (not through get_page)
    pub(crate) in_gup_grab: bool,
    pub(crate) touched_pages: [u16; TOUCH_CAP],
    pub(crate) ntouched: usize,
    pub(crate) touched_pgmaps: u32,
    tracing: bool,
    trace: Vec<TraceEntry>,
    notes: Vec<String>,
    before_rc: Vec<i32>,
    before_mc: Vec<i32>,
    before_emc: Vec<i32>,
    before_ref: Vec<i64>,
    /// the byte decoder's bound per action (see `program::bytes`)
    pub(crate) decode_probes: usize,
}

impl Machine {
    pub fn new(cfg: Config) -> Result<Machine, ConfigError> {
        cfg.validate()?;
        let layout = Layout::new(&cfg.shape);
        let n = layout.npfns;
        let s = State {
            pgmaps: (0..layout.npgmaps).map(|_| Pgmap::new(layout.cpus)).collect(),
            rc: vec![0; n],
            mc: vec![0; n],
            flags: vec![0; n],
            mapping: vec![0; n],
            head: (0..n as u16).collect(),
            order: vec![0; n],
            pincount: vec![0; n],
            emc: vec![0; n],
            content: vec![0; n],
            next_token: 1,
            ptes: vec![Pte::None; layout.procs * layout.addrs],
            pmds: vec![Pte::None; layout.procs * layout.blocks],
            ptl: vec![0; Machine::ptl_count(&layout)],
            mig: vec![MigCtx::default(); layout.tasks],
            mig_entries: vec![MigEntry::default(); layout.tasks * layout.mig_cap()],
            split_pgmap_refs: vec![0; layout.npgmaps],
            lost_pgmap_refs: vec![0; layout.npgmaps],
            page_pgmap_refs: vec![0; layout.npgmaps],
            alive: vec![true; layout.procs],
            avc: (0..layout.procs).map(|p| 1u8 << p).collect(),
            dax: vec![0; layout.nfiles * layout.file_pages],
            p2p_len: vec![0; n],
            armed: [0; SITE_NAMES.len()],
            tasks: vec![None; layout.tasks],
            ledger: Ledger::new(n, layout.npgmaps, layout.procs * layout.addrs),
        };
        let mut m = Machine {
            rules: cfg.rules.clone(),
            cfg,
            layout,
            s,
            violation: None,
            conformance: None,
            at: 0,
            at_op: None,
            at_label: None,
            in_drain: false,
            in_drain_step: false,
            in_gup_grab: false,
            touched_pages: [0; TOUCH_CAP],
            ntouched: 0,
            touched_pgmaps: 0,
            tracing: false,
            trace: Vec::new(),
            notes: Vec::new(),
            before_rc: Vec::new(),
            before_mc: Vec::new(),
            before_emc: Vec::new(),
            before_ref: Vec::new(),
            decode_probes: crate::program::bytes::DECODE_PROBES,
        };
        m.reset();
        Ok(m)
    }

    /// Back to the initial state, reusing every allocation.
    pub fn reset(&mut self) {
        let s = &mut self.s;
        for p in s.pgmaps.iter_mut() {
            p.reset();
        }
        s.rc.fill(0);
        s.mc.fill(0);
        s.flags.fill(0);
        s.mapping.fill(0);
        for (i, h) in s.head.iter_mut().enumerate() {
            *h = i as u16;
        }
        s.order.fill(0);
        s.pincount.fill(0);
        s.emc.fill(0);
        s.content.fill(0);
        s.next_token = 1;
        s.ptes.fill(Pte::None);
        s.pmds.fill(Pte::None);
        s.ptl.fill(0);
        s.mig.fill(MigCtx::default());
        s.mig_entries.fill(MigEntry::default());
        s.split_pgmap_refs.fill(0);
        s.lost_pgmap_refs.fill(0);
        s.page_pgmap_refs.fill(0);
        s.alive.fill(true);
        for (p, c) in s.avc.iter_mut().enumerate() {
            *c = 1 << p;
        }
        s.dax.fill(0);
        s.p2p_len.fill(0);
        s.armed = [0; SITE_NAMES.len()];
        s.tasks.fill(None);
        s.ledger.reset();
        // system RAM starts free, in the buddy allocator
        for p in self.layout.ram_pfns() {
            s.flags[p] = PG_BUDDY;
        }
        self.violation = None;
        self.conformance = None;
        self.at = 0;
        self.at_op = None;
        self.at_label = None;
        self.in_drain = false;
        self.in_drain_step = false;
        self.ntouched = 0;
        self.touched_pgmaps = 0;
        self.trace.clear();
        self.notes.clear();
    }

    /// Record traces (changes and notes per action) from now on.
    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    pub fn steps(&self) -> usize {
        self.at
    }

    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    pub fn stopped(&self) -> bool {
        self.violation.is_some()
    }

    // ------------------------------------------------------------------
    // Oracle plumbing
    // ------------------------------------------------------------------

    /// Record an observation; the oracle judges it ([`oracle::judge`]) from
    /// the ledger alone. True when it broke an invariant (whether or not an
    /// earlier violation is the one reported), so the kernel function can
    /// stop where the kernel would have crashed.
    pub(crate) fn observe(&mut self, obs: Obs<'_>) -> bool {
        let Some(j) = oracle::judge(&obs, &self.s.ledger, &self.layout) else { return false };
        let taken = if j.invariant.class() == Class::Conformance { &self.conformance } else { &self.violation };
        if taken.is_none() {
            let (message, expected, actual) = oracle::describe(&obs, &j, &self.s.ledger, &self.layout);
            self.record(j.invariant, j.objects(), message, expected, actual);
        }
        true
    }

    /// Report a broken invariant. Safety/liveness: the first one stops the
    /// program. Conformance: the first one is kept, the program goes on.
    /// Only `conformance.rs` reports directly; everything else goes through
    /// [`Machine::observe`].
    pub(crate) fn violate(
        &mut self,
        invariant: Invariant,
        objects: &[(&'static str, u32)],
        f: impl FnOnce() -> (String, String, String),
    ) {
        let taken = if invariant.class() == Class::Conformance { &self.conformance } else { &self.violation };
        if taken.is_some() {
            return;
        }
        let (message, expected, actual) = f();
        self.record(invariant, objects, message, expected, actual);
    }

    fn record(
        &mut self,
        invariant: Invariant,
        objects: &[(&'static str, u32)],
        message: String,
        expected: String,
        actual: String,
    ) {
        let action = match (self.at_label, &self.at_op) {
            (Some(l), _) => format!("drain: {l}"),
            (None, Some(op)) if self.in_drain_step => format!("drain: {}", crate::program::text::op_to_text(op)),
            (None, Some(op)) => crate::program::text::op_to_text(op),
            _ => String::new(),
        };
        let op = if self.at_label.is_some() { None } else { self.at_op };
        let stepped = op.filter(|o| o.kind == OpKind::Step).map(|o| o.a(0));
        let named = objects.iter().find(|(k, _)| *k == "task").map(|&(_, t)| t as usize);
        let task = stepped.or(named).and_then(|slot| self.s.tasks.get(slot).copied().flatten()).map(|t| t.kind);
        let v = Violation {
            invariant,
            step: self.at,
            action,
            message,
            objects: objects.to_vec(),
            expected,
            actual,
            op,
            task,
        };
        if invariant.class() == Class::Conformance {
            self.conformance = Some(v);
        } else {
            self.violation = Some(v);
        }
    }

    #[inline]
    pub(crate) fn touch_page(&mut self, pfn: usize) {
        if self.ntouched < TOUCH_CAP {
            self.touched_pages[self.ntouched] = pfn as u16;
        }
        self.ntouched += 1;
        if !self.layout.is_ram(pfn) {
            self.touched_pgmaps |= 1 << self.layout.pgmap_of(pfn);
        }
    }

    #[inline]
    pub(crate) fn touch_pgmap(&mut self, g: usize) {
        self.touched_pgmaps |= 1 << g;
    }

    /// A kernel event worth showing in a trace (only built when tracing).
    #[inline]
    pub(crate) fn trace_note(&mut self, f: impl FnOnce() -> String) {
        if self.tracing {
            self.notes.push(f());
        }
    }

    // ------------------------------------------------------------------
    // The actors' contracts
    // ------------------------------------------------------------------

    /// Is `op` allowed now? `Err` says why not. Each kind's rule lives in
    /// the module of the kernel function it models (`pgmap.rs`, `driver.rs`,
    /// `gup.rs`, ...), beside the function; this only dispatches.
    pub fn enabled(&self, op: &Op) -> Result<(), &'static str> {
        use OpKind::*;
        match op.kind {
            MemremapPages => self.memremap_pages_enabled(op),
            MemunmapPages => self.memunmap_pages_enabled(op),
            Step => self.step_enabled(op),
            RcuGracePeriod => self.rcu_grace_period_enabled(op),
            GetDevPagemap => self.get_dev_pagemap_enabled(op),
            PutDevPagemap => self.put_dev_pagemap_enabled(op),
            AllocDevicePage | AllocDeviceFolio => self.alloc_device_page_enabled(op),
            FreeDevicePage => self.free_device_page_enabled(op),
            LockPage => self.lock_page_enabled(op),
            UnlockPage => self.unlock_page_enabled(op),
            MigrateVmaInsertPage => self.migrate_vma_insert_page_enabled(op),
            PciAllocP2pmem => self.pci_alloc_p2pmem_enabled(op),
            PciFreeP2pmem => self.pci_free_p2pmem_enabled(op),
            GetPage => self.get_page_enabled(op),
            PutPage => self.put_page_enabled(op),
            P2pmemAllocMmap => self.p2pmem_alloc_mmap_enabled(op),
            DevDaxFault => self.dev_dax_fault_enabled(op),
            DaxAssociateEntry => self.dax_associate_entry_enabled(op),
            DaxIomapFault => self.dax_iomap_fault_enabled(op),
            Truncate => self.truncate_enabled(op),
            Fork => self.fork_enabled(op),
            ExitMmap => self.exit_mmap_enabled(op),
            Munmap => self.munmap_enabled(op),
            MadviseDontneed => self.madvise_dontneed_enabled(op),
            GetUserPages | PinUserPages => self.get_user_pages_enabled(op),
            UnpinUserPage => self.unpin_user_page_enabled(op),
            DoAnonymousPage => self.do_anonymous_page_enabled(op),
            DoHugePmdAnonymousPage => self.do_huge_pmd_anonymous_page_enabled(op),
            CpuWrite => self.cpu_write_enabled(op),
            DeviceWrite => self.device_write_enabled(op),
            DmaWrite => self.dma_write_enabled(op),
            MigrateVmaSetup => self.migrate_vma_setup_enabled(op),
            DoSwapPage => self.do_swap_page_enabled(op),
            MigrateDeviceRange => self.migrate_device_range_enabled(op),
            SplitHugePmd => self.split_huge_pmd_enabled(op),
            SplitHugePage => self.split_huge_page_enabled(op),
            Mbind => self.mbind_enabled(op),
            FailNext => self.fail_next_enabled(op),
            MemoryFailure => self.memory_failure_enabled(op),
            HmmRangeFault => self.hmm_range_fault_enabled(op),
            HmmFault => self.hmm_fault_enabled(op),
            DaxWriteback => self.dax_writeback_enabled(op),
        }
    }

    /// Is pgmap `g` registered and not unbinding (its driver bound)?
    pub(crate) fn pgmap_live(&self, g: usize) -> bool {
        self.s.pgmaps[g].state == PgmapState::Live
    }

    /// The entry a process sees at `addr` (a PTE, or the PMD covering it).
    pub(crate) fn entry_at(&self, proc: usize, addr: usize) -> Pte {
        self.entry(proc, addr).0
    }

    /// Nothing mapped at (proc, addr).
    pub(crate) fn slot_is_empty(&self, proc: usize, addr: usize) -> bool {
        self.entry_at(proc, addr) == Pte::None
    }

    pub(crate) fn is_device_pfn(&self, p: usize) -> bool {
        !self.layout.is_ram(p)
    }

    /// A process's page tables can be changed by one of its own actions only
    /// when no fault or driver migration holds its mmap_lock and no task
    /// holds the page-table lock of the address.
    pub(crate) fn mm_ok(&self, proc: usize, addr: usize) -> Result<(), &'static str> {
        ok(self.s.alive[proc], "no such process")?;
        ok(!self.mm_busy(proc), "a fault or a migration holds the process's mmap_lock")?;
        ok(self.ptl_owner(proc, addr).is_none(), "a task holds the page-table lock")
    }

    /// Every action enabled now, in canonical order (kind, then operands).
    pub fn enabled_actions(&self) -> Vec<Op> {
        let mut out = Vec::new();
        for info in KINDS {
            let sizes: Vec<usize> = info.args.iter().map(|(_, d)| d.size(&self.layout)).collect();
            let total: usize = sizes.iter().product();
            for idx in 0..total {
                let op = self.op_at(info.kind, idx);
                if self.enabled(&op).is_ok() {
                    out.push(op);
                }
            }
        }
        out
    }

    /// The `idx`-th operand combination of `kind` (mixed radix, first
    /// operand most significant).
    pub fn op_at(&self, kind: OpKind, mut idx: usize) -> Op {
        let info = kind.info();
        let mut args = [0u16; MAX_ARGS];
        for (i, (_, d)) in info.args.iter().enumerate().rev() {
            let n = d.size(&self.layout).max(1);
            args[i] = d.value(idx % n);
            idx /= n;
        }
        Op { kind, args }
    }

    // ------------------------------------------------------------------
    // Applying actions
    // ------------------------------------------------------------------

    /// Apply one action after checking its operands and its contract.
    ///
    /// One leniency over [`Machine::enabled`]: a `step` of a task that is
    /// blocked, a `step` of a task slot whose task already returned, and an
    /// `rcu_grace_period` with no callback to run (or one that cannot end
    /// while a reader is inside rcu_read_lock), are accepted and do nothing —
    /// the scheduler ran the task and it went back to sleep, or had nothing
    /// left to run. That lets one program be replayed under eras where the
    /// task blocks and eras where it does not (the seed's Q1: memunmap_pages
    /// waits in E1, not under P20), and under eras whose kernel function has
    /// fewer steps (the E1/E2 fault path has no PTL and reference steps).
    /// Generators never offer these.
    pub fn step(&mut self, op: &Op) -> Result<(), StepError> {
        if self.violation.is_some() {
            return Err(StepError::Stopped);
        }
        op.in_domain(&self.layout).map_err(StepError::Domain)?;
        let idle = match op.kind {
            OpKind::Step if self.s.tasks[op.a(0)].is_some() => self.task_blocked(op.a(0)),
            OpKind::Step => Some("no task in this slot: it already returned"),
            // a grace period with no callback, or one that cannot end yet
            OpKind::RcuGracePeriod => self.enabled(op).err(),
            _ => None,
        };
        {
            if let Some(why) = idle {
                self.at_op = Some(*op);
                if self.tracing {
                    self.begin_trace();
                    self.notes.push(format!("still waiting: {why}"));
                    self.end_trace(crate::program::text::op_to_text(op), 0, false);
                }
                self.at += 1;
                return Ok(());
            }
        }
        self.enabled(op).map_err(StepError::NotEnabled)?;
        self.apply_traced(op);
        Ok(())
    }

    /// [`Machine::step`], reporting what the action brought into use: the
    /// objects a state-machine test steers its next actions by.
    pub fn act(&mut self, op: &Op) -> Result<Created, StepError> {
        let live = |m: &Machine, g: usize| m.s.pgmaps[g].state == PgmapState::Live;
        let before_live: Vec<bool> = (0..self.layout.npgmaps).map(|g| live(self, g)).collect();
        let before_held: Vec<(bool, bool)> = self.s.ledger.pages.iter().map(|h| (h.anyone(), h.gup_pins > 0)).collect();
        let before_tasks: Vec<bool> = self.s.tasks.iter().map(Option::is_some).collect();
        self.step(op)?;
        let mut c = Created::default();
        c.pgmaps.extend((0..self.layout.npgmaps).filter(|&g| live(self, g) && !before_live[g]));
        for (p, h) in self.s.ledger.pages.iter().enumerate() {
            if h.anyone() && !before_held[p].0 {
                c.pages.push(p);
            }
            if h.gup_pins > 0 && !before_held[p].1 {
                c.pins.push(p);
            }
        }
        c.tasks.extend((0..self.s.tasks.len()).filter(|&t| self.s.tasks[t].is_some() && !before_tasks[t]));
        Ok(c)
    }

    /// Apply an action known to be enabled (the decoder's path).
    pub(crate) fn apply_traced(&mut self, op: &Op) {
        self.at_op = Some(*op);
        if self.tracing {
            self.begin_trace();
        }
        self.apply(op);
        self.after_action();
        if self.tracing {
            let action = crate::program::text::op_to_text(op);
            self.end_trace(action, op.cpu(), false);
        }
        self.at += 1;
    }

    /// A step of the drain: an action an actor eventually takes, applied
    /// without the program's contract check (the drain decides what is due).
    pub(crate) fn drain_step(&mut self, op: Op) {
        self.at_op = Some(op);
        self.in_drain_step = true;
        if self.tracing {
            self.begin_trace();
        }
        self.apply(&op);
        self.after_action();
        if self.tracing {
            self.end_trace(crate::program::text::op_to_text(&op), op.cpu(), true);
        }
        self.in_drain_step = false;
        self.at += 1;
    }

    fn apply(&mut self, op: &Op) {
        use OpKind::*;
        let a = |i: usize| op.a(i);
        let cpu = op.cpu();
        match op.kind {
            MemremapPages => self.memremap_pages(a(0)),
            MemunmapPages => self.spawn_memunmap(a(0), cpu),
            Step => self.task_step(a(0)),
            RcuGracePeriod => self.rcu_grace_period(),
            GetDevPagemap => {
                if let Some(c) = (op.args[1] as usize).checked_sub(1) {
                    // the caller hands its cached reference to the call
                    self.s.ledger.kernel_pgmap_refs[c] -= 1;
                    self.s.ledger.inflight_pgmap_refs[c] += 1;
                }
                self.spawn(TaskKind::GetDevPagemap { pfn: op.args[0], cached: op.args[1] as u8, found: 0 }, cpu);
            }
            PutDevPagemap => self.put_dev_pagemap(a(0), cpu),
            AllocDevicePage => self.alloc_device_page(a(0), cpu),
            FreeDevicePage => self.free_device_page(a(0), cpu),
            LockPage => self.s.flags[a(0)] |= PG_LOCKED,
            UnlockPage => self.s.flags[a(0)] &= !PG_LOCKED,
            MigrateVmaInsertPage => self.migrate_vma_insert_page(a(0), a(1), a(2), cpu),
            PciAllocP2pmem => self.pci_alloc_p2pmem(a(0), a(1), cpu),
            PciFreeP2pmem => self.pci_free_p2pmem(a(0), cpu),
            GetPage => self.kernel_get_page(a(0)),
            PutPage => {
                if op.args[1] == BY_GUP {
                    self.put_user_page(a(0), cpu)
                } else {
                    self.kernel_put_page(a(0), cpu)
                }
            }
            P2pmemAllocMmap => self.p2pmem_alloc_mmap(a(0), a(1), a(2), a(3), cpu),
            DevDaxFault => self.dev_dax_huge_fault(a(0), a(1), a(2)),
            DaxAssociateEntry => self.dax_associate_entry(a(0), a(1), a(2)),
            DaxIomapFault => self.dax_iomap_fault(a(0), a(1), a(2), a(3)),
            Truncate => {
                self.spawn(TaskKind::Truncate { file: op.args[0] as u8, index: op.args[1] as u8 }, cpu);
            }
            DaxWriteback => self.dax_writeback(a(0), a(1), cpu),
            Fork => self.fork(a(0), a(1)),
            ExitMmap => self.exit_mmap(a(0), cpu),
            Munmap => self.munmap(a(0), a(1), cpu),
            MadviseDontneed => self.madvise_dontneed(a(0), a(1), cpu),
            GetUserPages | PinUserPages
                if matches!(self.entry(a(0), a(1)).0, Pte::DevicePrivate { .. })
                    && self.rules.gup.refuses_device_private =>
            {
                self.spawn_gup_fault(a(0), a(1), op.args[2], op.kind == PinUserPages, cpu);
            }
            GetUserPages | PinUserPages => {
                let pin = op.kind == PinUserPages;
                let r = self.gup(a(0), a(1), op.args[2], pin, cpu);
                self.trace_note(|| match r {
                    Ok(p) => format!("-> pfn {p}"),
                    Err(e) => format!("-> {}", e.errno()),
                });
            }
            UnpinUserPage => self.unpin_user_page(a(0), cpu),
            AllocDeviceFolio => self.alloc_device_folio(a(0), cpu),
            DoAnonymousPage => self.do_anonymous_page(a(0), a(1)),
            DoHugePmdAnonymousPage => self.do_huge_pmd_anonymous_page(a(0), a(1)),
            CpuWrite => self.cpu_write(a(0), a(1), cpu),
            DeviceWrite => self.device_write(a(0)),
            DmaWrite => self.dma_write(a(0)),
            MigrateVmaSetup => {
                let ctx = MigCtx {
                    origin: Origin::Vma,
                    proc: a(0) as u8,
                    addr: a(1) as u16,
                    pgmap: a(2) as u8,
                    select: op.args[3] as u8,
                    ..MigCtx::default()
                };
                self.spawn_migration(ctx, crate::fault::M_COLLECT, cpu);
            }
            DoSwapPage => self.spawn_fault(a(0), a(1), cpu),
            MigrateDeviceRange => {
                let ctx = MigCtx { origin: Origin::DeviceRange, pgmap: a(0) as u8, ..MigCtx::default() };
                self.spawn_migration(ctx, crate::fault::M_COLLECT, cpu);
            }
            SplitHugePmd => self.split_huge_pmd(a(0), a(1)),
            SplitHugePage => {
                let h = self.head_of(a(0));
                // the caller's reference and lock around split_huge_page
                self.s.flags[h] |= PG_LOCKED;
                self.split_folio(h, 0, 0, cpu);
                self.s.flags[h] &= !PG_LOCKED;
            }
            Mbind => self.mbind(a(0), a(1)),
            FailNext => self.fail_next(a(0), a(1)),
            MemoryFailure => {
                self.spawn(TaskKind::MemoryFailure { pfn: op.args[0], found: 0 }, cpu);
            }
            HmmRangeFault => self.hmm_range_fault(a(0), a(1), a(2), cpu),
            HmmFault => self.hmm_fault(a(0), a(1), a(2), cpu),
        }
    }

    /// Run the program's end: drain, then final sweep. Idempotent.
    pub fn finish(&mut self) {
        if self.in_drain {
            return;
        }
        self.in_drain = true;
        self.drain();
    }

    pub fn verdict(&mut self) -> Verdict {
        Verdict {
            violation: self.violation.clone(),
            conformance: self.conformance.clone(),
            steps: self.at,
            trace: std::mem::take(&mut self.trace),
        }
    }

    /// reset, apply every action, drain. Actions that are not enabled are
    /// an error (the program is not valid for this configuration).
    pub fn run(&mut self, ops: &[Op]) -> Result<Verdict, (usize, StepError)> {
        self.reset();
        for (i, op) in ops.iter().enumerate() {
            match self.step(op) {
                Ok(()) => {}
                Err(StepError::Stopped) => break,
                Err(e) => return Err((i, e)),
            }
            if self.violation.is_some() {
                break;
            }
        }
        self.finish();
        Ok(self.verdict())
    }

    // ------------------------------------------------------------------
    // Traces
    // ------------------------------------------------------------------

    fn begin_trace(&mut self) {
        self.before_rc.clone_from(&self.s.rc);
        self.before_mc.clone_from(&self.s.mc);
        self.before_emc.clone_from(&self.s.emc);
        self.before_ref.clear();
        for g in 0..self.layout.npgmaps {
            self.before_ref.push(self.s.pgmaps[g].pref.count());
        }
        self.notes.clear();
    }

    fn end_trace(&mut self, action: String, cpu: usize, drain: bool) {
        let mut changes = Vec::new();
        for p in 0..self.layout.npfns {
            if self.before_rc[p] != self.s.rc[p] {
                changes.push(format!("pfn {p} refcount {} -> {}", self.before_rc[p], self.s.rc[p]));
            }
            if self.before_mc[p] != self.s.mc[p] {
                changes.push(format!("pfn {p} mapcount {} -> {}", self.before_mc[p], self.s.mc[p]));
            }
            if self.before_emc[p] != self.s.emc[p] {
                changes.push(format!("pfn {p} entire mapcount {} -> {}", self.before_emc[p], self.s.emc[p]));
            }
        }
        for g in 0..self.layout.npgmaps {
            let now = self.s.pgmaps[g].pref.count();
            if self.before_ref[g] != now {
                changes.push(format!("pgmap {g} ref {} -> {}", self.before_ref[g], now));
            }
        }
        let notes = std::mem::take(&mut self.notes);
        self.trace.push(TraceEntry { step: self.at, action, cpu, drain, changes, notes });
    }

    // ------------------------------------------------------------------
    // A readable snapshot
    // ------------------------------------------------------------------

    /// The snapshot as JSON text.
    pub fn view_json(&self) -> String {
        serde_json::to_string(&self.view()).unwrap_or_default()
    }

    pub fn view(&self) -> StateView {
        let l = &self.layout;
        StateView {
            rules: self.rules.name.clone(),
            pgmaps: (0..l.npgmaps)
                .map(|g| {
                    let pg = &self.s.pgmaps[g];
                    PgmapView {
                        id: g,
                        r#type: l.pgmap_type[g].name(),
                        state: match pg.state {
                            PgmapState::Unused => "unused",
                            PgmapState::Live => "live",
                            PgmapState::Unbinding => "unbinding",
                            PgmapState::Gone => "gone",
                        },
                        r#ref: pg.pref.count(),
                        mode: pg.pref.mode().name(),
                        dying: pg.pref.is_dying(),
                        released: pg.done,
                        pfns: (l.pfns_of(g).start, l.pfns_of(g).end),
                    }
                })
                .collect(),
            pages: (0..l.npfns)
                .map(|p| PageView {
                    pfn: p,
                    pgmap: (!l.is_ram(p)).then(|| l.pgmap_of(p)),
                    head: self.head_of(p),
                    order: self.s.order[self.head_of(p)],
                    refcount: self.s.rc[p],
                    mapcount: self.s.mc[p],
                    entire_mapcount: self.s.emc[p],
                    pincount: self.s.pincount[p],
                    locked: self.s.flags[p] & PG_LOCKED != 0,
                    content: self.s.content[p],
                    holders: self.s.ledger.pages[p].describe(),
                })
                .collect(),
            procs: (0..l.procs)
                .map(|proc| ProcView {
                    id: proc,
                    alive: self.s.alive[proc],
                    ptes: (0..l.addrs).map(|a| self.s.ptes[l.pte_slot(proc, a)].describe()).collect(),
                    pmds: (0..l.blocks).map(|b| self.s.pmds[proc * l.blocks + b].describe()).collect(),
                })
                .collect(),
            tasks: self.tasks_view(),
        }
    }

    /// The live kernel tasks: (slot, what it does next, why it is blocked).
    pub fn tasks_view(&self) -> Vec<(usize, String, Option<String>)> {
        self.s
            .tasks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, t.describe(), self.task_blocked(i).map(|s| s.to_string()))))
            .collect()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StateView {
    pub rules: String,
    pub pgmaps: Vec<PgmapView>,
    pub pages: Vec<PageView>,
    pub procs: Vec<ProcView>,
    /// (slot, what, blocked on)
    pub tasks: Vec<(usize, String, Option<String>)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PgmapView {
    pub id: usize,
    pub r#type: &'static str,
    pub state: &'static str,
    pub r#ref: i64,
    pub mode: &'static str,
    pub dying: bool,
    pub released: bool,
    pub pfns: (usize, usize),
}

#[derive(Clone, Debug, Serialize)]
pub struct PageView {
    pub pfn: usize,
    /// None for system RAM
    pub pgmap: Option<usize>,
    /// compound head (itself for a head or an order-0 page)
    pub head: usize,
    /// order of the folio the page belongs to
    pub order: u8,
    pub refcount: i32,
    pub mapcount: i32,
    pub entire_mapcount: i32,
    pub pincount: i32,
    pub locked: bool,
    /// data version the page holds
    pub content: u32,
    pub holders: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProcView {
    pub id: usize,
    pub alive: bool,
    pub ptes: Vec<String>,
    /// one per PMD block
    pub pmds: Vec<String>,
}
