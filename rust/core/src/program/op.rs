//! The canonical operation: one action of one actor, with explicit operands.
//!
//! Each kind is named after the kernel function or event it models. The
//! table [`KINDS`] gives, per kind, its operands and their domains; the
//! three program encodings (text, bytes, JSON) are all generic over it. The
//! order of [`OpKind`] is the byte encoding: append new kinds, never reorder.

use crate::config::{Layout, MAX_ALLOC_PAGES};

/// GUP flag bits as operands (the kernel's FOLL_* are different numbers).
pub const FOLL_LONGTERM: u16 = 1;
pub const FOLL_PCI_P2PDMA: u16 = 2;
/// The caller uses `get_user_pages_fast` / `pin_user_pages_fast`: the
/// lockless walk first, then the slow walk for what it did not take. Not a
/// FOLL_* bit of the kernel (the API is), and an operand only in shapes with
/// failure injection: without a failure both walks take the same references
/// on every entry the model has (the lockless walk hands everything it does
/// not handle to the slow one), so elsewhere it would only multiply states.
pub const GUP_FAST: u16 = 4;

/// `MIGRATE_VMA_SELECT_*` as operands: which pages a migration collects
/// (and so its direction: system RAM → device, or device-private → RAM),
/// and whether a PMD block migrates whole.
pub const SELECT_SYSTEM: u16 = 1;
pub const SELECT_DEVICE_PRIVATE: u16 = 2;
pub const SELECT_COMPOUND: u16 = 4;
/// `MIGRATE_VMA_SELECT_DEVICE_COHERENT` (v6.0): collect the driver's
/// coherent pages, to move them back to system RAM.
pub const SELECT_DEVICE_COHERENT: u16 = 8;
/// The select values an operand can take, in domain order. The last is in
/// the domain only of layouts with a MEMORY_DEVICE_COHERENT pgmap, so the
/// byte encoding of every other layout is what it was before the type.
pub const SELECT_VALUES: [u16; 5] = [
    SELECT_SYSTEM,
    SELECT_DEVICE_PRIVATE,
    SELECT_SYSTEM | SELECT_COMPOUND,
    SELECT_DEVICE_PRIVATE | SELECT_COMPOUND,
    SELECT_DEVICE_COHERENT,
];

/// Who drops a `put_page`: a GUP caller (FOLL_GET) or a kernel user.
pub const BY_GUP: u16 = 0;
pub const BY_KERNEL: u16 = 1;

/// Failure sites `fail_next` can arm (the kernel calls that fail in the
/// model): `vm_insert_page` / `vmf_insert_*` (a page-table allocation or a
/// racing insert: -ENOMEM / -EBUSY, VM_FAULT_OOM), GUP's `try_grab_folio`
/// (the refcount-overflow guard: -ENOMEM), the page allocation of a
/// migration's destination (the driver's device page, or `alloc_page` for
/// migrate_to_ram), and `gen_pool_alloc` of P2P memory.
pub const SITE_VM_INSERT: u16 = 0;
pub const SITE_TRY_GRAB: u16 = 1;
pub const SITE_ALLOC: u16 = 2;
pub const SITE_GEN_POOL: u16 = 3;
/// Site names, in operand order (append only: the byte encoding).
pub const SITE_NAMES: [&str; 4] = ["vm_insert", "try_grab", "alloc", "gen_pool"];

/// The domain an operand ranges over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    Pgmap,
    Cpu,
    Task,
    Pfn,
    Proc,
    Addr,
    File,
    Index,
    /// a page count, 1..=MAX_ALLOC_PAGES
    Pages,
    /// FOLL_LONGTERM | FOLL_PCI_P2PDMA bits, and GUP_FAST where failures
    /// can be injected
    Flags,
    /// optional pgmap: 0 = none, g+1 = pgmap g
    Cached,
    /// BY_GUP or BY_KERNEL
    By,
    /// MIGRATE_VMA_SELECT_* bits, one of [`SELECT_VALUES`]
    Select,
    /// a failure site, one of [`SITE_NAMES`]
    Site,
}

