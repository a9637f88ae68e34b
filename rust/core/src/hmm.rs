//! `hmm_range_fault`: a device-private driver snapshots a process's page
//! table for its device's mirror, without taking page references.
//!
//! Mirrors mm/hmm.c (v6.1, `hmm_vma_handle_pte`/`hmm_vma_handle_pmd`) and
//! its callers' loop (lib/test_hmm.c `dmirror_range_snapshot`, nouveau's
//! `nouveau_range_fault`):
//!
//! ```text
//! range->notifier_seq = mmu_interval_read_begin(range->notifier);
//! mmap_read_lock(mm); ret = hmm_range_fault(range); mmap_read_unlock(mm);
//! mutex_lock(&driver->mutex);
//! if (mmu_interval_read_retry(range->notifier, range->notifier_seq))
//!         { mutex_unlock(); retry; }
//! ... program the device's page table from range->hmm_pfns ...
//! mutex_unlock(&driver->mutex);
//! ```
//!
//! The walk takes no reference on any page (since "mm/hmm: remove pgmap
//! checking for devmap pages", 068354ade5dd, v5.7): what keeps the device
//! from using a page the CPU has since unmapped, migrated or freed is the
//! mmu interval notifier — every change to the range bumps its sequence, and
//! the driver checks it under the lock its invalidate callback also takes.
//! So the snapshot is a task of two steps: the walk at the spawn (it records
//! what it saw), then the driver's `mmu_interval_read_retry` and its use of
//! the snapshot. Any change of the entry in between is a notifier
//! invalidation: the driver retries (-EBUSY, the program may call again).
//! The what-if `private.hmm_checks_retry = false` uses the snapshot anyway,
//! and the oracle reports a device mapping of a page the CPU no longer maps
//! there (I-H1).
//!
//! Per entry, without HMM_PFN_REQ_FAULT (the snapshot mode of test_hmm's
//! `HMM_DMIRROR_SNAPSHOT`): a present entry (PTE, or a PMD: the pfn of the
//! address within the folio) gives its pfn and write bit; a device-private
//! entry gives its pfn only when its pgmap is the caller's
//! (`pgmap->owner == range->dev_private_owner`), else 0; a migration entry or
//! a hole gives 0 — nothing for the device to map, and no task.
//!
//! With HMM_PFN_REQ_FAULT (`hmm_fault`: test_hmm's `dmirror_fault` for a
//! device read, nouveau's `nouveau_range_fault`), an entry the walk cannot
//! report is faulted in first (`hmm_vma_fault` → `handle_mm_fault`, the CPU's
//! own fault path): a hole gets an anonymous page (`do_anonymous_page`), and
//! the walk goes on and reports it — filling an empty PTE invalidates no
//! range, so `hmm_range_fault`'s loop re-walks instead of returning; another
//! owner's device-private entry takes `do_swap_page` (the fault task, whose
//! `migrate_to_ram` invalidates the range), so the call returns -EBUSY and
//! the driver retries later; a migration entry is waited out
//! (`migration_entry_wait`) and the call returns -EBUSY. A read fault only
//! (HMM_PFN_REQ_WRITE is not modelled: a read-only present entry is reported
//! as it is).
//!
//! Before v5.7 (992de9a8b751, v5.1, to 068354ade5dd) the walk took
//! `get_dev_pagemap` on every devmap PTE (FS-DAX, device-dax), failing with
//! -EBUSY on a dying pgmap. It is not a switch here: the model's unbind
//! zaps every devmap mapping before its `percpu_ref_kill` and faults refuse a
//! dying device, so the walk can never find a devmap PTE of a dying pgmap —
//! the argument of 068354ade5dd itself ("rely entirely on the notifiers"),
//! which `tests/hmm.rs` checks on random programs.

use crate::machine::{ok, Machine};
use crate::pagetable::Pte;
use crate::program::op::Op;
use crate::rules::DeviceType;
use crate::sched::TaskKind;

/// What the walk reports for one address: (pfn, writable), or None (0).
pub type Snapshot = Option<(usize, bool)>;

