//! Rules: one kernel era as data.
//!
//! Every behaviour that changed between kernel versions is a named switch
//! here; the machine implements each kernel function once and consults the
//! switches (memremap_pages' init references, memmap_init_zone_device's
//! initial refcount, what put_page does at 2→1 and at 1→0 —
//! `put_devmap_managed_page` / `free_devmap_managed_page` in E1,
//! `free_zone_device_page` in E2/E3, `free_zone_device_folio` in E4 —,
//! `zone_device_page_init`, p2pdma's allocation and mmap, GUP's devmap paths,
//! FS-DAX's layout breaking). Adding an era means adding a preset.
//!
//! Presets: `e1` (v5.10), `e2` (v5.18), `e3` (v6.1), `e4` (v6.15) and `p20`
//! (E1 plus Ralph Campbell's two 2020 RFCs the seed discusses). Users load
//! their own from TOML, overriding switches of a base preset:
//!
//! ```toml
//! name = "p2p-per-page"
//! base = "e1"
//! description = "P2P pages counted per page, pgmap still per allocation"
//! [types.p2pdma]
//! init_rc = 0
//! [p2p]
//! alloc_sets_rc = true
//! ```

pub use crate::device::DeviceType;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How `memunmap_pages` gives back the references `memremap_pages` took.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemunmapPut {
    /// E1: `put_page()` on every pfn; a page whose refcount reaches 0 drops
    /// one pgmap reference (`__put_page` → `put_dev_pagemap`).
    EveryPage,
    /// E2+: `percpu_ref_put_many(&pgmap->ref, nr_pages)`, pages untouched.
    PutMany,
    /// E3+ PRIVATE: no init references exist, nothing to drop.
    None,
}

/// Which pgmap reference `zone_device_page_init` takes on allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllocPgmapRef {
    /// E1/E2: none (the init references cover the page).
    None,
    /// E3/E4: `WARN_ON_ONCE(!percpu_ref_tryget_live(&pgmap->ref))`.
    TrygetLive,
    /// E5: `percpu_ref_tryget_many(&pgmap->ref, 1 << order)` (ignores DEAD).
    TrygetMany,
}

/// Per-type refcount rules (one row of a table of docs/model.md §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeRules {
    /// Refcount `memmap_init_zone_device` leaves in each struct page.
    pub init_rc: u8,
    /// Refcount of a page sitting free (conformance check I-F5).
    pub free_rc: u8,
    /// `memremap_pages` takes one pgmap reference per page.
    pub init_pgmap_refs: bool,
    /// How `memunmap_pages` drops them.
    pub memunmap_put: MemunmapPut,
    /// A put that takes the refcount 2→1 calls `page_free` (E1's 1-based
    /// devmap-managed put: the page is idle again).
    pub free_on_2to1: bool,
    /// A put that takes the refcount 2→1 wakes layout waiters
    /// (`wake_up_var(&page->_refcount)`, FS-DAX E1–E3).
    pub wake_on_2to1: bool,
    /// A put that takes the refcount 1→0 calls `page_free`.
    pub page_free_on_zero: bool,
    /// A put that takes the refcount 1→0 drops one pgmap reference (E1's
    /// `__put_page` → `put_dev_pagemap`; E3's `free_zone_device_page`).
    pub put_pgmap_on_zero: bool,
    /// After reaching 0 the refcount is set back to 1 (E2/E3 non-PRIVATE,
    /// E4 GENERIC: `set_page_count(page, 1)`).
    pub reset_on_zero: bool,
    /// A put that takes the refcount 1→0 wakes layout waiters (FS-DAX E4).
    pub wake_on_zero: bool,
    /// A user-space mapping of the page holds a page reference and a
    /// mapcount (E4 FS-DAX and device-dax; always for PRIVATE and P2P).
    pub map_refcounted: bool,
    /// GUP on a mapping of the page takes a transient pgmap reference
    /// (`get_dev_pagemap` on devmap PTEs, E1–E3) and fails if it cannot.
    pub gup_pgmap_ref: bool,
    /// Reaching refcount 0 hits a WARN in the free path: the type has no
    /// `page_free` (E2/E3 `free_zone_device_page` for device-dax, E2 for
    /// P2P; the refcount then stays 0). Reported as I-F8.
    pub zero_warns: bool,
}

/// Device-private driver contract (nouveau, test_hmm, amdkfd of each era).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateRules {
    /// E1 drivers call `get_page()` on allocation (1→2).
    pub alloc_get_page: bool,
    /// The allocation sets the refcount to 1 (E3 `zone_device_page_init`,
    /// P20's zero-based RFC); a free page is at 0.
    pub alloc_sets_rc: bool,
    /// Pgmap reference taken per allocation.
    pub alloc_pgmap_ref: AllocPgmapRef,
    /// The free path clears `page->mapping` before `page_free` (the 2019
    /// fix "mm/hmm: fix ZONE_DEVICE anon page mapping reuse").
    pub free_clears_mapping: bool,
    /// Contract: the driver may still allocate after it called
    /// memunmap_pages (no in-tree driver does; "drivers shouldn't be
    /// allocating pages after calling memunmap_pages").
    pub alloc_while_unbinding: bool,
    /// Contract: the driver unbinds only once none of its pages is in use
    /// any more (it migrated every page back to system RAM first, as the
    /// seed says memunmap_pages' put must be the last). No era's drivers
    /// promised this in general (nouveau evicts at release only from v6.1);
    /// a what-if for asking "is the design safe under that contract?".
    #[serde(default)]
    pub unbind_after_eviction: bool,
    /// The driver checks `mmu_interval_read_retry` before it maps an
    /// `hmm_range_fault` snapshot into its device (every in-tree HMM user:
    /// test_hmm, nouveau, amdkfd). False is a what-if: the device may map a
    /// page the CPU no longer maps there (I-H1).
    pub hmm_checks_retry: bool,
}

/// PCI P2PDMA (drivers/pci/p2pdma.c).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pRules {
    /// `pci_alloc_p2pmem` takes one pgmap reference per allocation
    /// (`percpu_ref_tryget_live`), `pci_free_p2pmem` drops it.
    pub alloc_pgmap_ref: bool,
    /// Allocation raises each page's refcount to 1 and free drops it to 0
    /// (the seed's "counted per page" variant; no era did this).
    pub alloc_sets_rc: bool,
    /// User-space mappings through sysfs `p2pmem/allocate` (v6.2+, E3+).
    pub userspace_mmap: bool,
    /// `p2pmem_alloc_mmap` sets each page's refcount to 1 before inserting
    /// it (E4: pages are 0-based).
    pub mmap_sets_rc: bool,
    /// GUP returns P2P pages only with FOLL_PCI_P2PDMA (v6.2+).
    pub gup_needs_flag: bool,
    /// Kernel users of pci_alloc_p2pmem memory may take page references
    /// (sg_page + get_page/put_page, 1→2→1). E4 leaves kernel-allocated
    /// pages at refcount 0, which only works if no kernel user does.
    pub kernel_get_page: bool,
    /// `p2pmem_alloc_mmap`'s `vm_insert_page` error path puts the chunk's
    /// pgmap reference back. Missing from v6.2 (7e9c7ef83d78) until
    /// 6220694c52a5 (2025-12, in stable kernels since: Debian's 6.12.117
    /// has it); without it one failed mmap makes the unbind hang.
    #[serde(default)]
    pub mmap_error_puts_ref: bool,
    /// ... and, with `mmap_sets_rc`, sets the failed page's refcount back
    /// to 0 before the page returns to the pool (the companion fix of the
    /// same 2026 series).
    #[serde(default)]
    pub mmap_error_resets_rc: bool,
}

