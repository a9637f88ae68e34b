//! The oracle: ground truth that never reads the rules.
//!
//! Machine code (the kernel functions in `page.rs`, `pgmap.rs`, `gup.rs`,
//! `migrate.rs`, ...) does two things for the oracle and nothing more:
//!
//! * it keeps the [`Ledger`] — *who holds what* as the actors see it: a
//!   page-table mapping, a GUP reference or pin, a kernel user's `get_page`,
//!   a driver's allocation, a P2P allocation, a filesystem block
//!   association, a kernel user's pgmap reference — and what happened to each
//!   pgmap (registered, killed, torn down, released);
//! * it records an [`Obs`]ervation wherever something happens that a
//!   property is about: a page handed back to its allocator, a refcount
//!   raised from `old`, a WARN the kernel prints, a PMD a walker read and
//!   what it took it for, a grant GUP made, struct pages torn down, a lock
//!   released, ...
//!
//! [`judge`] decides from the observation, the ledger and the machine's
//! layout alone whether an invariant broke; [`describe`] says how. Neither
//! reads the rules (this module does not import them, and
//! `tests/test_layering.py` keeps it so): a preset can change what the
//! modelled kernel *does* — whether its free path WARNs, whether its walker
//! checks for device-private PMDs — but never whether the oracle looks. If a
//! page is returned to its allocator while somebody still holds it, or the
//! struct pages vanish while somebody still uses them, the design under test
//! is unsafe, whatever its refcount arithmetic says.
//!
//! Conformance checks (class [`Class::Conformance`]) are different: they
//! compare the machine's counters with what the preset in force says they
//! should be (invariants I-F5, I-P1, I-G1, I-M1). They read the rules on purpose
//! and live in `conformance.rs`. A conformance failure means zdfuzz itself,
//! or a hand-written preset, is inconsistent — never that the kernel design
//! is unsafe. The two classes are reported apart.

use crate::config::Layout;
use crate::device::DeviceType;
use crate::pagetable::Pte;
use crate::percpu_ref::RefEvent;
use std::fmt;

/// Holders of one struct page, as the actors know them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Holders {
    /// page-table entries pointing at the page (any kind)
    pub maps: u16,
    /// GUP FOLL_GET references
    pub gup_gets: u16,
    /// GUP FOLL_PIN pins
    pub gup_pins: u16,
    /// of which FOLL_LONGTERM
    pub longterm_pins: u16,
    /// kernel users' get_page references
    pub kernel_gets: u16,
    /// allocated by its device-private driver and not yet given away
    pub driver: bool,
    /// part of a live kernel P2P allocation (pci_alloc_p2pmem)
    pub p2p_kernel: bool,
    /// associated with a file by the filesystem (DAX entry)
    pub fs: bool,
    /// migration collect or LRU-isolation references held by migration
    /// tasks (`folio_get` in `migrate_vma_collect_pmd`, `folio_isolate_lru`)
    pub collect: u8,
    /// references the device-private fault path holds (E3+ `do_swap_page`'s
    /// `get_page` under the PTL)
    pub fault: u8,
    /// the destination of a migration in flight (its allocation reference,
    /// dropped by finalize)
    pub mig_dst: bool,
    /// migration entries pointing at the page (they hold no reference; the
    /// migrating task's collect reference keeps the page alive)
    pub mig_entries: u16,
    /// a dirty PTE (one a CPU wrote through) was replaced by a migration
    /// entry: the page's data is newer than any other copy and only the
    /// folio's dirty flag can say so now. If the migration fails, the page
    /// is mapped back through a clean PTE, so it must be PG_dirty then, or a
    /// clean copy in the swap cache is dropped at reclaim (I-M5).
    pub dirty_pte: bool,
}

impl Holders {
    /// Somebody uses the page: it must not be freed or torn down.
    #[inline]
    pub fn in_use(&self) -> bool {
        self.maps + self.gup_gets + self.gup_pins + self.kernel_gets + self.mig_entries > 0
            || self.collect + self.fault > 0
            || self.mig_dst
            || self.driver
            || self.p2p_kernel
    }

    /// Anybody at all holds or owns the page (a file association included).
    #[inline]
    pub fn anyone(&self) -> bool {
        self.in_use() || self.fs
    }

    /// References a migration cannot account for: GUP references and pins,
    /// kernel users' references, fault-path references (I-M2).
    #[inline]
    pub fn unexplained_for_migration(&self) -> u16 {
        self.gup_gets + self.gup_pins + self.kernel_gets + self.fault as u16
    }

    /// References that are not mappings (GUP, kernel): "busy" for DAX.
    #[inline]
    pub fn extra_refs(&self) -> u16 {
        self.gup_gets + self.gup_pins + self.kernel_gets
    }

    /// Human-readable list of the holders, for violation messages.
    pub fn describe(&self) -> String {
        let mut v = Vec::new();
        let mut n = |c: u16, what: &str| {
            if c > 0 {
                v.push(format!("{c} {what}"));
            }
        };
        n(self.maps, "mapping(s)");
        n(self.gup_gets, "GUP reference(s)");
        n(self.gup_pins, "GUP pin(s)");
        n(self.kernel_gets, "kernel reference(s)");
        n(self.collect as u16, "migration collect reference(s)");
        n(self.fault as u16, "fault-path reference(s)");
        n(self.mig_entries, "migration entr(ies)");
        if self.mig_dst {
            v.push("a migration in flight (destination)".into());
        }
        if self.driver {
            v.push("its driver's allocation".into());
        }
        if self.p2p_kernel {
            v.push("a live pci_alloc_p2pmem allocation".into());
        }
        if self.fs {
            v.push("a filesystem block association".into());
        }
        if v.is_empty() {
            "nobody".into()
        } else {
            v.join(", ")
        }
    }
}

/// Physical lifecycle of a pgmap, as the oracle observes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Life {
    #[default]
    Unregistered,
    Registered,
    /// percpu_ref_kill ran
    Killed,
    /// struct pages removed (pageunmap_range)
    TornDown,
}

/// The ledger.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ledger {
    pub pages: Vec<Holders>,
    /// refcount each page had when memremap_pages initialised it: the value
    /// an idle page must return to (observed, not read from the rules)
    pub init_rc: Vec<i32>,
    /// per pgmap: references kernel users got from get_dev_pagemap
    pub kernel_pgmap_refs: Vec<u16>,
    /// per pgmap: references passed as `cached` to a get_dev_pagemap call
    /// still in flight (the call owns them until it returns)
    pub inflight_pgmap_refs: Vec<u16>,
    /// per pgmap: live pci_alloc_p2pmem allocations
    pub p2p_allocs: Vec<u16>,
    pub life: Vec<Life>,
    /// per pgmap: percpu_ref release ran
    pub released: Vec<bool>,
    /// per pfn: who holds the page lock: 0 nobody, 1 its driver, `2 + t`
    /// task slot `t` (a migration's collect, or the fault path's trylock)
    pub locker: Vec<u8>,
    /// per virtual page (proc × addr): the last value written to it, i.e.
    /// what a read through the process's mapping must return (I-W1)
    pub vcontent: Vec<u32>,
    /// per pfn: the page's data was migrated to another page, so the page
    /// is only waiting for its last reference to go (I-M6)
    pub migrated_away: Vec<bool>,
    /// per pfn: the virtual page (proc × addr + 1; 0 none) the oldest live
    /// pin on it was taken through: where its device's DMA writes land, as
    /// far as the user is concerned
    pub pin_vpage: Vec<u16>,
}

/// `Ledger::locker` values.
pub const LOCK_NONE: u8 = 0;
pub const LOCK_DRIVER: u8 = 1;
#[inline]
pub const fn lock_task(slot: usize) -> u8 {
    2 + slot as u8
}

impl Ledger {
    pub fn new(npfns: usize, npgmaps: usize, nvpages: usize) -> Ledger {
        Ledger {
            pages: vec![Holders::default(); npfns],
            init_rc: vec![0; npfns],
            kernel_pgmap_refs: vec![0; npgmaps],
            inflight_pgmap_refs: vec![0; npgmaps],
            p2p_allocs: vec![0; npgmaps],
            life: vec![Life::Unregistered; npgmaps],
            released: vec![false; npgmaps],
            locker: vec![LOCK_NONE; npfns],
            vcontent: vec![0; nvpages],
            migrated_away: vec![false; npfns],
            pin_vpage: vec![0; npfns],
        }
    }