impl Machine {
    /// Is `HmmRangeFault` allowed now? The driver of a bound device-private
    /// pgmap walks a live process's range under `mmap_read_lock` (beside
    /// faults and migrations; the walk reads PTEs without the PTL).
    pub(crate) fn hmm_range_fault_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let g = op.a(2);
        ok(self.layout.pgmap_type[g] == DeviceType::Private, "not a device-private pgmap (HMM mirrors)")?;
        ok(self.pgmap_live(g), "the driver is not bound")?;
        ok(self.s.alive[op.a(0)], "no such process")?;
        ok(self.free_task_slot(), "no free task slot")
    }

    /// What `hmm_vma_handle_pte`/`_pmd` report for (proc, addr) to the
    /// driver of pgmap `owner`.
    pub(crate) fn hmm_view(&self, proc: usize, addr: usize, owner: usize) -> Snapshot {
        // (a PMD's entry comes back resolved to the subpage of addr)
        match self.entry(proc, addr).0 {
            Pte::Present { pfn, write, .. } => Some((pfn as usize, write)),
            Pte::DevicePrivate { pfn, write } => {
                (self.layout.pgmap_of(pfn as usize) == owner).then_some((pfn as usize, write))
            }
            Pte::Migration { .. } | Pte::None => None,
        }
    }

    /// `hmm_range_fault` on one address for the driver of pgmap `owner`:
    /// the walk, then (if it found a page) the driver's task.
    pub(crate) fn hmm_range_fault(&mut self, proc: usize, addr: usize, owner: usize, cpu: usize) {
        let seen = self.hmm_view(proc, addr, owner);
        let Some((p, write)) = seen else {
            self.trace_note(|| "hmm_range_fault: no valid pfn (hole, migration entry or another owner's page)".into());
            return;
        };
        self.touch_page(p);
        self.trace_note(|| {
            format!("hmm_range_fault -> pfn {p}{} (no reference taken)", if write { " write" } else { "" })
        });
        self.spawn(
            TaskKind::HmmRangeFault { proc: proc as u8, addr: addr as u16, owner: owner as u8, pfn: p as u16, write },
            cpu,
        );
    }

    /// Is `HmmFault` allowed now? As `hmm_range_fault`, and a hole is
    /// faulted in only where the CPU's anonymous fault could run (the
    /// process's mmap_lock and the address's PTL free).
    pub(crate) fn hmm_fault_enabled(&self, op: &Op) -> Result<(), &'static str> {
        self.hmm_range_fault_enabled(op)?;
        if self.entry(op.a(0), op.a(1)).0 == Pte::None {
            self.mm_ok(op.a(0), op.a(1))?;
        }
        Ok(())
    }

    /// `hmm_range_fault` with HMM_PFN_REQ_FAULT on one address for the
    /// driver of pgmap `owner` (`hmm_vma_handle_pte`'s `required_fault`
    /// paths, then `hmm_vma_fault`).
    pub(crate) fn hmm_fault(&mut self, proc: usize, addr: usize, owner: usize, cpu: usize) {
        match self.entry(proc, addr).0 {
            Pte::None => {
                self.trace_note(|| "hmm_vma_fault: handle_mm_fault on the hole -> do_anonymous_page".into());
                if self.ram_fit(0).is_none() {
                    // VM_FAULT_OOM is a VM_FAULT_ERROR: hmm_vma_fault fails
                    self.trace_note(|| "no free system RAM: VM_FAULT_OOM -> -EFAULT".into());
                    return;
                }
                self.do_anonymous_page(proc, addr);
                // no invalidation: the walk goes on and reports the page
                self.hmm_range_fault(proc, addr, owner, cpu);
            }
            Pte::DevicePrivate { pfn, .. } if self.layout.pgmap_of(pfn as usize) != owner => {
                self.trace_note(|| {
                    "hmm_vma_fault: another owner's device-private page -> do_swap_page; \
                     migrate_to_ram invalidates the range, so hmm_range_fault returns -EBUSY and the driver retries"
                        .into()
                });
                self.spawn_fault(proc, addr, cpu);
            }
            Pte::Migration { .. } => {
                self.trace_note(|| "migration_entry_wait, then -EBUSY (retry)".into());
            }
            _ => self.hmm_range_fault(proc, addr, owner, cpu),
        }
    }

    /// The driver's step: `mmu_interval_read_retry` under its mutex, then
    /// the device's page table programmed from the snapshot.
    pub(crate) fn hmm_commit(&mut self, proc: usize, addr: usize, owner: usize, p: usize, write: bool) {
        let now = self.hmm_view(proc, addr, owner);
        let stale = now != Some((p, write));
        if stale && self.rules.private.hmm_checks_retry {
            self.trace_note(|| "mmu_interval_read_retry: the range was invalidated -> -EBUSY (retry)".into());
            return;
        }
        self.observe(crate::oracle::Obs::DeviceMapped { proc, addr, pfn: p, write, now });
    }
}