/// FS-DAX filesystem contract (ext4/xfs on pmem).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaxRules {
    /// GUP refuses FOLL_LONGTERM pins of FS-DAX pages (all eras).
    pub longterm_refused: bool,
    /// Unmount waits for every page to be idle (`dax_break_layout_final`,
    /// E4, from `->evict_inode`). The model has no unmount, and the device's
    /// removal does not wait in any era: recorded for the era, no effect.
    pub unmount_waits_idle: bool,
    /// `dax_layout_busy_page_range` returns early when the file has no
    /// user mappings (the bug fixed by cee91fa13a8e in v6.15).
    pub busy_scan_needs_mapping: bool,
    /// `dax_layout_busy_page_range` waits for a locked entry to be unlocked
    /// and then tests its page (`wait_entry_unlocked_exclusive`, the fix
    /// 6be3e21d25ca in v6.15). False: the scan calls `get_unlocked_entry`,
    /// which looks for the next present entry and so never tests the
    /// locked entry's page — a DMA-busy page under a locked entry is missed
    /// and its block freed (I-X2).
    pub scan_waits_on_locked_entry: bool,
    /// A device-dax device aligned above PAGE_SIZE has compound pages of
    /// its alignment (`pgmap->vmemmap_shift`, 14606001efb4 "device-dax:
    /// compound devmap support", v5.17): one refcount per folio on its
    /// head, and `memremap_pages` / `memunmap_pages` take and drop one
    /// pgmap reference per folio (`pfn_len` is shifted by
    /// `vmemmap_shift`). False: order-0 pages under the PMD (v5.10). Only
    /// shapes with `devdax_pmd=1` have such a device.
    #[serde(default)]
    pub devdax_compound: bool,
    /// The pages of an FS-DAX PMD entry are one compound folio while the
    /// entry holds them (v6.15, 38607c62b34b "fs/dax: Properly refcount fs
    /// dax pages" in the series "fs/dax: Fix ZONE_DEVICE page reference
    /// counts"):
    /// `dax_associate_entry` calls `dax_folio_init` (`prep_compound_page` of
    /// the entry's order), and `dax_folio_put` splits the folio back into
    /// order-0 pages when the last entry lets go (WARN if a page still has a
    /// refcount). False: order-0 pages under a devmap PMD (E1–E3). Only
    /// shapes with `fsdax_pmd=1` have PMD entries.
    #[serde(default)]
    pub fsdax_compound: bool,
}

/// pgmap lifetime (mm/memremap.c).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgmapRules {
    /// `memunmap_pages` waits for `pgmap->ref` to reach zero before tearing
    /// down the struct pages (false = before 50f44ee7248a, v5.2).
    pub memunmap_waits: bool,
    /// Teardown waits for RCU readers of `pgmap_array` (`synchronize_rcu`).
    pub teardown_syncs_rcu: bool,
    /// `get_dev_pagemap` uses `percpu_ref_tryget_live` (fails once killed);
    /// false = plain `tryget`.
    pub get_dev_pagemap_live: bool,
    /// Before 71389703839e (v4.11): every `get_page`/`put_page` on a
    /// ZONE_DEVICE page also takes/drops a pgmap reference
    /// (`get_zone_device_page`/`put_zone_device_page`) — but GUP-fast grabs
    /// page references without `get_page`, so its later `put_page` drops a
    /// pgmap reference nobody took.
    pub page_refs_take_pgmap_refs: bool,
    /// `memory_failure` holds the `get_dev_pagemap` reference it looked up
    /// across `memory_failure_dev_pagemap` (every kernel since 6100e34b2526,
    /// v4.19, which taught memory_failure about ZONE_DEVICE pages). False is
    /// a what-if: the handler reads the page with no reference on its pgmap,
    /// so an unbind can tear the struct pages down under it (I-L3).
    pub memory_failure_gets_pgmap: bool,
}

/// GUP (mm/gup.c).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GupRules {
    /// `GUP_PIN_COUNTING_BIAS`: refcount added per FOLL_PIN of a small folio.
    pub pin_bias: u32,
    /// GUP never returns a device-private page: the entry is not present,
    /// so GUP faults the page back to system RAM (`faultin_page` →
    /// `do_swap_page`) and grabs that. False: GUP returns the device-private
    /// page itself (a what-if, reported as I-G3).
    pub refuses_device_private: bool,
    /// fork gives the child its own copy of a page that may be DMA-pinned
    /// (`page_needs_cow_for_dma`, "mm: Do early cow for pinned pages during
    /// fork()", v5.9); false reproduces the older GUP-vs-COW bug: the parent's
    /// next write moves it to a copy while the pinned DMA goes on into the
    /// page the child now owns.
    pub fork_copies_pinned: bool,
    /// A FOLL_LONGTERM GUP moves a MEMORY_DEVICE_COHERENT page to system
    /// RAM and pins the copy (`migrate_device_coherent_page`, "mm/gup:
    /// migrate device coherent pages when pinning instead of failing",
    /// v6.0). False pins the coherent page itself: what a GUP would do that
    /// forgot coherent pages are not longterm-pinnable. Eras without the
    /// type leave it false.
    #[serde(default)]
    pub longterm_migrates_coherent: bool,
    /// GUP-fast on a devmap PMD (`__gup_device_huge`) returns from a
    /// failed `try_grab_page` without `put_dev_pagemap`: the pgmap
    /// reference it took leaks and the device's unbind waits forever. In
    /// v5.7 (3faa52c03f44 "mm/gup: track FOLL_PIN pages" made the grab
    /// fallible there) to v5.14; fixed by 6401c4eb57f9 ("mm/gup: fix
    /// potential pgmap refcnt leak in __gup_device_huge()", v5.15). The
    /// slow walk (`follow_devmap_pmd`, `ctx.pgmap`) always put it back.
    #[serde(default)]
    pub device_huge_grab_failure_leaks_pgmap: bool,
}

/// How `migrate_vma_check_page` (the pre-filter of `migrate_vma_setup`)
/// treats a ZONE_DEVICE source page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceCheck {
    /// v5.10: device-private pages pass without a count check (a waiter on a
    /// migration entry used to hold a reference indistinguishable from a
    /// pin); other ZONE_DEVICE types are refused.
    Skip,
    /// v5.17+ (`ffa65753c431`): one extra expected reference for any
    /// ZONE_DEVICE page, then the usual `refcount - extra > mapcount` test.
    Extra,
}

