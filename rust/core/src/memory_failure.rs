//! memory_failure() on a ZONE_DEVICE page: a hardware memory error (a
//! machine check, or `hwpoison-inject`'s `corrupt-pfn`) on device memory.
//!
//! Mirrors mm/memory-failure.c as of v6.1 (the same shape since
//! 6100e34b2526, v4.19, "mm, memory_failure: Teach memory_failure() about
//! dev_pagemap pages"):
//!
//! * `memory_failure(pfn)` finds no online page (`pfn_to_online_page` is
//!   NULL for ZONE_DEVICE), so it looks the pgmap up with
//!   `get_dev_pagemap(pfn, NULL)` — an `xa_load` under `rcu_read_lock()`,
//!   then `percpu_ref_tryget_live` — and answers -ENXIO ("memory outside
//!   kernel control") if there is none or it is dying;
//! * `memory_failure_dev_pagemap` → `mf_generic_kill_procs` (v5.19+; the
//!   same body was inline before): `dax_lock_page` reads `page->mapping`
//!   and gives up with -EBUSY when it is not a DAX mapping (a free or
//!   unassociated FS-DAX block, a P2P page); MEMORY_DEVICE_PRIVATE and
//!   COHERENT pages are refused (-ENXIO); otherwise `SetPageHWPoison`,
//!   `collect_procs` and `unmap_and_kill` → `unmap_mapping_range` over the
//!   file range: every user mapping of the page goes;
//! * the handler ends with `put_dev_pagemap(pgmap)` ("drop pgmap ref
//!   acquired in caller").
//!
//! The pgmap reference is what keeps the struct page (and, says the comment
//! in `dax_lock_page`, the device-dax inode) alive while the handler reads
//! it: an unbind's `memunmap_pages` waits for it. The what-if
//! `pgmap.memory_failure_gets_pgmap = false` drops it, and the handler can
//! then read a page an unbind tore down (I-L3).
//!
//! Not modelled: the signals (`kill_procs` sends SIGBUS; the model's
//! processes keep running and may fault the page in again), `PageHWPoison`
//! (a later FS-DAX fault would fail with -EIO from the badblocks list; the
//! model maps the page again), the filesystems' `->notify_failure` (xfs,
//! v6.0+; ext4 has none and takes the generic path modelled here), and
//! memory_failure on system RAM. `mf_mutex` serialises calls: one at a time.

use crate::machine::{ok, Machine};
use crate::page::{is_file_mapping, MAPPING_NONE};
use crate::program::op::Op;
use crate::rules::DeviceType;
use crate::sched::TaskKind;

/// Steps of the memory_failure task.
pub const MF_LOOKUP: u8 = 0;
pub const MF_TRYGET: u8 = 1;
pub const MF_HANDLE: u8 = 2;

impl Machine {
    /// Is `MemoryFailure` allowed now?
    pub(crate) fn memory_failure_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.layout.faults, "this shape injects no faults (config faults=1 turns them on)")?;
        ok(op.a(0) < self.layout.ndev, "memory_failure on system RAM is not modelled (only the ZONE_DEVICE path)")?;
        ok(self.free_task_slot(), "no free task slot")?;
        ok(!self.memory_failure_running(), "mf_mutex: one memory_failure at a time")
    }

    pub(crate) fn memory_failure_running(&self) -> bool {
        self.s.tasks.iter().flatten().any(|t| matches!(t.kind, TaskKind::MemoryFailure { .. }))
    }

    /// Run step `pc` of memory_failure(pfn); the next step and the pgmap
    /// found, or None when it returns.
    pub(crate) fn memory_failure_step(&mut self, p: usize, found: usize, pc: u8, cpu: usize) -> Option<(u8, usize)> {
        match pc {
            MF_LOOKUP => match self.get_dev_pagemap_lookup(p, 0, cpu) {
                Some(g) => Some((MF_TRYGET, g)),
                None => {
                    self.trace_note(|| "memory_failure: memory outside kernel control -> -ENXIO".into());
                    None
                }
            },
            MF_TRYGET => {
                if !self.rules.pgmap.memory_failure_gets_pgmap {
                    // the what-if: leave rcu_read_lock() with the pgmap
                    // pointer but no reference on it
                    self.trace_note(|| format!("memory_failure: pgmap {found} without a reference (what-if)"));
                    return Some((MF_HANDLE, found));
                }
                if self.get_dev_pagemap_ref(found, cpu, "memory_failure: get_dev_pagemap") {
                    self.s.ledger.inflight_pgmap_refs[found] += 1;
                    Some((MF_HANDLE, found))
                } else {
                    self.trace_note(|| "memory_failure: get_dev_pagemap -> NULL (dying) -> -ENXIO".into());
                    None
                }
            }
            _ => {
                self.memory_failure_dev_pagemap(p, found, cpu);
                if self.rules.pgmap.memory_failure_gets_pgmap {
                    self.s.ledger.inflight_pgmap_refs[found] -= 1;
                    self.pgmap_put(found, cpu, 1, "memory_failure: put_dev_pagemap");
                }
                None
            }
        }
    }

    /// mf_generic_kill_procs: lock the DAX entry through `page->mapping`,
    /// refuse device-private/coherent pages, unmap every user mapping.
    fn memory_failure_dev_pagemap(&mut self, p: usize, g: usize, cpu: usize) {
        // pfn_to_page + compound_head + READ_ONCE(page->mapping): the handler
        // reads the struct page (I-L3 if it is gone)
        if self.page_torn_down(p, "memory_failure_dev_pagemap") {
            return;
        }
        self.touch_page(p);
        // dax_lock_page: a device-dax page's mapping is the device's inode,
        // set at its first fault and never cleared before v6.15 (a page never
        // faulted in would give -EBUSY, with nothing to unmap either); an
        // FS-DAX page has one while a file owns the block; nothing else has
        // a DAX mapping
        let t = self.layout.pgmap_type[g];
        let dax = t == DeviceType::Generic || (t == DeviceType::Fsdax && is_file_mapping(self.s.mapping[p]));
        if !dax {
            let why = if self.s.mapping[p] == MAPPING_NONE { "NULL" } else { "not a DAX mapping" };
            self.trace_note(|| format!("dax_lock_page: page->mapping {why} -> -EBUSY"));
            return;
        }
        // (MEMORY_DEVICE_PRIVATE/COHERENT pages are refused after the lock
        // with -ENXIO; their mapping is never a DAX one, so the model's
        // dax_lock_page has already refused them)
        self.trace_note(|| format!("memory_failure: SetPageHWPoison(pfn {p}), unmap_mapping_range, SIGBUS"));
        self.zap_pfn_mappings(p, cpu);
    }
}