impl Dim {
    /// Number of values the operand can take in this layout.
    pub fn size(self, l: &Layout) -> usize {
        match self {
            Dim::Pgmap => l.npgmaps,
            Dim::Cpu => l.cpus,
            Dim::Task => l.tasks,
            Dim::Pfn => l.npfns,
            Dim::Proc => l.procs,
            Dim::Addr => l.addrs,
            Dim::File => l.nfiles,
            Dim::Index => l.file_pages,
            Dim::Pages => MAX_ALLOC_PAGES,
            Dim::Flags => {
                if l.faults {
                    8
                } else {
                    4
                }
            }
            Dim::Cached => l.npgmaps + 1,
            Dim::By => 2,
            Dim::Select => SELECT_VALUES.len() - (!l.has_coherent()) as usize,
            Dim::Site => SITE_NAMES.len(),
        }
    }

    /// The i-th value of the domain (values are dense from 0, except Pages).
    #[inline]
    pub fn value(self, i: usize) -> u16 {
        match self {
            Dim::Pages => i as u16 + 1,
            Dim::Select => SELECT_VALUES.get(i).copied().unwrap_or(SELECT_SYSTEM),
            _ => i as u16,
        }
    }

    /// Inverse of [`Dim::value`]; None when out of the domain.
    #[inline]
    pub fn index(self, v: u16, l: &Layout) -> Option<usize> {
        let i = match self {
            Dim::Pages => (v as usize).checked_sub(1)?,
            Dim::Select => SELECT_VALUES.iter().position(|&s| s == v)?,
            _ => v as usize,
        };
        (i < self.size(l)).then_some(i)
    }
}

macro_rules! kinds {
    ($( $variant:ident = $name:literal [$($arg:literal : $dim:ident),*] $doc:literal ;)*) => {
        /// Every action the machine knows.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum OpKind { $($variant),* }

        /// Per kind: text name, operands, one-line documentation.
        pub const KINDS: &[KindInfo] = &[
            $(KindInfo { kind: OpKind::$variant, name: $name, args: &[$(($arg, Dim::$dim)),*], doc: $doc }),*
        ];
    };
}

pub struct KindInfo {
    pub kind: OpKind,
    pub name: &'static str,
    pub args: &'static [(&'static str, Dim)],
    pub doc: &'static str,
}