/// Migration of anonymous memory to and from device-private memory
/// (mm/migrate_device.c; E1: mm/migrate.c).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateRules {
    /// The pre-filter's treatment of ZONE_DEVICE sources.
    pub check_device: DeviceCheck,
    /// The pre-filter rejects system RAM pages with references beyond
    /// their mappings (`refcount - extra > mapcount`). Always true in the
    /// kernel; false asks "what if migration ignored GUP pins".
    pub check_system: bool,
    /// The exact gate of `migrate_vma_pages` (`folio_migrate_mapping` /
    /// E1 `migrate_page_move_mapping`: refcount must equal the expected
    /// count). Always true in the kernel; false is a what-if.
    pub exact_gate: bool,
    /// The exact gate expects one more reference on a device-private source
    /// (E1's `expected_page_refs` term `+ is_device_private_page`, removed by
    /// 27674ef6c73f; 1-based device pages carry it).
    pub exact_counts_device_base: bool,
    /// Collect copies a dirty PTE's dirty bit to the folio (the v6.0 fix
    /// "mm/migrate_device.c: copy pte dirty bit to page").
    pub collect_marks_dirty: bool,
    /// Finalize puts a system RAM source back on the LRU even when its data
    /// was migrated away and it is about to be freed (`folio_putback_lru`;
    /// fixed by 41cddf83d8b0 in v6.14).
    pub finalize_putback_src: bool,
    /// `migrate_device_range` exists: a driver can evict its device-private
    /// pages before it unbinds (v6.1).
    pub device_range: bool,
    /// `try_to_unmap_one`/`try_to_migrate_one` find the right subpage for a
    /// device-private entry (the 2019 fix "mm/hmm: Fix bad subpage pointer
    /// in try_to_unmap_one", v5.3; false reproduces the bug: the pfn of a
    /// swap entry is used as if it were a present PTE's, so the migration
    /// entry names the wrong page).
    pub unmap_subpage_fix: bool,
    /// `folio_add_new_anon_rmap` leaves a page that is already anonymous
    /// alone (`__page_set_anon_rmap`'s `if (PageAnon(page))` early exit,
    /// read in Debian's linux-source-6.1 mm/rmap.c; 6.12's
    /// `__folio_set_anon` always writes the VMA's anon_vma). With a stale
    /// mapping left by the free path (`private.free_clears_mapping =
    /// false`) the new mapping is then invisible to rmap walks: the bug the
    /// 2019 fix "mm/hmm: fix ZONE_DEVICE anon page mapping reuse" describes.
    pub new_anon_rmap_keeps_anon: bool,
    /// `MIGRATE_VMA_SELECT_COMPOUND`: a huge folio migrates whole, as one
    /// `MIGRATE_PFN_COMPOUND` entry (E5; the 2020 patch); otherwise
    /// collect splits a PMD-mapped THP first.
    pub compound: bool,
    /// `fault_page` comes locked by the fault path: collect does not lock it
    /// and `migrate_vma_setup` requires it locked (v6.15, 1afaeb8293c9).
    pub fault_page_prelocked: bool,
    /// Finalize and the restore path leave the fault page locked for the
    /// fault path to unlock (the other half of 1afaeb8293c9). With
    /// `fault_page_prelocked` this is the v6.15 design; the two apart model
    /// a half-applied backport.
    pub finalize_skips_fault_page: bool,
    /// `migrate_vma_collect_pmd` releases the page-table lock before its
    /// `flush_tlb_range` (8c3328f1f36a, v4.14, until 60bae7370896
    /// "mm/migrate_device.c: flush TLB while holding PTL", v6.0): between the
    /// two, a MADV_DONTNEED of a collected address finds a non-present entry,
    /// zaps it without a flush of its own and returns while another CPU may
    /// still reach the page through its stale TLB entry (I-W2).
    #[serde(default)]
    pub collect_flush_after_unlock: bool,
}

/// Which device-private CPU fault path (`do_swap_page` on a device-private
/// entry, then `pgmap->ops->migrate_to_ram`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultPath {
    /// E1/E2: `migrate_to_ram` is called with no page reference and no
    /// page-table re-check.
    NoRef,
    /// E3 (`16ce101db85d`): take the PTL, re-check `pte_same`, `get_page`,
    /// drop the PTL, call `migrate_to_ram`, `put_page`.
    Ref,
    /// v6.15 (`1afaeb8293c9`): as `ref`, but `trylock_page` under the PTL
    /// first; only the lock winner migrates, the others refault.
    Trylock,
}

/// The device-private CPU fault (mm/memory.c `do_swap_page`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRules {
    pub path: FaultPath,
    /// The `pte_same` failure exit releases the page-table lock (false: a
    /// path that leaves it held, as the highmem pte-unmap bug left its map).
    pub bail_unlocks_ptl: bool,
    /// Trylock path: `unlock_page` before the final `put_page` (the review
    /// fix; false puts first and then unlocks a page it may have freed).
    pub unlock_before_put: bool,
}

/// Large folios (transparent huge pages) of system RAM and device-private
/// memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThpRules {
    /// Device-private memory has large folios (`zone_device_folio_init`,
    /// device-private PMD entries): E5, and the 2020 patch.
    pub device_private: bool,
    /// References each page of a split device-private folio gets beyond its
    /// mappings (the 2020 patch unfroze tails at 2: its 1-based idle
    /// reference plus the mapping's; E5: 0).
    pub split_tail_extra: u8,
    /// Splitting a device-private folio takes `percpu_ref_get_many(ref,
    /// nr - 1)` for the new folios (the 2020 patch).
    pub split_pgmap_get: bool,
    /// `can_split_huge_page` expects one extra pin on a device-private
    /// folio (the 2020 patch's "extra pin count magic").
    pub can_split_extra_pin: bool,
    /// `free_zone_device_folio_prepare`: every page of a freed large
    /// device-private folio is made a standalone order-0 page before
    /// `folio_free` (the 2026 fix for d245f9b4ab80).
    pub free_prepare: bool,
    /// `free_zone_device_folio` reads `folio->pgmap` again *after*
    /// `->folio_free()` returned, for its `percpu_ref_put_many` (v6.1's
    /// `put_dev_pagemap(page->pgmap)`, v6.15's and v6.19's
    /// `percpu_ref_put_many(&folio->pgmap->ref, nr)`), instead of the local
    /// it read before the callback (the 2026 fix "mm/zone_device: do not
    /// touch device folio after calling ->folio_free()", 85be0a262e39).
    /// Once the driver has the folio back it may hand its pages out again,
    /// and a page reallocated as a tail of a larger folio holds its
    /// compound head in the word that is `pgmap` on a head page. With large
    /// device-private folios (`device_private`) the model opens that window:
    /// the rest of the free path becomes a task (I-F3). Without them a
    /// freed page is always reallocated as an order-0 head whose `pgmap`
    /// word never changes, so the late read is benign and the free path
    /// stays one step.
    #[serde(default)]
    pub free_rereads_pgmap: bool,
    /// Page-walkers that look at a non-present PMD (mbind's
    /// `queue_folios_pmd`, MADV_COLD/PAGEOUT, MADV_FREE) tell device-private
    /// and migration entries from a present THP (the 2026 fixes for
    /// 368076f52ebe).
    pub walkers_know_device_pmd: bool,
    /// `free_zone_device_folio` warns on any large folio that is not
    /// anonymous (`VM_WARN_ON_ONCE(folio_test_large(folio))`, added with
    /// large device-private folios by d245f9b4ab80): an FS-DAX PMD folio is
    /// one, so the last unmap of a PMD-mapped FS-DAX extent warns. Fixed by
    /// 077d925b60c3 "mm/memremap: fix spurious large folio warning for
    /// FS-DAX" (v6.19-rc, `<20251219123717.39330-1-john@groves.net>`), which
    /// exempts FS-DAX.
    #[serde(default)]
    pub free_warns_large_file_folio: bool,
}