    pub fn reset(&mut self) {
        self.pages.fill(Holders::default());
        self.init_rc.fill(0);
        self.kernel_pgmap_refs.fill(0);
        self.inflight_pgmap_refs.fill(0);
        self.p2p_allocs.fill(0);
        self.life.fill(Life::Unregistered);
        self.released.fill(false);
        self.locker.fill(LOCK_NONE);
        self.vcontent.fill(0);
        self.migrated_away.fill(false);
        self.pin_vpage.fill(0);
    }

    /// Users of the pgmap itself (not through a page): kernel pgmap
    /// references and live P2P allocations.
    pub fn pgmap_users(&self, g: usize) -> u16 {
        self.kernel_pgmap_refs[g] + self.inflight_pgmap_refs[g] + self.p2p_allocs[g]
    }
}

/// What kind of property a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// the design under test is unsafe (use after free, busy page freed,
    /// underflow, misuse the kernel warns about, refused pin granted)
    Safety,
    /// something never completes or is never released (hang, leak)
    Liveness,
    /// the counters disagree with the preset's own description: a bug in
    /// zdfuzz or an inconsistent preset, not a finding about the kernel
    Conformance,
}

impl Class {
    pub const fn name(self) -> &'static str {
        match self {
            Class::Safety => "safety",
            Class::Liveness => "liveness",
            Class::Conformance => "conformance",
        }
    }
}

macro_rules! invariants {
    ($( $v:ident = $id:literal, $class:ident, $doc:literal; )*) => {
        /// Every invariant the machine can report: its id, its class
        /// and its meaning in plain words (docs/model.md §5.3).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Invariant { $($v),* }

        impl Invariant {
            /// Every invariant, in the order reports and `zdfuzz.invariants()` list them.
            pub const ALL: &'static [Invariant] = &[$(Invariant::$v),*];

            /// The invariant id, e.g. "I-L2".
            pub const fn id(self) -> &'static str {
                match self { $(Invariant::$v => $id),* }
            }

            pub const fn class(self) -> Class {
                match self { $(Invariant::$v => Class::$class),* }
            }

            /// The invariant in plain words (reports, `zdfuzz explain`).
            pub const fn doc(self) -> &'static str {
                match self { $(Invariant::$v => $doc),* }
            }
        }
    };
}

invariants! {
    R1 = "I-R1", Safety, "the pgmap's percpu_ref count never goes below zero";
    R2 = "I-R2", Safety, "percpu_ref release runs at most once per init/reinit cycle";
    R3 = "I-R3", Safety, "release never runs while a holder still owns a pgmap reference";
    R4 = "I-R4", Safety, "percpu_ref kill/reinit/resurrect/switch are used as the API requires";
    R7 = "I-R7", Safety, "no percpu_ref operation after percpu_ref_exit";
    R8 = "I-R8", Safety, "percpu_ref_exit is not called while a mode switch is pending";
    P1 = "I-P1", Conformance, "pgmap->ref equals the references the preset says exist (conformance)";
    L2 = "I-L2", Safety, "memunmap_pages tears the struct pages down only when no page of the pgmap is in use";
    L3 = "I-L3", Safety, "no page, pgmap or device memory is touched after memunmap_pages tore it down";
    L4 = "I-L4", Liveness, "memunmap_pages and every other kernel task terminate once all users are gone";
    L5 = "I-L5", Safety, "no device page is allocated (zone_device_page_init) after the pgmap was killed";
    F1 = "I-F1", Safety, "a page refcount never goes negative and never rises from zero outside allocation";
    F2 = "I-F2", Safety, "a folio newly mapped as anonymous names an anon_vma of the VMA that maps it (no stale page->mapping)";
    F3 = "I-F3", Safety, "after ->folio_free() returns, the free path reads nothing of the folio the driver may have reused";
    F4 = "I-F4", Safety, "a page a device-private driver hands out carries no stale compound metadata of an earlier folio";
    F5 = "I-F5", Conformance, "a free page has the refcount the preset says free pages have (conformance)";
    F8 = "I-F8", Safety, "device-dax and kernel P2P pages only bounce 1->2->1; reaching 0 hits the free path's WARN";
    F11 = "I-F11", Safety, "the free path takes every folio its type makes without a WARN (a large FS-DAX folio included)";
    F9 = "I-F9", Safety, "a page is returned to its allocator only when nobody holds it, and only once";
    F10 = "I-F10", Liveness, "once every holder is gone, a page's refcount is back at its initial value (no leak)";
    X2 = "I-X2", Safety, "a truncate frees a DAX block only when no DMA/GUP reference to its page remains";
    X4 = "I-X4", Safety, "no FOLL_LONGTERM pin of an FS-DAX page is granted";
    G1 = "I-G1", Conformance, "pin accounting: a pinned small page carries GUP_PIN_COUNTING_BIAS per pin (conformance)";
    G3 = "I-G3", Safety, "GUP never returns a device-private page";
    G4 = "I-G4", Safety, "GUP returns P2P pages only with FOLL_PCI_P2PDMA and never for FOLL_LONGTERM";
    G5 = "I-G5", Safety, "no FOLL_LONGTERM pin of a MEMORY_DEVICE_COHERENT page is granted (it must stay evictable)";
    H1 = "I-H1", Safety, "a device maps through an HMM snapshot only what the CPU maps at that address (mmu_interval_read_retry)";
    M1 = "I-M1", Conformance, "an anonymous, device-private or coherent folio's refcount equals what its holders account for (conformance)";
    M2 = "I-M2", Safety, "a page with references migration cannot account for (GUP, pins, fault path) is never migrated";
    M3 = "I-M3", Safety, "no migration entry survives migrate_vma_finalize";
    M4 = "I-M4", Safety, "the migration code neither unlocks nor releases the fault page the fault path locked";
    M5 = "I-M5", Safety, "a page whose dirty PTE a migration entry replaced is dirty when a failed migration maps it back";
    M6 = "I-M6", Safety, "no folio about to be freed goes on an LRU, and no ZONE_DEVICE folio ever does";
    M7 = "I-M7", Safety, "every page a migration locked is unlocked exactly once";
    M8 = "I-M8", Safety, "rmap walkers derive a struct page only from a present PTE (no wild page pointer from a swap entry)";
    M9 = "I-M9", Safety, "an rmap walk reaches every page-table entry of the folio it walks (try_to_migrate, remove_migration_ptes)";
    M10 = "I-M10", Safety, "an rmap walk follows only a live anon_vma (page->mapping never names a freed one)";
    D1 = "I-D1", Safety, "migrate_to_ram runs only on a page the fault path holds a reference to (no use after free)";
    D2 = "I-D2", Safety, "every exit of the fault path releases the page-table lock";
    D3 = "I-D3", Liveness, "concurrent faults on one device-private page make progress (no livelock)";
    T2 = "I-T2", Safety, "a split neither invents nor drops page or pgmap references";
    T3 = "I-T3", Safety, "page-table walkers tell device-private and migration PMD entries from a present THP";
    W1 = "I-W1", Safety, "no lost write: a live mapping shows the last value written to its virtual page";
    W2 = "I-W2", Safety, "when an unmap of an address returns, no CPU can still reach its old page through a stale TLB entry";
}

impl Invariant {
    /// The invariant with id `id`.
    pub fn from_id(id: &str) -> Option<Invariant> {
        Invariant::ALL.iter().copied().find(|i| i.id() == id)
    }