kinds! {
    MemremapPages = "memremap_pages" ["pgmap": Pgmap]
        "driver probe: memremap_pages() registers the pgmap and initialises its struct pages";
    MemunmapPages = "memunmap_pages" ["pgmap": Pgmap, "cpu": Cpu]
        "driver unbind: spawn the memunmap_pages() task (kill, drop init refs, wait for zero, teardown)";
    Step = "step" ["task": Task]
        "run the next step of a kernel task";
    RcuGracePeriod = "rcu_grace_period" []
        "an RCU grace period elapses: pending percpu_ref switch callbacks run";
    GetDevPagemap = "get_dev_pagemap" ["pfn": Pfn, "cached": Cached, "cpu": Cpu]
        "a kernel user spawns get_dev_pagemap(pfn, cached): lookup, then tryget_live";
    PutDevPagemap = "put_dev_pagemap" ["pgmap": Pgmap, "cpu": Cpu]
        "a kernel user drops a pgmap reference it got from get_dev_pagemap";
    AllocDevicePage = "alloc_device_page" ["pgmap": Pgmap, "cpu": Cpu]
        "device-private driver allocates a page (E1 get_page+lock, E3 zone_device_page_init)";
    FreeDevicePage = "free_device_page" ["pfn": Pfn, "cpu": Cpu]
        "device-private driver drops its allocation: unlock_page + put_page";
    LockPage = "lock_page" ["pfn": Pfn]
        "driver locks a page it holds (trylock)";
    UnlockPage = "unlock_page" ["pfn": Pfn]
        "driver unlocks a page it holds";
    MigrateVmaInsertPage = "migrate_vma_insert_page" ["proc": Proc, "addr": Addr, "pfn": Pfn, "cpu": Cpu]
        "driver migrates an anonymous hole to its page: device-private entry, then finalize (unlock + put)";
    PciAllocP2pmem = "pci_alloc_p2pmem" ["pgmap": Pgmap, "pages": Pages, "cpu": Cpu]
        "kernel user allocates P2P memory (one pgmap reference per allocation)";
    PciFreeP2pmem = "pci_free_p2pmem" ["pfn": Pfn, "cpu": Cpu]
        "kernel user frees the P2P allocation starting at pfn";
    GetPage = "get_page" ["pfn": Pfn]
        "kernel user (sg_page) takes a page reference on a page of its P2P allocation";
    PutPage = "put_page" ["pfn": Pfn, "by": By, "cpu": Cpu]
        "a holder (by=gup: FOLL_GET caller, by=kernel: kernel user) drops its page reference";
    P2pmemAllocMmap = "p2pmem_alloc_mmap" ["pgmap": Pgmap, "proc": Proc, "addr": Addr, "pages": Pages, "cpu": Cpu]
        "process mmaps sysfs p2pmem/allocate: pages inserted at addr.. (v6.2+)";
    DevDaxFault = "dev_dax_huge_fault" ["proc": Proc, "addr": Addr, "pfn": Pfn, "cpu": Cpu]
        "process faults a device-dax page in (vmf_insert_mixed E1-E3, refcounted E4)";
    DaxAssociateEntry = "dax_associate_entry" ["file": File, "index": Index, "pfn": Pfn]
        "filesystem allocates block pfn to file offset index (DAX page-cache entry)";
    DaxIomapFault = "dax_iomap_fault" ["proc": Proc, "addr": Addr, "file": File, "index": Index, "cpu": Cpu]
        "process faults a DAX file page in";
    Truncate = "truncate" ["file": File, "index": Index, "cpu": Cpu]
        "filesystem spawns truncate of one entry: break layouts (unmap, busy scan, wait idle), then free the block";
    Fork = "fork" ["proc": Proc, "child": Proc]
        "process forks into an empty slot (copy_page_range)";
    ExitMmap = "exit_mmap" ["proc": Proc, "cpu": Cpu]
        "process exits: every mapping is zapped";
    Munmap = "munmap" ["proc": Proc, "addr": Addr, "cpu": Cpu]
        "process unmaps one address (zap_pte_range)";
    GetUserPages = "get_user_pages" ["proc": Proc, "addr": Addr, "flags": Flags, "cpu": Cpu]
        "GUP caller takes a page reference (FOLL_GET) on a mapped page";
    PinUserPages = "pin_user_pages" ["proc": Proc, "addr": Addr, "flags": Flags, "cpu": Cpu]
        "GUP caller pins a mapped page (FOLL_PIN: +GUP_PIN_COUNTING_BIAS)";
    UnpinUserPage = "unpin_user_page" ["pfn": Pfn, "cpu": Cpu]
        "GUP caller releases a pin";
    DoAnonymousPage = "do_anonymous_page" ["proc": Proc, "addr": Addr, "cpu": Cpu]
        "process touches anonymous memory: a zeroed page of system RAM is mapped writable";
    DoHugePmdAnonymousPage = "do_huge_pmd_anonymous_page" ["proc": Proc, "addr": Addr, "cpu": Cpu]
        "process touches an empty PMD block: a THP of system RAM is mapped by one PMD";
    CpuWrite = "cpu_write" ["proc": Proc, "addr": Addr, "cpu": Cpu]
        "process writes through its present mapping (a shared anonymous page is copied first: do_wp_page)";
    DeviceWrite = "device_write" ["pfn": Pfn]
        "the device writes one of its device-private pages through its mirror of a process mapping";
    DmaWrite = "dma_write" ["pfn": Pfn]
        "a device DMA-writes a page a GUP caller pinned for it";
    MigrateVmaSetup = "migrate_vma_setup" ["proc": Proc, "addr": Addr, "pgmap": Pgmap, "select": Select, "cpu": Cpu]
        "device-private driver spawns a migration of one page, or of a PMD block with COMPOUND (collect, unmap, alloc+copy, pages, finalize)";
    DoSwapPage = "do_swap_page" ["proc": Proc, "addr": Addr, "cpu": Cpu]
        "process touches a device-private entry: spawn the fault (read entry, PTL + pte_same, reference, migrate_to_ram)";
    MigrateDeviceRange = "migrate_device_range" ["pgmap": Pgmap, "cpu": Cpu]
        "device-private driver spawns the eviction of all its in-use pages to system RAM (before unbind, v6.1+)";
    AllocDeviceFolio = "alloc_device_folio" ["pgmap": Pgmap, "cpu": Cpu]
        "device-private driver allocates a large folio (zone_device_folio_init; E5)";
    SplitHugePmd = "split_huge_pmd" ["proc": Proc, "addr": Addr, "cpu": Cpu]
        "a PMD mapping is split into PTE mappings (mprotect or munmap of part of a huge page)";
    SplitHugePage = "split_huge_page" ["pfn": Pfn, "cpu": Cpu]
        "split the large folio containing pfn into order-0 folios (can_split_folio, freeze, split, remap)";
    Mbind = "mbind" ["proc": Proc, "addr": Addr, "cpu": Cpu]
        "a page-table walker (mbind's queue_folios_pmd, MADV_COLD) inspects the PMD covering addr";
    FailNext = "fail_next" ["site": Site, "nth": Pages]
        "fault injection (shapes with faults=1): the nth next call at site (vm_insert, try_grab, alloc, gen_pool) fails";
    HmmRangeFault = "hmm_range_fault" ["proc": Proc, "addr": Addr, "pgmap": Pgmap, "cpu": Cpu]
        "the driver of a device-private pgmap snapshots addr for its device (no page reference), then checks mmu_interval_read_retry and maps it";
    MemoryFailure = "memory_failure" ["pfn": Pfn, "cpu": Cpu]
        "a hardware memory error on a device page (shapes with faults=1): spawn memory_failure (get_dev_pagemap, unmap every mapping, put)";
    DaxWriteback = "dax_writeback" ["file": File, "index": Index, "cpu": Cpu]
        "the filesystem writes one DAX entry back (dax_writeback_one): lock the entry, then (a step) flush and unlock it";
    MadviseDontneed = "madvise_dontneed" ["proc": Proc, "addr": Addr, "cpu": Cpu]
        "a thread discards one anonymous page (MADV_DONTNEED: zap_page_range under the mmap read lock, so while a migration or fault of the process runs)";
    HmmFault = "hmm_fault" ["proc": Proc, "addr": Addr, "pgmap": Pgmap, "cpu": Cpu]
        "the driver of a device-private pgmap faults addr in for its device (hmm_range_fault with HMM_PFN_REQ_FAULT: a hole or another owner's page is faulted first), then snapshots it as hmm_range_fault does";
}