/// The per-type rule rows: the four every era has, and
/// MEMORY_DEVICE_COHERENT for the eras that have it (v6.0+).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeTable {
    pub private: TypeRules,
    pub fsdax: TypeRules,
    pub generic: TypeRules,
    pub p2pdma: TypeRules,
    /// None: the era has no MEMORY_DEVICE_COHERENT (before v6.0,
    /// "mm: add zone device coherent type memory support", Alex Sierra),
    /// and a shape cannot ask for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coherent: Option<TypeRules>,
}

impl TypeTable {
    /// The row of type `t`. An era without MEMORY_DEVICE_COHERENT never
    /// builds a machine with it ([`Rules::check_types`]); the private row
    /// stands in so this never fails.
    pub fn get(&self, t: DeviceType) -> &TypeRules {
        match t {
            DeviceType::Private => &self.private,
            DeviceType::Fsdax => &self.fsdax,
            DeviceType::Generic => &self.generic,
            DeviceType::P2pdma => &self.p2pdma,
            DeviceType::Coherent => self.coherent.as_ref().unwrap_or(&self.private),
        }
    }

    /// Does the era have type `t`?
    pub fn has(&self, t: DeviceType) -> bool {
        t != DeviceType::Coherent || self.coherent.is_some()
    }
}

/// One era's rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub name: String,
    /// Kernel version the preset stands for (e.g. "v5.10").
    pub kernel: String,
    pub description: String,
    /// The preset this one overrides (a file without `base` names every switch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Other names of a built-in preset (kernel versions); not inherited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// A regression preset: the fix it predates (`base` has it); not inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    pub types: TypeTable,
    pub private: PrivateRules,
    pub p2p: P2pRules,
    pub dax: DaxRules,
    pub pgmap: PgmapRules,
    pub gup: GupRules,
    pub migrate: MigrateRules,
    pub fault: FaultRules,
    pub thp: ThpRules,
}

/// Error loading rules: names the file, line, column and problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
    }
}

impl std::error::Error for RulesError {}

// ---------------------------------------------------------------------------
// Presets
// ---------------------------------------------------------------------------

/// The largest rules file [`Rules::load`] reads (a preset is a few KiB).
pub const MAX_RULES_FILE: u64 = 1 << 20;

/// The longest rules name.
pub const MAX_NAME: usize = 64;

/// The grammar of a rules name (a preset's `name` and `aliases`): an ASCII
/// letter or digit, then letters, digits and `.` `_` `+` `-`, at most
/// [`MAX_NAME`] characters. A name is one word of a `.zdf` `rules` line, part
/// of a finding's file name and printed as is, so it holds nothing a
/// reader, a shell or a terminal would take for something else.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("a name cannot be empty".into()),
        Some(c) if !c.is_ascii_alphanumeric() => return Err("a name starts with an ASCII letter or digit".into()),
        Some(_) => {}
    }
    if name.len() > MAX_NAME {
        return Err(format!("a name has at most {MAX_NAME} characters"));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))) {
        return Err(format!("{c:?} is not allowed (names use ASCII letters, digits and . _ + -)"));
    }
    Ok(())
}

/// The preset the machine and programs use when none is named.
pub const DEFAULT_PRESET: &str = "e3";

/// The built-in presets: one TOML file each, embedded at build time, in the
/// format of a user's preset (`python/zdfuzz/presets/`: the package ships
/// them, and the Python reference model reads the same files). Era presets
/// first, in `zdfuzz rules list` order, then the regression presets (files
/// with a `fix`).
const BUILTIN: &[(&str, &str)] = &[
    ("e1.toml", include_str!("../../../python/zdfuzz/presets/e1.toml")),
    ("e2.toml", include_str!("../../../python/zdfuzz/presets/e2.toml")),
    ("e3.toml", include_str!("../../../python/zdfuzz/presets/e3.toml")),
    ("e4.toml", include_str!("../../../python/zdfuzz/presets/e4.toml")),
    ("e5.toml", include_str!("../../../python/zdfuzz/presets/e5.toml")),
    ("p20.toml", include_str!("../../../python/zdfuzz/presets/p20.toml")),
    ("v4.10.toml", include_str!("../../../python/zdfuzz/presets/v4.10.toml")),
    ("v5.1.toml", include_str!("../../../python/zdfuzz/presets/v5.1.toml")),
    ("v5.2.toml", include_str!("../../../python/zdfuzz/presets/v5.2.toml")),
    ("v5.2-anon-mapping-reuse.toml", include_str!("../../../python/zdfuzz/presets/v5.2-anon-mapping-reuse.toml")),
    ("v5.8.toml", include_str!("../../../python/zdfuzz/presets/v5.8.toml")),
    ("v6.15-rc-trylock-v1.toml", include_str!("../../../python/zdfuzz/presets/v6.15-rc-trylock-v1.toml")),
    ("v6.15-skip-locked-entry.toml", include_str!("../../../python/zdfuzz/presets/v6.15-skip-locked-entry.toml")),
    ("v6.19-orig.toml", include_str!("../../../python/zdfuzz/presets/v6.19-orig.toml")),
];

/// The built-in presets, parsed once. A preset's `base` must come before
/// it in [`BUILTIN`].
fn builtin() -> &'static Result<Vec<Rules>, RulesError> {
    static PARSED: std::sync::OnceLock<Result<Vec<Rules>, RulesError>> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| {
        let mut done: Vec<Rules> = Vec::new();
        for (file, text) in BUILTIN {
            let r = Rules::parse(text, file, &|base: &str| done.iter().find(|r| r.name == base).cloned())?;
            done.push(r);
        }
        Ok(done)
    })
}

