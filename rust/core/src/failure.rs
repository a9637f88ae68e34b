//! Failure injection: kernel calls that can fail, failing when the program
//! says so.
//!
//! The kernel's error paths are where reference counts go wrong most
//! quietly: a function takes a reference, something after it fails, and the
//! `goto out` that should put the reference back does not (v6.2's
//! `p2pmem_alloc_mmap` returned from a failed `vm_insert_page` still holding
//! the chunk's `pgmap->ref`, and the device's unbind then waited forever —
//! fixed by commit 6220694c52a5, "PCI/P2PDMA: Release per-CPU pgmap ref when
//! vm_insert_page() fails"). To reach those paths the program arms a site
//! with `fail_next site=S nth=N`: the N-th next call at S fails, the way a
//! fault-injection framework (`fail_page_alloc`, `failslab`) makes one call
//! fail. A site is armed at most once at a time. Only shapes with
//! `faults=1` allow it, so the state space of every other shape is the one
//! without failures.
//!
//! Sites (the call that fails, and what its callers do about it):
//! - `vm_insert`: `vm_insert_page` (`p2pmem_alloc_mmap`) and
//!   `vmf_insert_*` (the device-dax and FS-DAX fault handlers): -ENOMEM or
//!   -EBUSY, VM_FAULT_OOM / VM_FAULT_SIGBUS; nothing is mapped.
//! - `try_grab`: GUP's `try_grab_folio` (mm/gup.c), which refuses when the
//!   refcount would overflow: -ENOMEM; GUP undoes what it took.

use crate::machine::{ok, Machine};
use crate::program::op::{Op, SITE_NAMES};

impl Machine {
    /// `fail_next`: arm `site` so that its `nth` next call fails.
    pub(crate) fn fail_next(&mut self, site: usize, nth: usize) {
        self.s.armed[site] = nth as u8;
    }

    /// Called where the kernel calls a function that can fail: does this
    /// call fail? Consumes one call of an armed site.
    pub(crate) fn inject(&mut self, site: u16) -> bool {
        let a = &mut self.s.armed[site as usize];
        if *a == 0 {
            return false;
        }
        *a -= 1;
        if *a > 0 {
            return false;
        }
        self.trace_note(|| format!("injected failure: {}", SITE_NAMES[site as usize]));
        true
    }

    /// Is `FailNext` allowed now?
    pub(crate) fn fail_next_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.layout.faults, "this shape injects no failures (config faults=1 turns them on)")?;
        ok(self.s.armed[op.a(0)] == 0, "a failure is already armed at this site")
    }
}
