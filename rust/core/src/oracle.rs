//! The oracle: ground truth that never reads the rules.
//!
//! The ledger records *who holds what* as the actors see it — a page-table
//! mapping, a GUP reference or pin, a kernel user's `get_page`, a driver's
//! allocation, a P2P allocation, a filesystem block association, a kernel
//! user's pgmap reference — and the *physical events*: a page handed back to
//! its allocator (`page_free`, `gen_pool_free`, a freed filesystem block), a
//! pgmap's percpu_ref released, struct pages torn down. Safety properties
//! are judged from the ledger alone, the same for every era: if a page is
//! returned to its allocator while somebody still holds it, or the struct
//! pages vanish while somebody still uses them, the design under test is
//! unsafe, whatever its refcount arithmetic says.
//!
//! Conformance checks (class [`Class::Conformance`]) are different: they
//! compare the machine's counters with what the preset in force says they
//! should be (spec I-F5, I-P1, I-G1). A conformance failure means zdfuzz
//! itself, or a hand-written preset, is inconsistent — never that the kernel
//! design is unsafe. The two classes are reported apart.

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
    /// folio's dirty flag can say so now. A migration must carry it to its
    /// destination as PG_dirty (I-M5).
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

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// spec id, e.g. "I-L2"
    pub invariant: &'static str,
    pub class: Class,
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

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) at step {} [{}]: {}",
            self.invariant,
            self.class.name(),
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

/// Plain-words description of each invariant (spec §8.1 plus the ones
/// zdfuzz adds), used by reports and `zdfuzz explain`.
pub fn invariant_doc(id: &str) -> &'static str {
    match id {
        "I-R1" => "the pgmap's percpu_ref count never goes below zero",
        "I-R2" => "percpu_ref release runs at most once per init/reinit cycle",
        "I-R3" => "release never runs while a holder still owns a pgmap reference",
        "I-R4" => "percpu_ref kill/reinit/resurrect/switch are used as the API requires",
        "I-R7" => "no percpu_ref operation after percpu_ref_exit",
        "I-R8" => "percpu_ref_exit is not called while a mode switch is pending",
        "I-P1" => "pgmap->ref equals the references the preset says exist (conformance)",
        "I-L2" => "memunmap_pages tears the struct pages down only when no page of the pgmap is in use",
        "I-L3" => "no page, pgmap or device memory is touched after memunmap_pages tore it down",
        "I-L4" => "memunmap_pages and every other kernel task terminate once all users are gone",
        "I-L5" => "no device page is allocated (zone_device_page_init) after the pgmap was killed",
        "I-F1" => "a page refcount never goes negative and never rises from zero outside allocation",
        "I-F2" => "a page handed to a new owner carries no stale mapping from its previous life",
        "I-F5" => "a free page has the refcount the preset says free pages have (conformance)",
        "I-F4" => "a page a device-private driver hands out carries no stale compound metadata of an earlier folio",
        "I-F8" => "device-dax and kernel P2P pages only bounce 1->2->1; reaching 0 hits the free path's WARN",
        "I-F9" => "a page is returned to its allocator only when nobody holds it, and only once",
        "I-F10" => "once every holder is gone, a page's refcount is back at its initial value (no leak)",
        "I-X2" => "a truncate frees a DAX block only when no DMA/GUP reference to its page remains",
        "I-X4" => "no FOLL_LONGTERM pin of an FS-DAX page is granted",
        "I-G1" => "pin accounting: a pinned small page carries GUP_PIN_COUNTING_BIAS per pin (conformance)",
        "I-G3" => "GUP never returns a device-private page",
        "I-G4" => "GUP returns P2P pages only with FOLL_PCI_P2PDMA and never for FOLL_LONGTERM",
        "I-M1" => "an anonymous or device-private folio's refcount equals what its holders account for (conformance)",
        "I-M2" => "a page with references migration cannot account for (GUP, pins, fault path) is never migrated",
        "I-M3" => "no migration entry survives migrate_vma_finalize",
        "I-M4" => "the migration code neither unlocks nor releases the fault page the fault path locked",
        "I-M5" => "the dirty bit of a PTE replaced by a migration entry reaches the destination folio",
        "I-M6" => "no folio about to be freed goes on an LRU, and no ZONE_DEVICE folio ever does",
        "I-M7" => "every page a migration locked is unlocked exactly once",
        "I-D1" => "migrate_to_ram runs only on a page the fault path holds a reference to (no use after free)",
        "I-D2" => "every exit of the fault path releases the page-table lock",
        "I-D3" => "concurrent faults on one device-private page make progress (no livelock)",
        "I-T2" => "a split neither invents nor drops page or pgmap references",
        "I-T3" => "page-table walkers tell device-private and migration PMD entries from a present THP",
        "I-W1" => "no lost write: a live mapping shows the last value written to its virtual page",
        _ => "",
    }
}

/// Every invariant id the machine can report.
pub const INVARIANTS: &[&str] = &[
    "I-R1", "I-R2", "I-R3", "I-R4", "I-R7", "I-R8", "I-P1", "I-L2", "I-L3", "I-L4", "I-L5", "I-F1", "I-F2", "I-F4",
    "I-F5", "I-F8", "I-F9", "I-F10", "I-X2", "I-X4", "I-G1", "I-G3", "I-G4", "I-M1", "I-M2", "I-M3", "I-M4", "I-M5",
    "I-M6", "I-M7", "I-D1", "I-D2", "I-D3", "I-T2", "I-T3", "I-W1",
];