impl Rules {
    /// Every built-in preset: the eras, then the regression presets.
    pub fn builtin() -> &'static [Rules] {
        match builtin() {
            Ok(v) => v,
            Err(_) => &[],
        }
    }

    /// A built-in preset by name or alias (`e3`, `v6.1`, ...), or a
    /// regression preset (`v5.1`, `v6.19-orig`, ...).
    pub fn preset(name: &str) -> Option<Rules> {
        Rules::builtin().iter().find(|r| r.name == name || r.aliases.iter().any(|a| a == name)).cloned()
    }

    /// Names of the era presets.
    pub fn preset_names() -> Vec<&'static str> {
        Rules::builtin().iter().filter(|r| r.fix.is_none()).map(|r| r.name.as_str()).collect()
    }

    /// The regression presets: each is its `base` preset with one historical
    /// fix (`fix`) turned back.
    pub fn regressions() -> impl Iterator<Item = &'static Rules> {
        Rules::builtin().iter().filter(|r| r.fix.is_some())
    }

    /// Names of the regression presets.
    pub fn regression_names() -> Vec<&'static str> {
        Rules::regressions().map(|r| r.name.as_str()).collect()
    }

    /// A preset name or alias, a regression preset, or the path of a TOML
    /// rules file: the one way every front end (the binding, the CLI, the
    /// campaign) turns a `--rules` argument into rules.
    pub fn resolve(name_or_path: &str) -> Result<Rules, RulesError> {
        if let Some(r) = Rules::preset(name_or_path) {
            return Ok(r);
        }
        let path = std::path::Path::new(name_or_path);
        if name_or_path.ends_with(".toml") || path.is_file() {
            return Rules::load(path);
        }
        Err(RulesError {
            file: String::new(),
            line: 0,
            col: 0,
            message: format!(
                "unknown rules {name_or_path:?}: not a preset ({}), not a regression preset ({}) and not a .toml file",
                Rules::preset_names().join(", "),
                Rules::regression_names().join(", ")
            ),
        })
    }

    pub fn of(&self, t: DeviceType) -> &TypeRules {
        self.types.get(t)
    }

    /// Every type of `types` exists in this era; else the error names the
    /// first that does not.
    pub fn check_types(&self, types: &[DeviceType]) -> Result<(), String> {
        match types.iter().find(|t| !self.types.has(**t)) {
            None => Ok(()),
            Some(t) => Err(format!(
                "rules {} ({}) have no {}: it arrived in v6.0 (\"mm: add zone device coherent type memory support\"); use e3 or a \
                 later era, or drop {:?} from the types",
                self.name,
                self.kernel,
                t.kernel_name(),
                t.name()
            )),
        }
    }

    /// Load rules from TOML text: `base` names a preset whose switches the
    /// file overrides; a file without `base` names every switch (as `e1`
    /// does). `file` is used in error messages only.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Rules, RulesError> {
        Rules::parse(text, file, &Rules::preset)
    }

    /// [`Rules::from_toml_str`] with `lookup` resolving `base` names.
    fn parse(text: &str, file: &str, lookup: &dyn Fn(&str) -> Option<Rules>) -> Result<Rules, RulesError> {
        let err = |line: usize, col: usize, message: String| RulesError { file: file.to_string(), line, col, message };
        let user: toml::Table = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            err(line, col, e.message().to_string())
        })?;
        if !user.contains_key("name") {
            return Err(err(1, 1, "missing `name = \"...\"` for the new rules".into()));
        }
        let base_name = match user.get("base") {
            Some(toml::Value::String(s)) => Some(s.clone()),
            Some(_) => {
                let (l, c) = locate(text, &["base"]);
                return Err(err(l, c, "`base` must be a string naming a preset".into()));
            }
            None => None,
        };
        let mut merged = match &base_name {
            None => toml::Table::new(),
            Some(base_name) => {
                let base = lookup(base_name).ok_or_else(|| {
                    let (l, c) = locate(text, &["base"]);
                    err(
                        l,
                        c,
                        format!(
                            "unknown base preset {base_name:?}; presets: {}",
                            Rules::builtin().iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    )
                })?;
                let mut t = toml::Table::try_from(&base).map_err(|e| err(1, 1, e.to_string()))?;
                // a preset's other names and its fix are its own
                t.remove("aliases");
                t.remove("fix");
                t
            }
        };
        if base_name.is_some() {
            merge(&mut merged, &user, &mut Vec::new(), text, &err)?;
            for own in ["base", "aliases", "fix"] {
                if let Some(v) = user.get(own) {
                    merged.insert(own.into(), v.clone());
                }
            }
        } else {
            merged = user;
        }
        let rules: Rules =
            toml::Value::Table(merged).try_into().map_err(|e: toml::de::Error| err(1, 1, e.message().to_string()))?;
        for (key, names) in [("name", std::slice::from_ref(&rules.name)), ("aliases", rules.aliases.as_slice())] {
            for n in names {
                if let Err(why) = check_name(n) {
                    let (l, c) = locate(text, &[key]);
                    return Err(err(l, c, format!("bad {key} {n:?}: {why}")));
                }
            }
        }
        Ok(rules)
    }

    /// Load rules from a TOML file: a regular file of at most
    /// [`MAX_RULES_FILE`] bytes (a FIFO or a device would block or never end).
    pub fn load(path: &std::path::Path) -> Result<Rules, RulesError> {
        use std::io::Read;
        let fail = |message: String| RulesError { file: path.display().to_string(), line: 0, col: 0, message };
        // before opening: opening a FIFO for reading waits for a writer
        let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        if !meta.is_file() {
            return Err(fail("cannot read: not a regular file".into()));
        }
        let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(fail("cannot read: not a regular file".into()));
        }
        let mut bytes = Vec::new();
        file.take(MAX_RULES_FILE + 1).read_to_end(&mut bytes).map_err(|e| fail(format!("cannot read: {e}")))?;
        if bytes.len() as u64 > MAX_RULES_FILE {
            return Err(fail(format!("larger than {MAX_RULES_FILE} bytes: not a rules file")));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let (line, col) = line_col(&String::from_utf8_lossy(&e.as_bytes()[..at]), at);
            RulesError {
                file: path.display().to_string(),
                line,
                col,
                message: format!("not UTF-8 (byte 0x{:02x})", e.as_bytes()[at]),
            }
        })?;
        Rules::from_toml_str(&text, &path.display().to_string())
    }

    /// The rules as TOML (a complete preset file a user can edit).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Every switch as (dotted path, value, documentation), for `rules show`.
    pub fn describe(&self) -> Vec<(String, String, &'static str)> {
        let mut out = Vec::new();
        if let Ok(t) = toml::Table::try_from(self) {
            flatten(&t, "", &mut out);
        }
        out.retain(|(k, _, _)| !matches!(k.as_str(), "name" | "kernel" | "description" | "base" | "aliases" | "fix"));
        out
    }
}