impl OpKind {
    pub const COUNT: usize = KINDS.len();

    #[inline]
    pub fn info(self) -> &'static KindInfo {
        &KINDS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn from_index(i: usize) -> Option<OpKind> {
        KINDS.get(i).map(|k| k.kind)
    }

    pub fn from_name(name: &str) -> Option<OpKind> {
        KINDS.iter().find(|k| k.name == name).map(|k| k.kind)
    }
}

pub const MAX_ARGS: usize = 5;

/// A set of action kinds (swarm testing runs a program with a random
/// subset). Bit `k` is `KINDS[k]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KindSet(pub u128);

// the bitset must hold every kind
const _: () = assert!(KINDS.len() <= 128);

impl KindSet {
    pub const ALL: KindSet = KindSet(if KINDS.len() == 128 { u128::MAX } else { (1u128 << KINDS.len()) - 1 });
    pub const EMPTY: KindSet = KindSet(0);

    #[inline]
    pub fn contains(self, k: OpKind) -> bool {
        self.0 >> (k as usize) & 1 == 1
    }

    pub fn insert(&mut self, k: OpKind) {
        self.0 |= 1 << (k as usize);
    }

    pub fn remove(&mut self, k: OpKind) {
        self.0 &= !(1 << (k as usize));
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, in table order.
    pub fn iter(self) -> impl Iterator<Item = OpKind> {
        KINDS.iter().map(|k| k.kind).filter(move |k| self.contains(*k))
    }
}

/// One action: a kind and its operand values (unused slots are 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    pub kind: OpKind,
    pub args: [u16; MAX_ARGS],
}