    /// The invariant a percpu_ref misuse event breaks (the kernel's WARNs in
    /// lib/percpu-refcount.c, see `percpu_ref.rs`).
    pub const fn of_ref_event(e: RefEvent) -> Invariant {
        match e {
            RefEvent::Underflow | RefEvent::PutBelowZero => Invariant::R1,
            RefEvent::DoubleRelease => Invariant::R2,
            RefEvent::DoubleKill
            | RefEvent::ReinitNotZero
            | RefEvent::ResurrectNotDead
            | RefEvent::ResurrectPercpu
            | RefEvent::SwitchPercpuNoReinit => Invariant::R4,
            RefEvent::UseAfterExit => Invariant::R7,
            RefEvent::ExitDuringSwitch => Invariant::R8,
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    /// index of the action that broke it (drain actions continue the count)
    pub step: usize,
    /// the action's text (e.g. "step task=0"), or the drain phase
    pub action: String,
    pub message: String,
    /// the objects involved, e.g. [("pgmap", 0), ("pfn", 3)]
    pub objects: Vec<(&'static str, u32)>,
    pub expected: String,
    pub actual: String,
    /// the action being applied when it broke (a program action or a drain
    /// action); None for drain phases that are not actions ("leak check")
    pub op: Option<crate::program::op::Op>,
    /// the kernel task involved: the one `op` stepped, or the task named in
    /// `objects` (a hang). Lets a finding be filed under the kernel function
    /// that ran (memunmap_pages) rather than under `step`.
    pub task: Option<crate::sched::TaskKind>,
}

impl Violation {
    pub fn class(&self) -> Class {
        self.invariant.class()
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) at step {} [{}]: {}",
            self.invariant,
            self.class().name(),
            self.step,
            self.action,
            self.message
        )?;
        if !self.expected.is_empty() || !self.actual.is_empty() {
            write!(f, " (expected {}, actual {})", self.expected, self.actual)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Observations and their judgement
// ---------------------------------------------------------------------------

/// A WARN the modelled kernel prints (its code decides when; the oracle
/// judges that it did).
#[derive(Clone, Copy, Debug)]
pub enum Warn {
    /// E2/E3 `free_zone_device_page`: a page of a type without
    /// `page_free` reached refcount 0 (`WARN_ON_ONCE(!pgmap->ops->page_free)`).
    FreeWithoutPageFree { pfn: usize, ty: DeviceType },
    /// `zone_device_page_init`: `WARN_ON_ONCE(!percpu_ref_tryget_live(&pgmap->ref))`.
    TrygetLiveFailed { pgmap: usize, pfn: usize },
    /// A percpu_ref misuse WARN (lib/percpu-refcount.c), or a misuse the
    /// kernel does not notice (`put_below_zero`).
    PercpuRef { pgmap: usize, event: RefEvent, value: i64 },
    /// v6.19 `free_zone_device_folio`: a large folio that is not anonymous
    /// reached refcount 0 (`VM_WARN_ON_ONCE(folio_test_large(folio))`).
    LargeFolioNotAnon { pfn: usize, ty: DeviceType, nr: usize },
}

/// Something that happened, as machine code records it for the oracle.
/// `what` names the kernel function or call site, for messages.
#[derive(Clone, Copy, Debug)]
pub enum Obs<'a> {
    /// a driver programs its device's page table with `pfn` for
    /// (proc, addr) from an `hmm_range_fault` snapshot; `now` is what the
    /// walk would report at this moment
    DeviceMapped { proc: usize, addr: usize, pfn: usize, write: bool, now: crate::hmm::Snapshot },
    /// a page of a device pfn is touched (get, put, zap, insert)
    PageTouched { pfn: usize, what: &'a str },
    /// a pgmap's percpu_ref is used (get, put, tryget)
    PgmapTouched { pgmap: usize, what: &'a str },
    /// `n` references taken on folio head `pfn` whose refcount was `old`;
    /// `min` is the lowest refcount the caller may legitimately start from
    /// (0 only for the first reference of a page it just initialised)
    RefTaken { pfn: usize, old: i32, min: i32, what: &'a str },
    /// `n` references dropped from folio head `pfn`, leaving `new`
    RefDropped { pfn: usize, old: i32, n: i32, what: &'a str },
    /// an allocator initialised the refcount of `pfn`, which was `old`
    /// (`set_page_count(page, 1)` in `zone_device_page_init`)
    RefInitialised { pfn: usize, old: i32 },
    /// the kernel printed a WARN
    Warned { warn: Warn, what: &'a str },
    /// a device folio went back to its allocator (`page_free` / `folio_free`);
    /// `already_free`: the first of its pages already on its driver's free list
    ReturnedToAllocator { pgmap: usize, head: usize, nr: usize, already_free: Option<usize> },
    /// `p2pdma_page_free` gave `pfn` back to the gen_pool; `mmap_page`: it
    /// was taken from the pool by a user-space mapping
    ReturnedToP2pPool { pfn: usize, mmap_page: bool },
    /// a system RAM folio went back to the buddy allocator
    ReturnedToBuddy { head: usize, nr: usize },
    /// `pgmap->ref` was released (`complete(&pgmap->done)`)
    Released { pgmap: usize },
    /// `memunmap_pages` removed the struct pages (`pageunmap_range`)
    TornDown { pgmap: usize },
    /// `folio_add_new_anon_rmap` mapped the folio at `pfn` into `proc`'s
    /// VMA and left `page->mapping` = `mapping`; `linked`: it names an
    /// anon_vma that VMA is linked to (so rmap walks find the new mapping)
    NewAnonRmap { pfn: usize, proc: usize, mapping: u8, linked: bool },
    /// an rmap walk of the folio at `pfn` (`what`) finished without visiting
    /// `proc`, whose entry at `addr` maps the folio (or is its migration
    /// entry)
    RmapMissed { pfn: usize, proc: usize, addr: usize, mapping: u8, what: &'static str },
    /// an rmap walk of the folio at `pfn` followed `page->mapping` to
    /// anon_vma `av`, which no VMA is linked to any more: freed
    AnonVmaFreed { pfn: usize, av: usize, what: &'static str },
    /// a device-private driver allocated a folio at `pfn` of `pgmap`
    DeviceAllocated { pgmap: usize, pfn: usize },
    /// `pfn` becomes part of an order-`order` folio at `head`; its old
    /// compound head and that head's order
    CompoundPrepared { pfn: usize, head: usize, order: usize, old_head: usize, old_order: usize },
    /// `free_zone_device_folio` reads `folio->pgmap` of the folio it freed
    /// at `pfn` after `->folio_free()` returned; `head` is what the page's
    /// first word holds now: the page itself if it is a head (its `pgmap`),
    /// else the compound head of the folio the driver reallocated it into
    PgmapReadAfterFree { pfn: usize, head: usize },
    /// a split left the folio's pages with `total` references where it had `expect`
    SplitRefs { head: usize, nr: usize, total: i32, expect: i32 },
    /// a split changed pgmap `pgmap`'s ref from `before` to `after`
    SplitPgmapRef { pgmap: usize, head: usize, before: i64, after: i64 },
    /// a page-table walker read the PMD of (proc, ...) and took it for a
    /// present THP or not
    PmdWalked { proc: usize, pmd: Pte, taken_for_thp: bool },
    /// an unmap of (proc, addr) returned while migration task `task` had
    /// replaced its present PTE for `pfn` and not yet flushed the TLB
    StaleTlbAfterUnmap { proc: usize, addr: usize, pfn: usize, task: usize },
    /// GUP granted `pfn` (of type `ty`, None for RAM)
    GupGranted { pfn: usize, ty: Option<DeviceType>, longterm: bool, p2pdma: bool },
    /// migration code unlocked `pfn`; `fault_path_lock`: the fault path
    /// that called `migrate_to_ram` holds that lock
    MigrationUnlocked { pfn: usize, fault_path_lock: bool },
    /// `migrate_vma_pages` moves the folio at `head` (`nr` pages);
    /// `own_fault_ref`: the migrating fault path holds one reference on it
    Migrated { head: usize, nr: usize, own_fault_ref: bool },
    /// an rmap walker (`try_to_unmap_one`) computed the subpage of the
    /// device-private `pfn` from its swap entry's bits as if it were a
    /// present PTE's pfn: a wild `struct page` pointer
    WildSubpage { pfn: usize },
    /// a migration failed for `pfn` (an unexpected reference, or the
    /// destination was not migrated) and its migration entries became clean
    /// PTEs of it again (`remove_migration_ptes(src, src)`); `page_dirty`:
    /// PG_dirty on it
    Restored { pfn: usize, page_dirty: bool },
    /// a folio goes on an LRU; `freeing`: its data was migrated away and
    /// this is its last reference
    LruAdded { pfn: usize, freeing: bool },
    /// a migration entry for `pfn` (folio `head`) exists after a finalize
    MigrationEntryLeft { pfn: usize, head: usize, entry: Pte },
    /// `pfn` is still locked after the finalize of the migration in task `slot`;
    /// `fault_path_lock`: by the fault path that called it
    LockedAfterFinalize { pfn: usize, slot: usize, fault_path_lock: bool },
    /// the fault path calls `migrate_to_ram` for `pfn` (folio `head` of `nr`
    /// pages) of `pgmap`; `fault_ref`: it holds a reference; `on_free_list`
    MigrateToRam { pgmap: usize, pfn: usize, head: usize, nr: usize, fault_ref: bool, on_free_list: bool },
    /// the fault path unlocks `pfn` (folio `head` of `nr` pages)
    FaultUnlocked { pfn: usize, head: usize, nr: usize },
    /// a mapping of (proc, addr) shows pfn's data `got`
    Read { proc: usize, addr: usize, pfn: usize, got: u32, when: &'a str },
    /// truncate frees the block of (file, index), pfn
    BlockFreed { file: usize, index: usize, pfn: usize },
    /// task `slot` returned holding a page-table lock
    ReturnedHoldingPtl { slot: usize },
    /// the drain's rounds repeat with faults refaulting
    Livelock { task: usize, faults: usize, pfns: &'a str },
    /// a task never completes
    Hang { task: usize, what: &'a str, why: &'a str, extra: &'a str },
    /// the folio at `head` (`nr` pages) has refcount `rc` at a leak check
    Idle { head: usize, nr: usize, rc: i32 },
}

/// A verdict: which invariant, about which objects, and the object the
/// judgement singled out (the first held page, ...).
#[derive(Clone, Copy, Debug)]
pub struct Judged {
    pub invariant: Invariant,
    objects: [(&'static str, u32); 3],
    nobjects: u8,
    /// the pfn (or count) the judgement found, for the message
    pub at: usize,
    /// which of an observation's messages
    pub variant: u8,
}

impl Judged {
    fn new(invariant: Invariant, objects: &[(&'static str, u32)]) -> Judged {
        let mut o = [("", 0); 3];
        o[..objects.len()].copy_from_slice(objects);
        Judged { invariant, objects: o, nobjects: objects.len() as u8, at: 0, variant: 0 }
    }
    fn at(mut self, at: usize) -> Judged {
        self.at = at;
        self
    }
    fn variant(mut self, v: u8) -> Judged {
        self.variant = v;
        self
    }
    pub fn objects(&self) -> &[(&'static str, u32)] {
        &self.objects[..self.nobjects as usize]
    }
}

/// `page->mapping` in words.
fn mapping_name(m: u8) -> String {
    match crate::page::anon_vma_of(m) {
        Some(av) => format!("the anon_vma of process {av}"),
        None if m == crate::page::MAPPING_NONE => "NULL".into(),
        None => format!("file {}", m - crate::page::MAPPING_FILE),
    }
}

fn pfn_obj(p: usize) -> (&'static str, u32) {
    ("pfn", p as u32)
}

fn pgmap_obj(g: usize) -> (&'static str, u32) {
    ("pgmap", g as u32)
}

/// Is any page of the folio at `head` held by anybody?
fn folio_in_use(l: &Ledger, head: usize, nr: usize) -> bool {
    l.pages[head..head + nr].iter().any(|x| x.in_use())
}

/// Did `obs` break an invariant? From the observation, the ledger and the
/// layout alone (no allocation: safe on every hot path).
pub fn judge(obs: &Obs<'_>, l: &Ledger, layout: &Layout) -> Option<Judged> {
    use Invariant::*;
    match *obs {
        Obs::PageTouched { pfn, .. } => {
            if layout.is_ram(pfn) {
                return None;
            }
            let g = layout.pgmap_of(pfn);
            (l.life[g] == Life::TornDown).then(|| Judged::new(L3, &[pgmap_obj(g), pfn_obj(pfn)]))
        }
        Obs::PgmapTouched { pgmap, .. } => {
            (l.life[pgmap] == Life::TornDown).then(|| Judged::new(L3, &[pgmap_obj(pgmap)]).variant(1))
        }
        Obs::RefTaken { pfn, old, min, .. } => (old < min).then(|| Judged::new(F1, &[pfn_obj(pfn)])),
        Obs::RefDropped { pfn, old, n, .. } => (old - n < 0).then(|| Judged::new(F1, &[pfn_obj(pfn)]).variant(1)),
        Obs::RefInitialised { pfn, old } => (old != 0).then(|| Judged::new(F1, &[pfn_obj(pfn)]).variant(2)),
        Obs::Warned { warn, .. } => Some(match warn {
            Warn::FreeWithoutPageFree { pfn, .. } => Judged::new(F8, &[pfn_obj(pfn)]),
            Warn::TrygetLiveFailed { pgmap, pfn } => Judged::new(L5, &[pgmap_obj(pgmap), pfn_obj(pfn)]).variant(1),
            Warn::PercpuRef { pgmap, event, .. } => Judged::new(Invariant::of_ref_event(event), &[pgmap_obj(pgmap)]),
            Warn::LargeFolioNotAnon { pfn, .. } => Judged::new(F11, &[pfn_obj(pfn)]),
        }),
        Obs::ReturnedToAllocator { pgmap, head, nr, already_free } => {
            if let Some(p) = (head..head + nr).find(|&p| l.pages[p].in_use()) {
                return Some(Judged::new(F9, &[pgmap_obj(pgmap), pfn_obj(p)]).at(p));
            }
            already_free.map(|p| Judged::new(F9, &[pfn_obj(p)]).at(p).variant(1))
        }
        Obs::ReturnedToP2pPool { pfn, mmap_page } => {
            (!mmap_page || l.pages[pfn].p2p_kernel).then(|| Judged::new(F9, &[pfn_obj(pfn)]).variant(2))
        }
        Obs::ReturnedToBuddy { head, nr } => {
            for p in head..head + nr {
                if l.pages[p].in_use() {
                    return Some(Judged::new(F9, &[pfn_obj(p)]).at(p).variant(3));
                }
                if l.locker[p] != LOCK_NONE {
                    return Some(Judged::new(M7, &[pfn_obj(p)]).at(p).variant(1));
                }
            }
            None
        }
        Obs::Released { pgmap } => (l.pgmap_users(pgmap) > 0).then(|| Judged::new(R3, &[pgmap_obj(pgmap)])),
        Obs::TornDown { pgmap } => {
            if let Some(p) = layout.pfns_of(pgmap).find(|&p| l.pages[p].in_use()) {
                return Some(Judged::new(L2, &[pgmap_obj(pgmap), pfn_obj(p)]).at(p));
            }
            (l.pgmap_users(pgmap) > 0).then(|| Judged::new(L2, &[pgmap_obj(pgmap)]).variant(1))
        }
        Obs::NewAnonRmap { pfn, proc, linked, .. } => {
            (!linked).then(|| Judged::new(F2, &[pfn_obj(pfn), ("proc", proc as u32)]))
        }
        Obs::RmapMissed { pfn, proc, addr, .. } => {
            Some(Judged::new(M9, &[pfn_obj(pfn), ("proc", proc as u32), ("addr", addr as u32)]))
        }
        Obs::AnonVmaFreed { pfn, .. } => Some(Judged::new(M10, &[pfn_obj(pfn)])),
        Obs::DeviceAllocated { pgmap, pfn } => {
            (l.life[pgmap] == Life::Killed).then(|| Judged::new(L5, &[pgmap_obj(pgmap), pfn_obj(pfn)]))
        }
        Obs::CompoundPrepared { pfn, head, order, old_head, old_order } => {
            let standalone = old_head == pfn && old_order == 0;
            let same_shape = old_head == head && old_order == order;
            (!layout.is_ram(pfn) && !standalone && !same_shape).then(|| Judged::new(F4, &[pfn_obj(pfn)]))
        }
        // a tail page's first word is its compound head, not a pgmap: the
        // put_many that follows goes through a wild pointer
        Obs::PgmapReadAfterFree { pfn, head } => (head != pfn).then(|| Judged::new(F3, &[pfn_obj(pfn)])),
        Obs::SplitRefs { head, total, expect, .. } => (total != expect).then(|| Judged::new(T2, &[pfn_obj(head)])),
        Obs::SplitPgmapRef { pgmap, head, before, after } => {
            (after != before).then(|| Judged::new(T2, &[pgmap_obj(pgmap), pfn_obj(head)]).variant(1))
        }
        Obs::PmdWalked { proc, pmd, taken_for_thp } => {
            // only a present PMD maps a THP; anything else taken for one
            // is a swap entry read as a folio pointer
            let bogus = taken_for_thp && !matches!(pmd, Pte::Present { .. });
            bogus.then(|| Judged::new(T3, &[("proc", proc as u32), pfn_obj(pmd.pfn().unwrap_or(0))]))
        }
        Obs::StaleTlbAfterUnmap { proc, addr, pfn, .. } => {
            Some(Judged::new(W2, &[("proc", proc as u32), ("addr", addr as u32), pfn_obj(pfn)]))
        }
        Obs::GupGranted { pfn, ty, longterm, p2pdma } => match ty {
            Some(DeviceType::Fsdax) if longterm => Some(Judged::new(X4, &[pfn_obj(pfn)])),
            Some(DeviceType::Private) => Some(Judged::new(G3, &[pfn_obj(pfn)])),
            Some(DeviceType::P2pdma) if !p2pdma || longterm => Some(Judged::new(G4, &[pfn_obj(pfn)])),
            Some(DeviceType::Coherent) if longterm => Some(Judged::new(G5, &[pfn_obj(pfn)])),
            _ => None,
        },
        Obs::MigrationUnlocked { pfn, fault_path_lock } => fault_path_lock.then(|| Judged::new(M4, &[pfn_obj(pfn)])),
        Obs::DeviceMapped { proc, addr, pfn, write, now } => (now != Some((pfn, write)))
            .then(|| Judged::new(H1, &[("proc", proc as u32), ("addr", addr as u32), pfn_obj(pfn)])),
        Obs::Migrated { head, nr, own_fault_ref } => {
            for p in head..head + nr {
                let mut n = l.pages[p].unexplained_for_migration();
                if own_fault_ref && p == head {
                    n = n.saturating_sub(1);
                }
                if n > 0 {
                    return Some(Judged::new(M2, &[pfn_obj(p)]).at(p));
                }
            }
            None
        }
        Obs::WildSubpage { pfn } => Some(Judged::new(M8, &[pfn_obj(pfn)])),
        Obs::Restored { pfn, page_dirty } => {
            (l.pages[pfn].dirty_pte && !page_dirty).then(|| Judged::new(M5, &[pfn_obj(pfn)]))
        }
        Obs::LruAdded { pfn, freeing } => {
            if !layout.is_ram(pfn) {
                Some(Judged::new(M6, &[pfn_obj(pfn)]).variant(1))
            } else {
                freeing.then(|| Judged::new(M6, &[pfn_obj(pfn)]))
            }
        }
        Obs::MigrationEntryLeft { pfn, head, .. } => {
            // legitimate only while a running migration holds the page collected
            (l.pages[head].collect == 0 && l.pages[pfn].collect == 0).then(|| Judged::new(M3, &[pfn_obj(pfn)]))
        }
        Obs::LockedAfterFinalize { pfn, slot, fault_path_lock } => {
            (l.locker[pfn] == lock_task(slot) && !fault_path_lock).then(|| Judged::new(M7, &[pfn_obj(pfn)]))
        }
        Obs::MigrateToRam { pgmap, pfn, head, nr, fault_ref, on_free_list } => {
            if l.life[pgmap] == Life::TornDown {
                return Some(Judged::new(D1, &[pgmap_obj(pgmap), pfn_obj(pfn)]));
            }
            (!fault_ref && (on_free_list || !folio_in_use(l, head, nr)))
                .then(|| Judged::new(D1, &[pfn_obj(pfn)]).variant(1))
        }
        Obs::FaultUnlocked { pfn, head, nr } => {
            (!folio_in_use(l, head, nr)).then(|| Judged::new(D1, &[pfn_obj(pfn)]).variant(2))
        }
        Obs::Read { proc, addr, pfn, got, .. } => {
            let want = l.vcontent[layout.pte_slot(proc, addr)];
            (want != got).then(|| Judged::new(W1, &[("proc", proc as u32), ("addr", addr as u32), pfn_obj(pfn)]))
        }
        Obs::BlockFreed { file, pfn, .. } => {
            let h = l.pages[pfn];
            (h.extra_refs() > 0 || h.maps > 0).then(|| Judged::new(X2, &[("file", file as u32), pfn_obj(pfn)]))
        }
        Obs::ReturnedHoldingPtl { slot } => Some(Judged::new(D2, &[("task", slot as u32)])),
        Obs::Livelock { task, .. } => Some(Judged::new(D3, &[("task", task as u32)])),
        Obs::Hang { task, .. } => Some(Judged::new(L4, &[("task", task as u32)])),
        Obs::Idle { head, nr, rc } => {
            (!folio_in_use(l, head, nr) && rc != l.init_rc[head]).then(|| Judged::new(F10, &[pfn_obj(head)]))
        }
    }
}

/// What broke, in words: (message, expected, actual). Only built when the
/// violation is reported.
pub fn describe(obs: &Obs<'_>, j: &Judged, l: &Ledger, layout: &Layout) -> (String, String, String) {
    match *obs {
        Obs::PageTouched { pfn, what } => {
            let g = layout.pgmap_of(pfn);
            (
                format!("{what} touches pfn {pfn} after memunmap_pages tore pgmap {g} down (use after free)"),
                "struct pages present".into(),
                "torn down".into(),
            )
        }
        Obs::PgmapTouched { pgmap: g, what } => {
            (format!("{what} touches pgmap {g} after memunmap_pages freed it"), "live pgmap".into(), "freed".into())
        }
        Obs::RefTaken { pfn, old, what, .. } => (
            format!("{what} takes a reference on pfn {pfn} whose refcount is {old}: the page is free"),
            "refcount > 0".into(),
            format!("{old}"),
        ),
        Obs::RefDropped { pfn, old, n, what } => {
            let new = old - n;
            (format!("{what} drops pfn {pfn}'s refcount below zero ({old} - {n})"), ">= 0".into(), format!("{new}"))
        }
        Obs::RefInitialised { pfn, old } => (
            format!("zone_device_page_init on pfn {pfn} whose refcount is {old}: the page is not free"),
            "0".into(),
            format!("{old}"),
        ),
        Obs::Warned { warn, what } => match warn {
            Warn::FreeWithoutPageFree { pfn, ty } => (
                format!(
                    "{what} takes pfn {pfn} ({}) to refcount 0: the free path WARNs (this type has no page_free) and the \
                     page is left at 0",
                    ty.name()
                ),
                "refcount stays >= 1".into(),
                "0".into(),
            ),
            Warn::TrygetLiveFailed { pgmap: g, .. } => (
                format!("zone_device_page_init: tryget_live failed on pgmap {g} (allocation after kill)"),
                "tryget_live succeeds".into(),
                "failed".into(),
            ),
            Warn::PercpuRef { pgmap: g, event, value } => (
                format!("percpu_ref misuse on pgmap {g}'s ref during {what}: {}", event.name()),
                "no WARN".into(),
                if value != 0 { format!("{} (count {value})", event.name()) } else { event.name().into() },
            ),
            Warn::LargeFolioNotAnon { pfn, ty, nr } => (
                format!(
                    "{what} takes the {nr}-page {} folio at pfn {pfn} to refcount 0: free_zone_device_folio WARNs \
                     (VM_WARN_ON_ONCE(folio_test_large(folio)) for a folio that is not anonymous)",
                    ty.name()
                ),
                "no WARN".into(),
                "WARN".into(),
            ),
        },
        Obs::ReturnedToAllocator { .. } => {
            let p = j.at;
            if j.variant == 0 {
                let h = l.pages[p];
                (
                    format!("page_free returns pfn {p} to its allocator while it is held by {}", h.describe()),
                    "no holder".into(),
                    h.describe(),
                )
            } else {
                (
                    format!("page_free of pfn {p}, which is already on its driver's free list (double free)"),
                    "allocated".into(),
                    "free".into(),
                )
            }
        }
        Obs::ReturnedToP2pPool { pfn, .. } => (
            format!(
                "p2pdma_page_free returns pfn {pfn} to the gen_pool, but it is not a user-space allocation of its own"
            ),
            "user-space P2P page".into(),
            "other".into(),
        ),
        Obs::ReturnedToBuddy { .. } => {
            let p = j.at;
            if j.invariant == Invariant::F9 {
                let hold = l.pages[p];
                (
                    format!(
                        "system RAM pfn {p} is freed to the buddy allocator while it is held by {}",
                        hold.describe()
                    ),
                    "no holder".into(),
                    hold.describe(),
                )
            } else {
                (format!("system RAM pfn {p} is freed while still locked"), "unlocked".into(), "locked".into())
            }
        }
        Obs::Released { pgmap: g } => {
            let users = l.pgmap_users(g);
            let (k, p) = (l.kernel_pgmap_refs[g] + l.inflight_pgmap_refs[g], l.p2p_allocs[g]);
            (
                format!(
                    "pgmap {g}'s ref was released while {k} get_dev_pagemap reference(s) and {p} P2P allocation(s) \
                     still use it"
                ),
                "0 users".into(),
                format!("{users} users"),
            )
        }
        Obs::TornDown { pgmap: g } => {
            if j.variant == 0 {
                let (p, h) = (j.at, l.pages[j.at]);
                (
                    format!("memunmap_pages tore pgmap {g} down while pfn {p} is still held by {}", h.describe()),
                    "no holder".into(),
                    h.describe(),
                )
            } else {
                let users = l.pgmap_users(g);
                (
                    format!(
                        "memunmap_pages tore pgmap {g} down while {users} kernel user(s) hold pgmap references or P2P \
                         allocations"
                    ),
                    "0".into(),
                    format!("{users}"),
                )
            }
        }
        Obs::NewAnonRmap { pfn, proc, mapping, .. } => (
            format!(
                "folio_add_new_anon_rmap maps pfn {pfn} into process {proc}, but page->mapping still names {}: the \
                 page was already PageAnon (a stale mapping from its previous life), so __page_set_anon_rmap left \
                 it, and rmap walks of the page will not find this mapping",
                mapping_name(mapping)
            ),
            format!("the anon_vma of process {proc}'s VMA"),
            mapping_name(mapping),
        ),
        Obs::RmapMissed { pfn, proc, addr, mapping, what } => (
            format!(
                "{what}: the rmap walk of pfn {pfn} (page->mapping {}) never visits process {proc}, whose entry at \
                 address {addr} still maps it",
                mapping_name(mapping)
            ),
            "every entry of the folio visited".into(),
            format!("process {proc} missed"),
        ),
        Obs::AnonVmaFreed { pfn, av, what } => (
            format!(
                "{what}: the rmap walk for pfn {pfn} follows page->mapping to the anon_vma of process {av}, which \
                 no VMA is linked to any more (freed: the walk's anon_vma_lock_read is a use after free)"
            ),
            "a live anon_vma".into(),
            "freed anon_vma".into(),
        ),
        Obs::DeviceAllocated { pgmap: g, pfn: h } => {
            (format!("pfn {h} is allocated after memunmap_pages killed pgmap {g}"), "live pgmap".into(), "killed".into())
        }
        Obs::CompoundPrepared { pfn: p, head: h, order, old_head: oh, old_order: oo } => (
            format!(
                "pfn {p} is handed out as part of an order-{order} folio at pfn {h}, but still carries the compound \
                 head {oh} of an earlier order-{oo} folio (the free path left stale metadata)"
            ),
            "standalone order-0 page".into(),
            format!("tail of pfn {oh}"),
        ),
        Obs::PgmapReadAfterFree { pfn: p, head: h } => (
            format!(
                "free_zone_device_folio reads folio->pgmap of pfn {p} after ->folio_free() returned, but the driver \
                 has reallocated pfn {p} as a tail of the folio at pfn {h}: the word holds that compound head, and \
                 percpu_ref_put_many goes through it"
            ),
            "the pgmap read before ->folio_free()".into(),
            format!("compound_head {h}"),
        ),
        Obs::SplitRefs { head: h, nr, total, expect } => (
            format!(
                "the split of folio {h} leaves its {nr} pages with {total} references in all; before the split the \
                 folio had {expect} (a split must not invent or drop references)"
            ),
            format!("{expect}"),
            format!("{total}"),
        ),
        Obs::SplitPgmapRef { pgmap: g, head: h, before, after } => (
            format!(
                "the split of folio {h} changes pgmap {g}'s ref from {before} to {after}; pgmap references are per \
                 base page and a split must leave them alone"
            ),
            format!("{before}"),
            format!("{after}"),
        ),
        Obs::PmdWalked { proc, pmd, .. } => {
            let pfn = pmd.pfn().unwrap_or(0);
            (
                format!(
                    "a PMD walker reads the device-private PMD entry for pfn {pfn} (process {proc}) as a present huge \
                     page: pmd_folio() of a swap entry is a bogus folio pointer"
                ),
                "device-private entry skipped".into(),
                "treated as present".into(),
            )
        }
        Obs::StaleTlbAfterUnmap { proc, addr, pfn, task } => (
            format!(
                "madvise(MADV_DONTNEED) of process {proc} address {addr} returns while task {task}'s collect has \
                 replaced its PTE for pfn {pfn} and not flushed the TLB yet: a CPU can still write pfn {pfn} through \
                 its stale TLB entry after the call returned"
            ),
            "TLB flushed before the PTL is released".into(),
            "stale TLB entry".into(),
        ),
        Obs::DeviceMapped { proc, addr, pfn, write, now } => {
            let page = if l.pages[pfn].in_use() { "still in use elsewhere" } else { "no longer held by anyone" };
            let cpu = match now {
                Some((q, w)) => format!("pfn {q}{}", if w { " writable" } else { " read-only" }),
                None => "nothing".into(),
            };
            (
                format!(
                    "the device maps pfn {pfn}{} at proc {proc} addr {addr} from a stale hmm_range_fault snapshot: \
                     the CPU now maps {cpu} there, and pfn {pfn} is {page} (no reference was taken)",
                    if write { " writable" } else { "" }
                ),
                "the driver retries (mmu_interval_read_retry)".into(),
                "stale snapshot used".into(),
            )
        }
        Obs::GupGranted { pfn: p, longterm, .. } => match j.invariant {
            Invariant::X4 => {
                (format!("a FOLL_LONGTERM pin of FS-DAX pfn {p} was granted"), "-EOPNOTSUPP".into(), "granted".into())
            }
            Invariant::G3 => {
                (format!("GUP returned device-private pfn {p}"), "-EFAULT (fault, migrate)".into(), "granted".into())
            }
            Invariant::G5 => (
                format!("a FOLL_LONGTERM pin of coherent pfn {p} was granted"),
                "migrated to system RAM first (migrate_device_coherent_page)".into(),
                "granted".into(),
            ),
            _ => (
                format!(
                    "GUP returned P2P pfn {p} {}",
                    if longterm { "for FOLL_LONGTERM" } else { "without FOLL_PCI_P2PDMA" }
                ),
                "refused".into(),
                "granted".into(),
            ),
        },
        Obs::MigrationUnlocked { pfn: p, .. } => (
            format!(
                "the migration unlocks fault page {p}, whose lock belongs to the fault path that called migrate_to_ram"
            ),
            "left locked for do_swap_page".into(),
            "unlocked".into(),
        ),
        Obs::Migrated { .. } => {
            let (p, h) = (j.at, l.pages[j.at]);
            (
                format!(
                    "migrate_vma_pages migrates pfn {p} while it is held by {}: that holder keeps using the old page",
                    h.describe()
                ),
                "migration refused".into(),
                "migrated".into(),
            )
        }
        Obs::WildSubpage { pfn: p } => (
            format!(
                "try_to_unmap_one computed the subpage of device-private pfn {p} from its swap entry as if it were a \
                 present PTE (page - page_to_pfn(page) + pte_pfn(pte)): a wild struct page pointer, which the rmap \
                 removal dereferences (the kernel oopses)"
            ),
            "subpage = page".into(),
            "wild pointer".into(),
        ),
        Obs::Restored { pfn: p, .. } => (
            format!(
                "a dirty PTE of pfn {p} was replaced by a migration entry; the migration failed and pfn {p} is mapped \
                 back through a clean PTE without PG_dirty: the dirty bit was lost at collect, so a clean copy in the \
                 swap cache is dropped at reclaim without writeback"
            ),
            "dirty".into(),
            "clean".into(),
        ),
        Obs::LruAdded { pfn, .. } => {
            if j.variant == 1 {
                (format!("ZONE_DEVICE pfn {pfn} is put on an LRU list"), "never on an LRU".into(), "on an LRU".into())
            } else {
                (
                    format!(
                        "migrate_vma_finalize puts pfn {pfn} back on the LRU although its data was migrated away and \
                         this put frees it (its memcg data is already gone)"
                    ),
                    "freed without the LRU".into(),
                    "put on the LRU".into(),
                )
            }
        }
        Obs::MigrationEntryLeft { pfn: q, entry, .. } => (
            format!(
                "a migration entry for pfn {q} survives migrate_vma_finalize with no migration holding the page: a \
                 process touching it waits forever, or maps a page that is freed and reused"
            ),
            "no migration entry".into(),
            entry.describe(),
        ),
        Obs::LockedAfterFinalize { pfn: q, .. } => (
            format!(
                "pfn {q} was locked by this migration and is still locked after finalize: every later lock_page on it \
                 sleeps forever"
            ),
            "unlocked".into(),
            "locked".into(),
        ),
        Obs::MigrateToRam { pgmap: g, pfn: p, .. } => {
            if j.variant == 0 {
                (
                    format!(
                        "migrate_to_ram runs for pfn {p} after memunmap_pages freed pgmap {g}: page->pgmap->ops is freed \
                         memory"
                    ),
                    "pgmap alive".into(),
                    "freed".into(),
                )
            } else {
                (
                    format!(
                        "migrate_to_ram runs for pfn {p}, which was freed after the fault read its entry: the fault path \
                         took no reference under the page-table lock (use after free of page->zone_device_data)"
                    ),
                    "a reference held".into(),
                    "page freed".into(),
                )
            }
        }
        Obs::FaultUnlocked { pfn: p, .. } => (
            format!("do_swap_page unlocks pfn {p} after its put_page freed it (use after free)"),
            "unlock before the final put".into(),
            "unlock after".into(),
        ),
        Obs::Read { proc, addr, pfn: p, got, when } => {
            let want = l.vcontent[layout.pte_slot(proc, addr)];
            (
                format!(
                    "lost write: {when}, process {proc} address {addr} maps pfn {p}, which holds data version {got}, \
                     but the last write to that address was version {want}"
                ),
                format!("version {want}"),
                format!("version {got}"),
            )
        }
        Obs::BlockFreed { file, index, pfn: p } => {
            let h = l.pages[p];
            (
                format!(
                    "truncate frees the block of file {file} index {index} (pfn {p}) while it is held by {}",
                    h.describe()
                ),
                "idle page".into(),
                h.describe(),
            )
        }
        Obs::ReturnedHoldingPtl { slot } => (
            format!(
                "task {slot} returns with a page-table lock still held: every later fault, GUP or unmap of that page \
                 table spins forever"
            ),
            "PTL released".into(),
            "held".into(),
        ),
        Obs::Livelock { faults: n, pfns, .. } => (
            format!(
                "livelock: {n} fault(s) on device-private pfn {pfns} refault forever under fair scheduling — each \
                 migrate_to_ram fails because of the others' references, and the state repeats"
            ),
            "one fault migrates the page".into(),
            "every fault retries".into(),
        ),
        Obs::Hang { what, why, extra, .. } => {
            (format!("hang: {what} never completes: {why}{extra}"), "completes".into(), "blocked forever".into())
        }
        Obs::Idle { head: p, rc, .. } => {
            let init = l.init_rc[p];
            (
                format!(
                    "pfn {p}'s refcount is {rc} after every holder released it; it started at {init} ({} reference(s) \
                     {})",
                    (rc - init).abs(),
                    if rc > init { "leaked" } else { "dropped twice" }
                ),
                format!("{init}"),
                format!("{rc}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Shape;

    fn setup() -> (Ledger, Layout) {
        let layout = Layout::new(&Shape::default());
        (Ledger::new(layout.npfns, layout.npgmaps, layout.procs * layout.addrs), layout)
    }

    /// The judgement takes no rules: what a walker took a device-private PMD
    /// for decides I-T3, whatever switch made it do so.
    #[test]
    fn a_device_private_pmd_taken_for_a_thp_is_i_t3() {
        let (l, layout) = setup();
        let pmd = Pte::DevicePrivate { pfn: 2, write: true };
        let j = judge(&Obs::PmdWalked { proc: 1, pmd, taken_for_thp: true }, &l, &layout).unwrap();
        assert_eq!((j.invariant, j.objects()), (Invariant::T3, &[("proc", 1), ("pfn", 2)][..]));
        assert!(judge(&Obs::PmdWalked { proc: 1, pmd, taken_for_thp: false }, &l, &layout).is_none());
        let thp = Pte::present(6, true);
        assert!(judge(&Obs::PmdWalked { proc: 0, pmd: thp, taken_for_thp: true }, &l, &layout).is_none());
    }

    /// Every WARN the modelled kernel prints is a violation (I-F8 for the
    /// free path's), and the class comes from the invariant.
    #[test]
    fn a_kernel_warn_is_always_judged() {
        let (l, layout) = setup();
        let warn = Warn::FreeWithoutPageFree { pfn: 9, ty: DeviceType::Generic };
        let j = judge(&Obs::Warned { warn, what: "put_page" }, &l, &layout).unwrap();
        assert_eq!(j.invariant, Invariant::F8);
        assert_eq!(j.invariant.class(), Class::Safety);
        let (message, _, _) = describe(&Obs::Warned { warn, what: "put_page" }, &j, &l, &layout);
        assert!(message.contains("the free path WARNs"), "{message}");
    }

    /// The messages name what was seen: a percpu_ref WARN its count when
    /// it has one, a RAM page freed while held (I-F9) or while locked
    /// (I-M7), and a release's users of both kinds added up.
    #[test]
    fn messages_name_what_was_seen() {
        let (mut l, layout) = setup();
        let warned = |value| {
            let warn = Warn::PercpuRef { pgmap: 1, event: RefEvent::Underflow, value };
            let obs = Obs::Warned { warn, what: "put_dev_pagemap" };
            let j = judge(&obs, &l, &layout).unwrap();
            describe(&obs, &j, &l, &layout).2
        };
        assert!(warned(-2).ends_with("(count -2)"), "{}", warned(-2));
        assert!(!warned(0).contains("count"), "{}", warned(0));
        let ram = layout.ndev;
        let buddy = Obs::ReturnedToBuddy { head: ram, nr: 1 };
        l.pages[ram].kernel_gets = 1;
        let j = judge(&buddy, &l, &layout).unwrap();
        let (m, _, _) = describe(&buddy, &j, &l, &layout);
        assert!(m.contains("freed to the buddy allocator while it is held by"), "{m}");
        l.pages[ram].kernel_gets = 0;
        l.locker[ram] = LOCK_DRIVER;
        let j = judge(&buddy, &l, &layout).unwrap();
        let (m, _, _) = describe(&buddy, &j, &l, &layout);
        assert!(m.contains("freed while still locked"), "{m}");
        l.kernel_pgmap_refs[0] = 2;
        l.inflight_pgmap_refs[0] = 3;
        let rel = Obs::Released { pgmap: 0 };
        let j = judge(&rel, &l, &layout).unwrap();
        let (m, _, _) = describe(&rel, &j, &l, &layout);
        assert!(m.contains("while 5 get_dev_pagemap reference(s)"), "{m}");
    }

    /// A page returned to its allocator is judged from the ledger.
    #[test]
    fn a_held_page_returned_to_its_allocator_is_i_f9() {
        let (mut l, layout) = setup();
        let obs = Obs::ReturnedToAllocator { pgmap: 0, head: 1, nr: 1, already_free: None };
        assert!(judge(&obs, &l, &layout).is_none());
        l.pages[1].gup_pins = 1;
        let j = judge(&obs, &l, &layout).unwrap();
        assert_eq!((j.invariant, j.at), (Invariant::F9, 1));
    }

    /// `p2pdma_page_free` may only return a page a user-space mapping took
    /// from the pool (a kernel allocation's pages go back through
    /// `pci_free_p2pmem`).
    #[test]
    fn a_p2p_page_freed_to_the_pool_must_be_a_user_space_one() {
        let (mut l, layout) = setup();
        let pool = |mmap_page| Obs::ReturnedToP2pPool { pfn: 3, mmap_page };
        assert!(judge(&pool(true), &l, &layout).is_none());
        let j = judge(&pool(false), &l, &layout).unwrap();
        assert_eq!((j.invariant, j.variant, j.objects()), (Invariant::F9, 2, &[("pfn", 3)][..]));
        l.pages[3].p2p_kernel = true;
        assert_eq!(judge(&pool(true), &l, &layout).map(|j| j.invariant), Some(Invariant::F9));
    }

    /// A put below zero and a get from below the minimum are I-F1; the
    /// boundaries are not.
    #[test]
    fn refcount_bounds_are_i_f1() {
        let (l, layout) = setup();
        let drop = |old, n| judge(&Obs::RefDropped { pfn: 2, old, n, what: "put_page" }, &l, &layout);
        assert!(drop(1, 1).is_none() && drop(5, 2).is_none());
        let j = drop(0, 1).unwrap();
        assert_eq!((j.invariant, j.variant, j.objects()), (Invariant::F1, 1, &[("pfn", 2)][..]));
        assert!(drop(1024, 1025).is_some());
        let take = |old, min| judge(&Obs::RefTaken { pfn: 2, old, min, what: "get_page" }, &l, &layout);
        assert!(take(1, 1).is_none() && take(0, 0).is_none());
        assert_eq!(take(0, 1).map(|j| (j.invariant, j.variant)), Some((Invariant::F1, 0)));
    }

    /// What a teardown or a touch after it names: the pgmap, and the page.
    #[test]
    fn teardown_judgements_name_the_pgmap_and_the_page() {
        let (mut l, layout) = setup();
        let g = 1;
        let p = layout.pfns_of(g).start + 1;
        assert!(judge(&Obs::TornDown { pgmap: g }, &l, &layout).is_none());
        l.pages[p].kernel_gets = 1;
        let j = judge(&Obs::TornDown { pgmap: g }, &l, &layout).unwrap();
        assert_eq!((j.invariant, j.at, j.objects()), (Invariant::L2, p, &[("pgmap", g as u32), ("pfn", p as u32)][..]));
        l.pages[p].kernel_gets = 0;
        l.kernel_pgmap_refs[g] = 1;
        let j = judge(&Obs::TornDown { pgmap: g }, &l, &layout).unwrap();
        assert_eq!((j.invariant, j.variant, j.objects()), (Invariant::L2, 1, &[("pgmap", g as u32)][..]));
        l.life[g] = Life::TornDown;
        let j = judge(&Obs::PgmapTouched { pgmap: g, what: "get_dev_pagemap" }, &l, &layout).unwrap();
        assert_eq!((j.invariant, j.objects()), (Invariant::L3, &[("pgmap", g as u32)][..]));
        let j = judge(&Obs::PageTouched { pfn: p, what: "put_page" }, &l, &layout).unwrap();
        assert_eq!((j.invariant, j.objects()), (Invariant::L3, &[("pgmap", g as u32), ("pfn", p as u32)][..]));
    }

    /// A device page prepared as part of a folio must carry no compound
    /// metadata of an earlier, different folio (I-F4): a standalone page or
    /// the same folio again is fine.
    #[test]
    fn stale_compound_metadata_is_i_f4() {
        let (l, layout) = setup();
        let prep = |old_head, old_order| {
            judge(&Obs::CompoundPrepared { pfn: 5, head: 4, order: 1, old_head, old_order }, &l, &layout)
        };
        assert!(prep(5, 0).is_none(), "standalone before");
        assert!(prep(4, 1).is_none(), "the same folio again");
        assert_eq!(prep(6, 1).map(|j| (j.invariant, j.objects()[0])), Some((Invariant::F4, ("pfn", 5))));
        assert!(prep(4, 2).is_some(), "same head, other order");
        assert!(prep(5, 1).is_some(), "its own head of a larger folio");
    }

    /// A migration entry left behind is legitimate only while the running
    /// migration holds the folio collected — through its head or the page.
    #[test]
    fn a_migration_entry_is_left_legitimately_only_under_collect() {
        let (mut l, layout) = setup();
        let entry = Pte::Migration { pfn: 5, kind: crate::pagetable::MigKind::Write };
        let left = |l: &Ledger| judge(&Obs::MigrationEntryLeft { pfn: 5, head: 4, entry }, l, &layout);
        assert_eq!(left(&l).map(|j| j.invariant), Some(Invariant::M3));
        l.pages[4].collect = 1;
        assert!(left(&l).is_none(), "the head is collected");
        l.pages[4].collect = 0;
        l.pages[5].collect = 1;
        assert!(left(&l).is_none(), "the page is collected");
    }

    /// `migrate_to_ram` on a folio nobody holds, or on one back on the free
    /// list, without the fault path's own reference, is I-D1.
    #[test]
    fn migrate_to_ram_needs_a_held_page_or_its_own_reference() {
        let (mut l, layout) = setup();
        let m2r = |l: &Ledger, fault_ref, on_free_list| {
            let obs = Obs::MigrateToRam { pgmap: 0, pfn: 1, head: 1, nr: 1, fault_ref, on_free_list };
            judge(&obs, l, &layout).map(|j| (j.invariant, j.variant))
        };
        assert_eq!(m2r(&l, false, false), Some((Invariant::D1, 1)), "nobody holds it");
        assert_eq!(m2r(&l, true, false), None, "the fault path holds it");
        l.pages[1].maps = 1;
        assert_eq!(m2r(&l, false, false), None, "mapped");
        assert_eq!(m2r(&l, false, true), Some((Invariant::D1, 1)), "mapped, yet on the free list");
        l.life[0] = Life::TornDown;
        assert_eq!(m2r(&l, true, false), Some((Invariant::D1, 0)), "the pgmap is gone");
    }

    /// A filesystem block freed while its page is mapped or referenced is
    /// I-X2 (the busy-page check missed it).
    #[test]
    fn a_busy_block_freed_is_i_x2() {
        let (mut l, layout) = setup();
        let freed = |l: &Ledger| judge(&Obs::BlockFreed { file: 1, index: 0, pfn: 6 }, l, &layout);
        assert!(freed(&l).is_none());
        l.pages[6].maps = 1;
        assert_eq!(freed(&l).map(|j| (j.invariant, j.objects()[0])), Some((Invariant::X2, ("file", 1))));
        l.pages[6].maps = 0;
        l.pages[6].gup_pins = 1;
        assert!(freed(&l).is_some());
    }

    /// The message of a put below zero shows the value it went to.
    #[test]
    fn an_underflow_message_shows_the_negative_count() {
        let (l, layout) = setup();
        let obs = Obs::RefDropped { pfn: 2, old: 1, n: 3, what: "put_page" };
        let j = judge(&obs, &l, &layout).unwrap();
        let (message, expected, actual) = describe(&obs, &j, &l, &layout);
        assert_eq!((expected.as_str(), actual.as_str()), (">= 0", "-2"));
        assert!(message.contains("(1 - 3)"), "{message}");
    }

    #[test]
    fn ids_are_unique_and_documented() {
        let mut ids: Vec<&str> = Invariant::ALL.iter().map(|i| i.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), Invariant::ALL.len());
        assert!(Invariant::ALL.iter().all(|i| !i.doc().is_empty() && Invariant::from_id(i.id()) == Some(*i)));
    }
}