/// Overlay `user` onto `base`, rejecting keys the base does not have and
/// values of the wrong type, with the user's line numbers.
fn merge(
    base: &mut toml::Table,
    user: &toml::Table,
    path: &mut Vec<String>,
    text: &str,
    err: &dyn Fn(usize, usize, String) -> RulesError,
) -> Result<(), RulesError> {
    for (k, v) in user {
        path.push(k.clone());
        let here = || {
            let p: Vec<&str> = path.iter().map(|s| s.as_str()).collect();
            locate(text, &p)
        };
        if path.len() == 1 && matches!(k.as_str(), "base" | "aliases" | "fix") {
            path.pop();
            continue;
        }
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(bt)), toml::Value::Table(ut)) => merge(bt, ut, path, text, err)?,
            (Some(toml::Value::Table(_)), _) => {
                let (l, c) = here();
                return Err(err(
                    l,
                    c,
                    format!("`{}` is a section ([{}]), not a value", path.join("."), path.join(".")),
                ));
            }
            (Some(bv), uv) => {
                if std::mem::discriminant(bv) != std::mem::discriminant(uv) {
                    let (l, c) = here();
                    return Err(err(
                        l,
                        c,
                        format!(
                            "`{}` must be a {} (like {}), got {}",
                            path.join("."),
                            bv.type_str(),
                            bv,
                            uv.type_str()
                        ),
                    ));
                }
                *bv = uv.clone();
            }
            (None, uv @ toml::Value::Table(_)) if path.len() == 2 && path[0] == "types" && path[1] == "coherent" => {
                // an era gains MEMORY_DEVICE_COHERENT: the row is new, so it
                // names every switch (serde reports a missing one)
                base.insert(k.clone(), uv.clone());
            }
            (None, _) => {
                let (l, c) = here();
                let parent: Vec<String> = base.keys().cloned().collect();
                return Err(err(
                    l,
                    c,
                    format!("unknown switch `{}`; known here: {}", path.join("."), parent.join(", ")),
                ));
            }
        }
        path.pop();
    }
    Ok(())
}

fn flatten(t: &toml::Table, prefix: &str, out: &mut Vec<(String, String, &'static str)>) {
    for (k, v) in t {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(sub) => flatten(sub, &key, out),
            other => {
                let doc = switch_doc(&key);
                let val = match other {
                    toml::Value::String(s) => s.clone(),
                    o => o.to_string(),
                };
                out.push((key, val, doc));
            }
        }
    }
}

/// Documentation of each switch (by the last path component, or full path).
pub fn switch_doc(path: &str) -> &'static str {
    let leaf = path.rsplit('.').next().unwrap_or(path);
    match (path, leaf) {
        (_, "init_rc") => "refcount memmap_init_zone_device leaves in each struct page",
        (_, "free_rc") => "refcount of a free page (conformance check I-F5)",
        (_, "init_pgmap_refs") => "memremap_pages takes one pgmap reference per page",
        (_, "memunmap_put") => "how memunmap_pages drops them: every_page (put_page per pfn), put_many, none",
        (_, "free_on_2to1") => "a put taking the refcount 2->1 calls page_free (E1 devmap-managed put)",
        (_, "wake_on_2to1") => "a put taking the refcount 2->1 wakes FS-DAX layout waiters",
        (_, "page_free_on_zero") => "a put taking the refcount 1->0 calls page_free",
        (_, "put_pgmap_on_zero") => "a put taking the refcount 1->0 drops one pgmap reference",
        (_, "reset_on_zero") => "after reaching 0 the refcount is set back to 1",
        (_, "wake_on_zero") => "a put taking the refcount 1->0 wakes FS-DAX layout waiters",
        (_, "map_refcounted") => "a user mapping holds a page reference and a mapcount",
        (_, "zero_warns") => "reaching refcount 0 hits a WARN in the free path (no page_free for this type)",
        (_, "gup_pgmap_ref") => "GUP takes a transient pgmap reference (get_dev_pagemap) and fails without one",
        (_, "free_clears_mapping") => "the free path clears page->mapping before page_free (2019 fix)",
        (_, "unbind_after_eviction") => "contract: the driver unbinds only when none of its pages is in use (what-if)",
        (_, "alloc_while_unbinding") => "contract: the driver may allocate after calling memunmap_pages",
        (_, "alloc_get_page") => "device-private allocation calls get_page (E1 drivers)",
        (_, "alloc_sets_rc") if path.starts_with("private") => {
            "device-private allocation sets the refcount 0->1 (zone_device_page_init)"
        }
        (_, "alloc_sets_rc") => "pci_alloc_p2pmem raises each page to 1; pci_free_p2pmem drops it to 0",
        ("private.alloc_pgmap_ref", _) => {
            "pgmap reference per device-private allocation: none, tryget_live, tryget_many"
        }
        ("p2p.alloc_pgmap_ref", _) => "pci_alloc_p2pmem takes one pgmap reference per allocation",
        (_, "userspace_mmap") => "user-space P2P mappings via sysfs p2pmem/allocate (v6.2+)",
        (_, "mmap_sets_rc") => "p2pmem_alloc_mmap sets each page's refcount to 1 first (0-based P2P)",
        (_, "kernel_get_page") => "kernel users of pci_alloc_p2pmem memory take page references (get_page/put_page)",
        (_, "mmap_error_puts_ref") => {
            "p2pmem_alloc_mmap's vm_insert_page error path puts the chunk's pgmap reference (6220694c52a5)"
        }
        (_, "mmap_error_resets_rc") => "p2pmem_alloc_mmap's error path resets the failed page's refcount to 0",
        (_, "gup_needs_flag") => "GUP returns P2P pages only with FOLL_PCI_P2PDMA",
        (_, "longterm_refused") => "GUP refuses FOLL_LONGTERM pins of FS-DAX pages",
        (_, "unmount_waits_idle") => {
            "unmount (not modelled) waits for every FS-DAX page to be idle (dax_break_layout_final); unbind never does"
        }
        (_, "busy_scan_needs_mapping") => {
            "busy scan returns nothing when the file has no user mappings (bug, fixed v6.15)"
        }
        (_, "memunmap_waits") => "memunmap_pages waits for pgmap->ref to reach zero before teardown",
        (_, "teardown_syncs_rcu") => "teardown waits for RCU readers of pgmap_array (synchronize_rcu)",
        (_, "page_refs_take_pgmap_refs") => {
            "get_page/put_page on a device page also get/put a pgmap ref (before v4.11)"
        }
        (_, "get_dev_pagemap_live") => "get_dev_pagemap uses tryget_live (fails once killed)",
        (_, "hmm_checks_retry") => {
            "the driver checks mmu_interval_read_retry before it maps an HMM snapshot (false: the I-H1 what-if)"
        }
        (_, "memory_failure_gets_pgmap") => {
            "memory_failure holds a pgmap reference across its ZONE_DEVICE handler (false: the I-L3 what-if)"
        }
        (_, "pin_bias") => "GUP_PIN_COUNTING_BIAS added to the refcount per pin of a small folio",
        (_, "refuses_device_private") => {
            "GUP never returns a device-private page: it faults it back to RAM (false: the I-G3 what-if)"
        }
        (_, "check_device") => {
            "migrate_vma_check_page on ZONE_DEVICE pages: skip (v5.10) or one extra expected ref (v5.17+)"
        }
        (_, "check_system") => "the pre-filter rejects RAM pages with refs beyond their mappings (what-if when false)",
        (_, "exact_gate") => "migrate_vma_pages requires the exact expected refcount (what-if when false)",
        (_, "exact_counts_device_base") => {
            "the exact gate expects +1 on device-private sources (E1 expected_page_refs)"
        }
        (_, "collect_marks_dirty") => "collect copies a dirty PTE's dirty bit to the folio (v6.0 fix)",
        (_, "finalize_putback_src") => "finalize puts a migrated-away RAM source back on the LRU (bug, fixed v6.14)",
        (_, "device_range") => "migrate_device_range exists for driver eviction (v6.1+)",
        (_, "unmap_subpage_fix") => "try_to_migrate finds the right subpage of a device-private entry (2019 fix)",
        (_, "new_anon_rmap_keeps_anon") => {
            "folio_add_new_anon_rmap keeps an anonymous page's existing anon_vma (PageAnon check, until 6.x)"
        }
        (_, "fork_copies_pinned") => "fork copies pinned anonymous pages for the child at once (v5.9)",
        (_, "longterm_migrates_coherent") => {
            "FOLL_LONGTERM GUP moves a coherent page to system RAM before pinning (v6.0; what-if when false)"
        }
        (_, "compound") => "MIGRATE_VMA_SELECT_COMPOUND: huge folios migrate whole (E5, 2020 patch)",
        (_, "fault_page_prelocked") => "fault_page comes locked by the fault path; collect does not lock it (v6.15)",
        (_, "finalize_skips_fault_page") => "finalize/restore leave the fault page locked for the fault path (v6.15)",
        ("fault.path", _) => "device-private fault: no_ref (E1/E2), ref (E3 PTL+pte_same+get), trylock (v6.15)",
        (_, "bail_unlocks_ptl") => "the pte_same-failure exit of the fault releases the PTL",
        (_, "unlock_before_put") => "trylock fault path: unlock_page before the final put_page (review fix)",
        (_, "device_private") if path.starts_with("thp") => "device-private memory has large folios (E5, 2020 patch)",
        (_, "split_tail_extra") => {
            "refs each page of a split device-private folio gets beyond its mappings (2020 patch: 1)"
        }
        (_, "split_pgmap_get") => "split of a device-private folio takes get_many(nr - 1) on the pgmap (2020 patch)",
        (_, "can_split_extra_pin") => "can_split_huge_page expects an extra pin on device-private folios (2020 patch)",
        (_, "free_prepare") => "free_zone_device_folio_prepare restores order-0 pages before folio_free (2026 fix)",
        (_, "scan_waits_on_locked_entry") => {
            "the DAX busy-page scan waits for a locked entry and tests it (false: skips it; fixed by 6be3e21d25ca)"
        }
        (_, "devdax_compound") => "device-dax pages of a PMD-aligned device are compound folios (vmemmap_shift, v5.17)",
        (_, "fsdax_compound") => {
            "an FS-DAX PMD entry's pages are a compound folio while associated (dax_folio_init, v6.15)"
        }
        (_, "free_warns_large_file_folio") => {
            "free_zone_device_folio warns on a large non-anonymous folio, an FS-DAX PMD folio too (v6.19 as merged)"
        }
        (_, "device_huge_grab_failure_leaks_pgmap") => {
            "GUP-fast on a devmap PMD leaks its pgmap reference when try_grab fails (v5.7-v5.14; 6401c4eb57f9)"
        }
        (_, "collect_flush_after_unlock") => {
            "collect flushes the TLB after dropping the PTL, opening a stale-TLB window (until 60bae7370896, v6.0)"
        }
        (_, "free_rereads_pgmap") => {
            "the free path reads folio->pgmap after ->folio_free() returned (until the 2026 fix 85be0a262e39)"
        }
        (_, "walkers_know_device_pmd") => {
            "PMD walkers (mbind, madvise) recognise device-private PMD entries (2026 fixes)"
        }
        _ => "",
    }
}