impl Op {
    pub fn new(kind: OpKind, args: &[u16]) -> Op {
        let mut a = [0; MAX_ARGS];
        for (d, s) in a.iter_mut().zip(args) {
            *d = *s;
        }
        Op { kind, args: a }
    }

    /// Operand `i` as usize.
    #[inline]
    pub fn a(&self, i: usize) -> usize {
        self.args[i] as usize
    }

    /// The value of a named operand.
    pub fn arg(&self, name: &str) -> Option<u16> {
        let info = self.kind.info();
        info.args.iter().position(|(n, _)| *n == name).map(|i| self.args[i])
    }

    /// The CPU the action runs on (0 for actions without one).
    pub fn cpu(&self) -> usize {
        self.arg("cpu").unwrap_or(0) as usize
    }

    /// Are all operands inside their domains for this layout?
    pub fn in_domain(&self, l: &Layout) -> Result<(), DomainError> {
        let info = self.kind.info();
        for (i, (name, dim)) in info.args.iter().enumerate() {
            if dim.index(self.args[i], l).is_none() {
                let size = dim.size(l);
                return Err(DomainError(match dim {
                    Dim::Pages => format!("{name}={} out of range (1..={size})", self.args[i]),
                    Dim::Cached => {
                        format!("{name}={} names no pgmap (there are {})", self.args[i].wrapping_sub(1), size - 1)
                    }
                    _ if size == 0 => format!("{name}: this configuration has none"),
                    _ => format!("{name}={} out of range (0..{size})", self.args[i]),
                }));
            }
        }
        for i in info.args.len()..MAX_ARGS {
            if self.args[i] != 0 {
                return Err(DomainError(format!(
                    "operand slot {i} set on {} which takes {} operands",
                    info.name,
                    info.args.len()
                )));
            }
        }
        Ok(())
    }
}

/// An operand outside its domain for the machine's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainError(pub String);

impl std::fmt::Display for DomainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DomainError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Shape;
    use crate::device::DeviceType;

    /// `SELECT_DEVICE_COHERENT` is in the operand's domain only where a
    /// coherent pgmap exists, so every other layout decodes bytes as before.
    #[test]
    fn the_coherent_select_value_exists_only_with_coherent_memory() {
        let plain = Layout::new(&Shape::default());
        assert_eq!(Dim::Select.size(&plain), 4);
        assert_eq!(Dim::Select.index(SELECT_DEVICE_COHERENT, &plain), None);
        let coh = Layout::new(&Shape { types: vec![DeviceType::Private, DeviceType::Coherent], ..Shape::default() });
        assert_eq!(Dim::Select.size(&coh), 5);
        assert_eq!(Dim::Select.value(4), SELECT_DEVICE_COHERENT);
        assert_eq!(Dim::Select.index(SELECT_DEVICE_COHERENT, &coh), Some(4));
    }
}