/// 1-based (line, column) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.len(), |p| before.len() - p - 1) + 1;
    (line, col)
}

/// Find the line of a dotted key in simple TOML (sections and `key = value`
/// lines, or dotted keys). Falls back to (1, 1).
fn locate(text: &str, path: &[&str]) -> (usize, usize) {
    let mut section: Vec<String> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') && !line.starts_with("[[") {
            let name = line.trim_start_matches('[').split(']').next().unwrap_or("");
            section = name.split('.').map(|s| s.trim().trim_matches('"').to_string()).collect();
            if section.iter().map(|s| s.as_str()).eq(path.iter().copied()) {
                return (i + 1, raw.find('[').unwrap_or(0) + 1);
            }
            continue;
        }
        if let Some((k, _)) = line.split_once('=') {
            let mut full = section.clone();
            full.extend(k.trim().split('.').map(|s| s.trim().trim_matches('"').to_string()));
            if full.iter().map(|s| s.as_str()).eq(path.iter().copied()) {
                let col = raw.len() - raw.trim_start().len() + 1;
                return (i + 1, col);
            }
        }
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The switches of ZONE_DEVICE memory failure and HMM say what they
    /// switch (`zdfuzz rules show` prints these).
    #[test]
    fn switch_docs_name_their_kernel_code() {
        assert!(switch_doc("pgmap.memory_failure_gets_pgmap").contains("memory_failure holds a pgmap reference"));
        assert!(switch_doc("private.hmm_checks_retry").contains("mmu_interval_read_retry"));
        assert_ne!(switch_doc("private.hmm_checks_retry"), switch_doc("pgmap.memory_failure_gets_pgmap"));
        assert!(switch_doc("thp.free_rereads_pgmap").contains("folio->pgmap after ->folio_free()"));
        assert!(switch_doc("dax.scan_waits_on_locked_entry").contains("waits for a locked entry"));
    }

    #[test]
    fn names_follow_one_grammar() {
        for ok in ["e1", "v6.15-rc-trylock-v1", "p2p_per+page", "X9"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "my rules", "evil[/x]", "-x", ".x", "a\u{1b}[31m", "caf\u{e9}", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let e = Rules::from_toml_str("base = \"e1\"\nname = \"my rules\"\n", "x.toml").unwrap_err();
        assert_eq!((e.line, e.col), (2, 1), "{e}");
        assert!(e.message.contains("bad name \"my rules\""), "{e}");
        let e = Rules::from_toml_str("name = \"x\"\nbase = \"e1\"\naliases = [\"a b\"]\n", "x.toml").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        for r in Rules::builtin() {
            check_name(&r.name).unwrap();
            r.aliases.iter().for_each(|a| check_name(a).unwrap());
        }
    }

    #[test]
    fn load_refuses_what_is_not_a_small_regular_file() {
        let e = Rules::load(std::path::Path::new("/dev/zero")).unwrap_err();
        assert!(e.message.contains("not a regular file"), "{e}");
        let dir = std::env::temp_dir().join(format!("zdfuzz-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = Rules::load(&dir).unwrap_err();
        assert!(e.message.contains("not a regular file"), "{e}");
        let big = dir.join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_RULES_FILE as usize + 1]).unwrap();
        let e = Rules::load(&big).unwrap_err();
        assert!(e.message.contains("larger than"), "{e}");
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, b"name = \"x\"\nbase = \"e1\xff\"\n").unwrap();
        let e = Rules::load(&bad).unwrap_err();
        assert_eq!((e.line, e.col), (2, 11), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn presets_encode_the_init_rc_table() {
        // docs/model.md §3.1 (`init_rc / free_rc` rows): init rc per era and type
        let rc = |p: &str, t: DeviceType| Rules::preset(p).unwrap().of(t).init_rc;
        for t in DeviceType::DEFAULT {
            assert_eq!(rc("e1", t), 1);
            assert_eq!(rc("e2", t), 1);
        }
        assert_eq!(rc("e3", DeviceType::Private), 0);
        assert_eq!(rc("e3", DeviceType::Fsdax), 1);
        assert_eq!(rc("e4", DeviceType::Fsdax), 0);
        assert_eq!(rc("e4", DeviceType::P2pdma), 0);
        assert_eq!(rc("e4", DeviceType::Generic), 1);
        assert_eq!(rc("p20", DeviceType::Private), 0);
        let e3 = Rules::preset("e3").unwrap();
        assert!(!e3.types.private.init_pgmap_refs);
        assert!(e3.types.fsdax.init_pgmap_refs);
        assert_eq!(e3.private.alloc_pgmap_ref, AllocPgmapRef::TrygetLive);
        let e1 = Rules::preset("e1").unwrap();
        assert_eq!(e1.types.generic.memunmap_put, MemunmapPut::EveryPage);
        assert!(e1.types.private.free_on_2to1 && e1.types.fsdax.wake_on_2to1);
        let p20 = Rules::preset("p20").unwrap();
        assert!(p20.types.generic.memunmap_put == MemunmapPut::PutMany && !p20.types.generic.put_pgmap_on_zero);
    }

    #[test]
    fn regression_presets_differ_from_their_fix_in_a_few_switches() {
        assert_eq!(Rules::regression_names().len(), 8);
        for bug in Rules::regressions() {
            let fixed_in = bug.base.as_deref().unwrap_or_else(|| panic!("{} has no base", bug.name));
            let fixed = Rules::preset(fixed_in).unwrap();
            let differ: Vec<String> = bug
                .describe()
                .into_iter()
                .zip(fixed.describe())
                .filter(|(a, b)| a.1 != b.1)
                .map(|(a, _)| a.0)
                .collect();
            assert!(!differ.is_empty() && differ.len() <= 13, "{}: {differ:?}", bug.name);
            assert!(fixed.fix.is_none(), "{} is fixed in another regression preset", bug.name);
            assert!(!Rules::preset_names().contains(&bug.name.as_str()), "{} shadows an era", bug.name);
        }
    }

    /// The preset files load (a broken one would leave `builtin()` empty),
    /// each era names its kernel, and aliases are not inherited.
    #[test]
    fn every_builtin_file_loads() {
        assert!(builtin().is_ok(), "{:?}", builtin().as_ref().err());
        assert_eq!(Rules::preset_names(), ["e1", "e2", "e3", "e4", "e5", "p20"]);
        assert_eq!(Rules::preset("e2").unwrap().aliases, ["v5.18"]);
        assert_eq!(Rules::preset("e1").unwrap().base, None);
        let mine = Rules::from_toml_str("name = \"x\"\nbase = \"v6.1\"\n", "x.toml").unwrap();
        assert!(mine.aliases.is_empty() && mine.fix.is_none() && mine.base.as_deref() == Some("v6.1"));
        assert_eq!(mine.describe(), Rules::preset("e3").unwrap().describe());
        // a complete file needs no base; it is the same format as e1.toml
        let full = Rules::preset("e1").unwrap().to_toml();
        assert_eq!(Rules::from_toml_str(&full, "full.toml").unwrap(), Rules::preset("e1").unwrap());
        assert_eq!(DEFAULT_PRESET, "e3");
        assert!(Rules::resolve("no-such").unwrap_err().message.contains("not a .toml file"));
        assert_eq!(Rules::resolve("/no/such.toml").unwrap_err().line, 0);
    }

    #[test]
    fn aliases_resolve() {
        assert_eq!(Rules::preset("v6.1").unwrap().name, "e3");
        assert_eq!(Rules::preset("v5.10").unwrap().name, "e1");
        assert!(Rules::preset("e9").is_none());
    }

    #[test]
    fn toml_overrides_a_base() {
        let text = "name = \"p2p-per-page\"\nbase = \"e1\"\ndescription = \"seed remark\"\n\n[types.p2pdma]\ninit_rc = 0\n\n[p2p]\nalloc_sets_rc = true\n";
        let r = Rules::from_toml_str(text, "x.toml").unwrap();
        assert_eq!(r.name, "p2p-per-page");
        assert_eq!(r.base.as_deref(), Some("e1"));
        assert_eq!(r.types.p2pdma.init_rc, 0);
        assert!(r.p2p.alloc_sets_rc);
        assert_eq!(r.types.generic, Rules::preset("e1").unwrap().types.generic);
    }

    #[test]
    fn toml_errors_name_line_and_problem() {
        let e =
            Rules::from_toml_str("name = \"x\"\nbase = \"e1\"\n[types.private]\ninit_rcc = 0\n", "f.toml").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("f.toml", 4), "{e}");
        assert!(e.message.contains("unknown switch `types.private.init_rcc`"), "{e}");
        let e = Rules::from_toml_str("name = \"x\"\nbase = \"e1\"\n[p2p]\nalloc_sets_rc = 3\n", "f.toml").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("must be a boolean"), "{e}");
        let e = Rules::from_toml_str("name = \"x\"\nbase = \"e7\"\n", "f.toml").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unknown base preset"), "{e}");
        let e = Rules::from_toml_str("name = \"x\"\nbase = \n", "f.toml").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = Rules::from_toml_str("base = \"e1\"\n", "f.toml").unwrap_err();
        assert!(e.message.contains("missing `name"), "{e}");
        let e = Rules::from_toml_str(
            "name = \"x\"\nbase = \"e1\"\n[types.private]\nmemunmap_put = \"sometimes\"\n",
            "f.toml",
        )
        .unwrap_err();
        assert!(e.message.contains("sometimes"), "{e}");
    }

    #[test]
    fn every_switch_is_documented_and_round_trips() {
        for name in Rules::preset_names() {
            let r = Rules::preset(name).unwrap();
            for (k, _, doc) in r.describe() {
                assert!(!doc.is_empty(), "switch {k} has no documentation");
            }
            let text = r.to_toml();
            let back: Rules = toml::from_str(&text).unwrap();
            assert_eq!(back, r);
        }
    }
}
