//! Every invariant the oracle can report, made to fire and shown quiet.
//!
//! For each id in [`INVARIANTS`] there is an entry in [`FIRES`]: a short
//! `.zdf` program and the rules under which it breaks that invariant — a
//! built-in preset, or an inline TOML preset that flips one switch to
//! reproduce a buggy design — with the class and a fragment of the message
//! the violation must carry. Each entry has its own `*_fires` test and, where
//! the same program is valid under a preset whose design is right, a
//! `*_quiet` test that runs it there and expects a clean verdict.
//!
//! Three ids belong to percpu_ref itself and no machine action can produce
//! them: I-R2 (double release), I-R4 (kill/reinit/resurrect/switch misuse)
//! and I-R7 (use after exit) — the comments in [`FIRES`] say why. They are
//! covered by checking that the percpu_ref events carrying the id map to it;
//! the events themselves are made to fire by the unit tests in
//! `src/percpu_ref.rs`. I-R8 (exit during a pending switch) looked like one
//! of them but is reachable: an unbind that does not wait for pgmap->ref.
//!
//! [`every_invariant_has_a_fires_test`] keeps [`FIRES`] and [`INVARIANTS`]
//! in step: adding an invariant without a test here fails it.
#![cfg(not(loom))]

use proptest::prelude::*;
use std::collections::BTreeSet;
use zdfuzz_core::oracle::Invariant;
use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::{Class, Config, Machine, RefEvent, Rules, StepError, Verdict};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// Where the rules of a case come from.
#[derive(Clone, Copy, Debug)]
enum Src {
    /// a built-in preset by name
    Preset(&'static str),
    /// inline TOML overriding a base preset
    Toml(&'static str),
}

impl Src {
    fn rules(self) -> Rules {
        match self {
            Src::Preset(p) => Rules::preset(p).unwrap_or_else(|| panic!("no preset {p}")),
            Src::Toml(t) => Rules::from_toml_str(t, "inline.toml").unwrap_or_else(|e| panic!("{e}")),
        }
    }
}

/// How an invariant is made to fire.
#[derive(Clone, Copy, Debug)]
enum How {
    /// run `program` under `rules`: the verdict must report the id, with
    /// `class`, and a message containing `message`
    Program { rules: Src, program: &'static str, class: Class, message: &'static str },
    /// no machine action can produce it: these percpu_ref events carry the id
    RefEvents(&'static [RefEvent]),
    /// no built-in preset reaches a state that breaks it first (another
    /// invariant reports the bug earlier): `make` builds such a state by
    /// hand; its verdict must report the id with `class` and `message`
    Injected { make: fn() -> Verdict, class: Class, message: &'static str },
}

#[derive(Clone, Copy, Debug)]
struct Fires {
    id: &'static str,
    how: How,
}

fn run_as(text: &str, rules: Rules) -> Result<Verdict, (usize, StepError)> {
    let p = parse_program(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut m = Machine::new(Config::with_shape(rules, p.shape.clone())).unwrap();
    m.set_tracing(true);
    m.run(&p.ops)
}

fn run(text: &str, rules: Rules) -> Verdict {
    run_as(text, rules).unwrap_or_else(|(i, e)| panic!("op {i} of\n{text}\nis rejected: {e}"))
}

fn show(v: &Verdict) -> String {
    let mut s = format!("violation: {:?}\nconformance: {:?}\n", v.violation, v.conformance);
    for t in &v.trace {
        s += &format!("{:>3} {} {:?} {:?}\n", t.step, t.action, t.changes, t.notes);
    }
    s
}

/// Run every case of `id` and check each fires as described.
fn fires(id: &str) {
    let mut n = 0;
    for case in FIRES.iter().filter(|c| c.id == id) {
        check_fires(case);
        n += 1;
    }
    assert!(n > 0, "no FIRES entry for {id}");
}

fn check_fires(case: &Fires) {
    match case.how {
        How::Program { rules, program, class, message } => {
            let v = run(program, rules.rules());
            let got = match class {
                Class::Conformance => v.conformance.as_ref(),
                Class::Safety | Class::Liveness => v.violation.as_ref(),
            };
            let got = got.unwrap_or_else(|| panic!("{} did not fire\n{}", case.id, show(&v)));
            assert_eq!(got.invariant.id(), case.id, "{}", show(&v));
            assert_eq!(got.class(), class, "{}", show(&v));
            assert!(
                got.message.contains(message),
                "{}: message {:?} lacks {:?}\n{}",
                case.id,
                got.message,
                message,
                show(&v)
            );
            let inv = Invariant::from_id(case.id).unwrap_or_else(|| panic!("{} is not an invariant", case.id));
            assert!(!inv.doc().is_empty(), "{} has no documentation", case.id);
            assert_eq!(inv.class(), class, "{}: the class of a case is its invariant's", case.id);
        }
        How::Injected { make, class, message } => {
            let v = make();
            let got = v.violation.as_ref().unwrap_or_else(|| panic!("{} did not fire\n{}", case.id, show(&v)));
            assert_eq!(got.invariant.id(), case.id, "{}", show(&v));
            assert_eq!(got.class(), class, "{}", show(&v));
            assert!(got.message.contains(message), "{}: {:?} lacks {:?}", case.id, got.message, message);
        }
        How::RefEvents(events) => {
            assert!(!events.is_empty());
            for e in events {
                assert_eq!(e.invariant().id(), case.id, "{e:?} maps to {} not {}", e.invariant(), case.id);
                assert_eq!(RefEvent::from_name(e.name()), Some(*e));
            }
            // and these are all the events carrying the id
            let all: Vec<RefEvent> = RefEvent::ALL.into_iter().filter(|e| e.invariant().id() == case.id).collect();
            assert_eq!(all, events.to_vec(), "events carrying {}", case.id);
        }
    }
}

/// Run a firing program under rules whose design is right: clean verdict.
fn quiet(program: &str, preset: &str) {
    let v = run(program, Rules::preset(preset).unwrap());
    assert!(v.ok(), "under {preset}:\n{program}\n{}", show(&v));
}

// ---------------------------------------------------------------------------
// Programs and presets
// ---------------------------------------------------------------------------

/// The seed's P2P remark (as in scenarios.rs): P2P pages counted per page —
/// allocation raises each to 1, a page reaching 0 drops a pgmap reference —
/// while pci_alloc_p2pmem still takes one pgmap reference per allocation.
const P2P_PER_PAGE: &str = r#"
name = "p2p-per-page"
base = "p20"
description = "P2P pages refcounted per page, pgmap refs per allocation"
[types.p2pdma]
init_rc = 0
free_rc = 0
put_pgmap_on_zero = true
[p2p]
alloc_sets_rc = true
"#;

/// Two pages allocated and freed: the free drops three pgmap references
/// for the one the allocation took. pgmap->ref disagrees with the preset's
/// own accounting at once (I-P1); the unbind in the drain drives it below
/// zero (I-R1).
const P2P_TWO_PAGES: &str = "
config types=p2pdma
memremap_pages pgmap=0
pci_alloc_p2pmem pgmap=0 pages=2 cpu=0
pci_free_p2pmem pfn=0 cpu=1
";

/// The same, with the unbind stepped so that the fold comes before the
/// init references are dropped: the put_many itself goes below zero, which
/// nothing in the kernel notices (`atomic_long_sub_and_test`).
const P2P_PUT_BELOW_ZERO: &str = "
config types=p2pdma
memremap_pages pgmap=0
pci_alloc_p2pmem pgmap=0 pages=2 cpu=0
pci_free_p2pmem pfn=0 cpu=1
memunmap_pages pgmap=0 cpu=0
step task=0        # shut user access down
step task=0        # percpu_ref_kill
rcu_grace_period   # fold: 2 references left
step task=0        # drop the 4 init references
";

/// A one-page allocation is freed (two puts for one get) while a second one
/// is live; the unbind's init-reference drop then brings pgmap->ref to zero
/// exactly, and release runs under the live allocation (I-R3).
const P2P_RELEASE_UNDER_ALLOC: &str = "
config types=p2pdma
memremap_pages pgmap=0
pci_alloc_p2pmem pgmap=0 pages=1 cpu=0   # allocation A (pfn 0)
pci_alloc_p2pmem pgmap=0 pages=1 cpu=0   # allocation B (pfn 1), stays live
pci_free_p2pmem pfn=0 cpu=1              # A: one pgmap put too many
memunmap_pages pgmap=0 cpu=0
step task=0            # shut user access down
step task=0            # percpu_ref_kill
rcu_grace_period       # fold into atomic mode
step task=0            # drop the init references: count hits 0
step task=0
step task=0
";

/// Unbind without waiting for pgmap->ref (before 50f44ee7248a, v5.2): the
/// teardown's percpu_ref_exit comes while the kill's switch to atomic
/// still waits for its grace period.
const NO_WAIT: &str = r#"
name = "memunmap-no-wait"
base = "e3"
description = "memunmap_pages does not wait for pgmap->ref to reach zero"
[pgmap]
memunmap_waits = false
"#;

const UNBIND_NO_GRACE_PERIOD: &str = "
config types=generic
memremap_pages pgmap=0
memunmap_pages pgmap=0 cpu=0
step task=0   # shut user access down
step task=0   # percpu_ref_kill: the switch to atomic is pending
step task=0   # drop the init references
step task=0   # wait_for_completion (skipped by the buggy design)
step task=0   # teardown: percpu_ref_exit
";

/// A kernel user holds a get_dev_pagemap reference across the unbind; with
/// the grace period elapsed the exit itself is fine, but the struct pages go
/// while the kernel user still holds the pgmap (I-L2).
const UNBIND_UNDER_PGMAP_REF: &str = "
config types=generic
memremap_pages pgmap=0
get_dev_pagemap pfn=0 cpu=1
step task=0   # xa_load
step task=0   # tryget_live: the kernel user holds pgmap 0
memunmap_pages pgmap=0 cpu=0
step task=0   # shut user access down
step task=0   # percpu_ref_kill
rcu_grace_period
step task=0   # drop the init references
step task=0   # wait_for_completion
step task=0   # teardown
";

/// The seed's Q1 with a pin instead of a reference: under P20 (RFC [1])
/// memunmap_pages does not wait for a pinned device-dax page.
const Q1_PIN: &str = "
config types=generic
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=1 cpu=0
pin_user_pages proc=0 addr=0 flags=0 cpu=1
memunmap_pages pgmap=0 cpu=0
step task=0   # shut user access down (kill_dev_dax)
step task=0   # percpu_ref_kill
step task=0   # drop init refs
rcu_grace_period
step task=0   # wait_for_completion
step task=0   # teardown
";

/// Teardown without synchronize_rcu.
const NO_RCU_SYNC: &str = r#"
name = "teardown-no-rcu-sync"
base = "e3"
description = "pageunmap_range does not wait for RCU readers of pgmap_array"
[pgmap]
teardown_syncs_rcu = false
"#;

/// The unbind has dropped every reference and its grace period has passed
/// when a get_dev_pagemap lookup finds the pgmap (xa_load, inside
/// rcu_read_lock); the teardown completes, then the lookup does its tryget
/// on the freed pgmap.
const LOOKUP_ACROSS_TEARDOWN: &str = "
config types=generic
memremap_pages pgmap=0
memunmap_pages pgmap=0 cpu=0  # task 0
step task=0   # shut user access down
step task=0   # percpu_ref_kill
step task=0   # drop the init references
rcu_grace_period              # the ref reaches zero: release
get_dev_pagemap pfn=0 cpu=1   # task 1
step task=1                   # xa_load: still finds pgmap 0, now in the RCU read section
step task=0   # wait_for_completion
step task=0   # teardown (synchronize_rcu would wait for task 1 here)
step task=1   # tryget on the pgmap memunmap_pages freed
";

/// memory_failure without its get_dev_pagemap reference (a what-if: every
/// kernel since 6100e34b2526 holds one across the handler).
const MF_NO_PGMAP_REF: &str = r#"
name = "memory-failure-no-pgmap-ref"
base = "e4"
description = "memory_failure runs its ZONE_DEVICE handler without a pgmap reference"
[pgmap]
memory_failure_gets_pgmap = false
"#;

/// A hardware memory error on a mapped device-dax page; the lookup has
/// found the pgmap when the unbind runs to its teardown; then the handler
/// reads the page. With the reference the unbind's wait holds the teardown
/// until the handler has put it.
const MF_ACROSS_TEARDOWN: &str = "
config types=generic pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=2 faults=1
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
memory_failure pfn=0 cpu=0   # task 0
step task=0                  # xa_load
step task=0                  # tryget_live (or, in the what-if, nothing)
memunmap_pages pgmap=0 cpu=0 # task 1
step task=1                  # shut user access down
step task=1                  # percpu_ref_kill
step task=1                  # drop the init references
step task=0                  # memory_failure_dev_pagemap, put_dev_pagemap
";

/// The same, with the unbind's wait and teardown before the handler (a
/// grace period completes the kill's switch to atomic mode).
const MF_TEARDOWN_FIRST: &str = "
config types=generic pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=2 faults=1
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
memory_failure pfn=0 cpu=0   # task 0
step task=0                  # xa_load
step task=0                  # the what-if takes no reference
memunmap_pages pgmap=0 cpu=0 # task 1
step task=1                  # shut user access down
step task=1                  # percpu_ref_kill
step task=1                  # drop the init references
rcu_grace_period             # the ref reaches zero: release
step task=1                  # wait_for_completion
step task=1                  # teardown
step task=0                  # memory_failure_dev_pagemap reads the freed page
";

/// A driver that maps an HMM snapshot without checking
/// `mmu_interval_read_retry` (a what-if: every in-tree HMM user checks).
const HMM_NO_RETRY: &str = r#"
name = "hmm-no-retry-check"
base = "e4"
description = "the driver maps hmm_range_fault snapshots without mmu_interval_read_retry"
[private]
hmm_checks_retry = false
"#;

/// A driver snapshots its device-private page mapped at addr 0; the process
/// unmaps it before the driver uses the snapshot.
const HMM_STALE: &str = "
config types=private pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=2 ram=1
memremap_pages pgmap=0
do_anonymous_page proc=0 addr=0 cpu=0
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
step task=0
step task=0
step task=0
step task=0
step task=0
hmm_range_fault proc=0 addr=0 pgmap=0 cpu=0   # task 0: saw pfn 0
munmap proc=0 addr=0 cpu=0                    # the notifier invalidates the range
step task=0                                   # the driver maps what it saw
";

/// E1's generic row with memunmap_pages still putting every page but a page
/// reaching 0 no longer dropping its pgmap reference (half of RFC [1]): the
/// init references are never dropped and memunmap_pages waits forever.
const HALF_RFC1: &str = r#"
name = "half-rfc1"
base = "e1"
description = "memunmap_pages put_page()s every pfn, but 1->0 no longer puts the pgmap"
[types.generic]
put_pgmap_on_zero = false
"#;

const GENERIC_UNBIND: &str = "
config types=generic
memremap_pages pgmap=0
memunmap_pages pgmap=0 cpu=0
";

/// A driver that goes on allocating after it called memunmap_pages.
const ALLOC_WHILE_UNBINDING: &str = r#"
name = "alloc-while-unbinding"
base = "e3"
description = "the device-private driver may allocate after memunmap_pages"
[private]
alloc_while_unbinding = true
"#;

const ALLOC_AFTER_KILL: &str = "
config types=private
memremap_pages pgmap=0
memunmap_pages pgmap=0 cpu=0
step task=0                   # shut user access down
step task=0                   # percpu_ref_kill
alloc_device_page pgmap=0 cpu=1
";

/// E4 leaves kernel-allocated P2P pages at refcount 0; a kernel user that
/// still takes page references (sg_page + get_page) raises a free page.
const E4_P2P_KERNEL_GET_PAGE: &str = r#"
name = "e4-p2p-kernel-get-page"
base = "e4"
description = "E4 P2P (0-based) with kernel users taking page references"
[p2p]
kernel_get_page = true
"#;

/// A what-if with 0-based device-dax pages under E1's memunmap_pages, which
/// still puts every page's initial reference: the put goes below zero.
const E1_ZERO_BASED_GENERIC: &str = r#"
name = "e1-zero-based-generic"
base = "e1"
description = "E1 with 0-based device-dax pages: memunmap_pages' put_page has no reference to drop"
[types.generic]
init_rc = 0
free_rc = 0
"#;

const GENERIC_UNBIND_IDLE: &str = "
config types=generic pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1
memremap_pages pgmap=0
memunmap_pages pgmap=0 cpu=0
step task=0                   # shut user access down
step task=0                   # percpu_ref_kill
step task=0                   # drop init refs: put_page on a page at 0
";

const P2P_KERNEL_GET_PAGE: &str = "
config types=p2pdma
memremap_pages pgmap=0
pci_alloc_p2pmem pgmap=0 pages=1 cpu=0
get_page pfn=0
put_page pfn=0 by=kernel cpu=1
pci_free_p2pmem pfn=0 cpu=0
";

/// The free path forgets to clear page->mapping (before the 2019 fix
/// "mm/hmm: fix ZONE_DEVICE anon page mapping reuse").
const STALE_MAPPING: &str = r#"
name = "stale-mapping"
base = "e3"
description = "device-private free path leaves page->mapping set"
[private]
free_clears_mapping = false
"#;

const PRIVATE_REUSE: &str = "
config types=private procs=2
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0                # pfn 0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
munmap proc=0 addr=0 cpu=0                     # last reference: page_free
alloc_device_page pgmap=0 cpu=0                # pfn 0 again
migrate_vma_insert_page proc=1 addr=0 pfn=0 cpu=0
";

/// The same with 6.12's `__folio_set_anon`, which sets the VMA's anon_vma
/// whatever the page held: the stale mapping is overwritten.
const STALE_MAPPING_SET_ANON: &str = r#"
name = "stale-mapping-set-anon"
base = "e3"
description = "stale page->mapping, but folio_add_new_anon_rmap always sets it"
[private]
free_clears_mapping = false
[migrate]
new_anon_rmap_keeps_anon = false
"#;

/// A process maps a device-private page; a driver evicts its pgmap with
/// `migrate_device_range` (no mmap_lock); the process exits between the
/// eviction's unmap and its finalize, which walks the anon_vma the exit
/// freed (I-M10; docs/findings.md).
const RANGE_EVICT_EXIT: &str = "
config types=private pgmaps=1 pages=2 cpus=2 procs=1 addrs=2 tasks=2 ram=2 order=0
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
migrate_device_range pgmap=0 cpu=0
step task=0                                    # collect, try_to_migrate
exit_mmap proc=0 cpu=0                         # zaps the migration entry, frees the anon_vma
step task=0
step task=0
step task=0
step task=0
";

/// The eviction of RANGE_EVICT_EXIT without the exit: the process faults
/// the page back through its migration entry's restore.
const RANGE_EVICT: &str = "
config types=private pgmaps=1 pages=2 cpus=2 procs=2 addrs=2 tasks=2 ram=2 order=0
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
exit_mmap proc=1 cpu=0
fork proc=0 child=1
exit_mmap proc=0 cpu=0
migrate_device_range pgmap=0 cpu=0
step task=0
step task=0
step task=0
step task=0
step task=0
";

/// A generic row whose free refcount disagrees with its initial one.
const BAD_FREE_RC: &str = r#"
name = "bad-free-rc"
base = "e3"
description = "inconsistent: generic pages start at 1 but are said to be free at 0"
[types.generic]
free_rc = 0
"#;

const GENERIC_REGISTER: &str = "
config types=generic
memremap_pages pgmap=0
";

/// An E1 device-private driver that forgets the get_page on allocation: the
/// finalize's put takes the page 2->1, which E1 reads as "idle again" and
/// hands to page_free while the process still maps it.
const E1_NO_ALLOC_GET: &str = r#"
name = "e1-no-alloc-get"
base = "e1"
description = "E1 devmap-managed put with a driver that does not get_page on allocation"
[private]
alloc_get_page = false
"#;

const PRIVATE_MIGRATE: &str = "
config types=private
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
";

/// An E3 zone_device_page_init that still takes E1's get_page: every
/// allocation leaves one page reference behind.
const E3_ALLOC_GET: &str = r#"
name = "e3-alloc-get"
base = "e3"
description = "E3 zone_device_page_init plus the E1 driver's get_page"
[private]
alloc_get_page = true
"#;

const PRIVATE_ALLOC_FREE: &str = "
config types=private
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
free_device_page pfn=0 cpu=0
";

/// dax_layout_busy_page_range returning early when the file is not mapped
/// (fixed by cee91fa13a8e, v6.15).
const BUSY_SCAN_NEEDS_MAPPING: &str = r#"
name = "busy-scan-needs-mapping"
base = "e4"
description = "the DAX busy scan skips files without user mappings"
[dax]
busy_scan_needs_mapping = true
"#;

/// Device-dax pages that reach refcount 0 on E2 (no page_free: the free
/// path WARNs and leaves the page at 0): here by making the mapping hold the
/// only reference.
const DEVDAX_ZERO_BASED_E2: &str = r#"
name = "devdax-zero-based-e2"
base = "e2"
description = "device-dax pages 0-based with refcounted mappings on E2's free path"
[types.generic]
init_rc = 0
free_rc = 0
map_refcounted = true
"#;

/// An FS-DAX file whose extent is PMD-sized: the fault maps it with one
/// PMD (v6.15: a compound folio, one reference), the unmap takes it to 0.
const FSDAX_PMD_MAP_UNMAP: &str = "
config types=fsdax pgmaps=1 pages=2 cpus=1 procs=1 addrs=2 files=1 file_pages=1 tasks=1 order=1 fsdax_pmd=1
memremap_pages pgmap=0
dax_associate_entry file=0 index=0 pfn=0
dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0
munmap proc=0 addr=1 cpu=0
";

const DEVDAX_MAP_UNMAP: &str = "
config types=generic
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
munmap proc=0 addr=0 cpu=0
";

/// A GUP reference on a DAX page outlives the mapping it came from; the
/// file is then truncated.
const DAX_TRUNCATE_UNDER_GUP: &str = "
config types=fsdax
memremap_pages pgmap=0
dax_associate_entry file=0 index=0 pfn=0
dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0
get_user_pages proc=0 addr=0 flags=0 cpu=1    # e.g. O_DIRECT / RDMA
munmap proc=0 addr=0 cpu=0                    # the file is no longer mapped
truncate file=0 index=0 cpu=0                 # task 0
step task=0   # dax_layout_busy_page_range
step task=0   # free block (or: wait for the busy page)
";

const LONGTERM_GRANTED: &str = r#"
name = "fsdax-longterm"
base = "e3"
description = "GUP grants FOLL_LONGTERM pins of FS-DAX pages"
[dax]
longterm_refused = false
"#;

const DAX_LONGTERM_PIN: &str = "
config types=fsdax
memremap_pages pgmap=0
dax_associate_entry file=0 index=0 pfn=0
dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0
pin_user_pages proc=0 addr=0 flags=FOLL_LONGTERM cpu=1
";

const PIN_BIAS_1: &str = r#"
name = "pin-bias-1"
base = "e3"
description = "pins counted like plain references"
[gup]
pin_bias = 1
"#;

const DEVDAX_PIN: &str = "
config types=generic
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
pin_user_pages proc=0 addr=0 flags=0 cpu=1
";

const GUP_DEVICE_PRIVATE: &str = r#"
name = "gup-device-private"
base = "e3"
description = "GUP follows device-private entries"
[gup]
refuses_device_private = false
"#;

const PRIVATE_GUP: &str = "
config types=private
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
get_user_pages proc=0 addr=0 flags=0 cpu=1
";

const GUP_PINS_COHERENT: &str = r#"
name = "gup-pins-coherent"
base = "e4"
description = "FOLL_LONGTERM GUP forgets that coherent pages are not longterm-pinnable"
[gup]
longterm_migrates_coherent = false
"#;

/// Anonymous memory migrated into a coherent page, then pinned for long.
const COHERENT_LONGTERM_PIN: &str = "
config types=coherent ram=2
memremap_pages pgmap=0
do_anonymous_page proc=0 addr=0 cpu=0
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
step task=0
step task=0
step task=0
step task=0
step task=0
pin_user_pages proc=0 addr=0 flags=FOLL_LONGTERM cpu=1
";

const P2P_NO_FLAG: &str = r#"
name = "p2p-gup-no-flag"
base = "e3"
description = "GUP returns P2P pages without FOLL_PCI_P2PDMA (before v6.2)"
[p2p]
gup_needs_flag = false
"#;

const P2P_GUP_NO_FLAG: &str = "
config types=p2pdma
memremap_pages pgmap=0
p2pmem_alloc_mmap pgmap=0 proc=0 addr=0 pages=1 cpu=0
get_user_pages proc=0 addr=0 flags=0 cpu=1
";

const P2P_PIN_LONGTERM: &str = "
config types=p2pdma
memremap_pages pgmap=0
p2pmem_alloc_mmap pgmap=0 proc=0 addr=0 pages=1 cpu=0
pin_user_pages proc=0 addr=0 flags=FOLL_LONGTERM|FOLL_PCI_P2PDMA cpu=1
";

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Migration, the device-private fault, THP and data (docs/model.md §9)
// ---------------------------------------------------------------------------

/// A pinned anonymous page that a driver tries to migrate to its memory;
/// the device DMA-writes the pinned page after the driver's copy.
const PIN_THEN_MIGRATE: &str = "
config types=private pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 tasks=4 ram=4 order=1
memremap_pages pgmap=0
do_anonymous_page proc=0 addr=0 cpu=0
pin_user_pages proc=0 addr=0 flags=0 cpu=0
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
step task=0      # collect
step task=0      # unmap: the pre-filter
step task=0      # alloc + copy
dma_write pfn=4  # the pinned page is written after the copy
step task=0      # migrate_vma_pages: the exact gate
step task=0      # finalize
";

/// What if migration ignored references it cannot explain.
const NO_MIGRATION_CHECKS: &str = r#"
name = "no-migration-checks"
base = "e4"
description = "what-if: migrate_vma_check_page and folio_migrate_mapping ignore extra references"
[migrate]
check_system = false
exact_gate = false
"#;

/// A device page mapped by a process and its fork, migrated back to RAM:
/// try_to_migrate handles the child's mapping.
const PRIVATE_FORKED_EVICT: &str = "
config types=private pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 tasks=4 ram=4 order=1
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
exit_mmap proc=1 cpu=0
fork proc=0 child=1
migrate_vma_setup proc=0 addr=0 pgmap=0 select=DEVICE_PRIVATE cpu=0
step task=0
step task=0
step task=0
step task=0
step task=0
";

/// The bug 1de13ee59225 fixed (v5.3, docs/coverage.md #4): try_to_unmap_one took the
/// pfn of a device-private swap entry for a present PTE's.
const BAD_SUBPAGE: &str = r#"
name = "bad-subpage"
base = "e1"
description = "before 'mm/hmm: Fix bad subpage pointer in try_to_unmap_one' (v5.3)"
[migrate]
unmap_subpage_fix = false
"#;

/// Two anonymous pages; page 4 migrates to the device. Before its finalize a
/// migration entry for page 5 — which no migration holds — is written into
/// process 1's page table by hand: finalize must find it (I-M3).
fn stray_migration_entry() -> Verdict {
    let text = "
config types=private pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 tasks=4 ram=4 order=1
memremap_pages pgmap=0
do_anonymous_page proc=0 addr=0 cpu=0
do_anonymous_page proc=1 addr=0 cpu=0
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
step task=0
step task=0
step task=0
step task=0
";
    let p = parse_program(text).unwrap();
    let mut m = Machine::new(Config::with_shape(Rules::preset("e4").unwrap(), p.shape.clone())).unwrap();
    for op in &p.ops {
        m.step(op).unwrap();
    }
    assert!(m.violation().is_none());
    let slot = m.layout.pte_slot(1, 0);
    assert_eq!(m.s.ptes[slot].pfn(), Some(5));
    m.s.ptes[slot] = zdfuzz_core::pagetable::Pte::Migration { pfn: 5, kind: zdfuzz_core::pagetable::MigKind::Read };
    m.step(&parse_program("step task=0").unwrap().ops[0]).unwrap();
    m.finish();
    m.verdict()
}

/// A device-private page mapped by process 0, whose `mapping` is set by
/// hand to process 1's anon_vma; process 0 migrates it back to RAM.
fn wrong_anon_vma() -> Verdict {
    let text = "
config types=private pgmaps=1 pages=2 cpus=2 procs=2 addrs=2 tasks=2 ram=2 order=0
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
";
    let p = parse_program(text).unwrap();
    let mut m = Machine::new(Config::with_shape(Rules::preset("e4").unwrap(), p.shape.clone())).unwrap();
    for op in &p.ops {
        m.step(op).unwrap();
    }
    assert!(m.violation().is_none());
    assert_eq!(m.s.mapping[0], zdfuzz_core::page::anon_mapping(0));
    m.s.mapping[0] = zdfuzz_core::page::anon_mapping(1);
    let rest = "migrate_vma_setup proc=0 addr=0 pgmap=0 select=DEVICE_PRIVATE cpu=0\n".to_string()
        + &"step task=0\n".repeat(5);
    for op in &parse_program(&format!("config types=private\n{rest}")).unwrap().ops {
        if m.violation().is_some() {
            break;
        }
        m.step(op).unwrap();
    }
    m.finish();
    m.verdict()
}

/// A CPU fault on a device-private page, stepped through migrate_to_ram.
const FAULT_MIGRATE: &str = "
config types=private pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 tasks=4 ram=4 order=1
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
do_swap_page proc=0 addr=0 cpu=1
step task=0   # read orig_pte
step task=0   # PTL + pte_same (E3+)
step task=0   # (trylock +) get_page, unlock PTL
step task=0   # migrate_to_ram: collect
step task=0   # unmap
step task=0   # alloc + copy
step task=0   # migrate_vma_pages
step task=0   # finalize
step task=0   # (unlock +) put_page
";

/// Half of 1afaeb8293c9 (v6.15): the fault path locks the page and collect
/// leaves it, but finalize still unlocks it.
const HALF_TRYLOCK_FINALIZE_UNLOCKS: &str = r#"
name = "trylock-half-a"
base = "e4"
description = "v6.15 fault path and collect, pre-v6.15 finalize"
[migrate]
finalize_skips_fault_page = false
"#;

/// The other half: collect locks the fault page as in v6.1, finalize
/// leaves it locked for a fault path that never locked it.
const HALF_TRYLOCK_FINALIZE_SKIPS: &str = r#"
name = "trylock-half-b"
base = "e3"
description = "v6.1 fault path and collect, v6.15 finalize"
[migrate]
finalize_skips_fault_page = true
"#;

/// The 2022 race (16ce101db85d): the fault reads the device-private entry,
/// the driver migrates the page back to RAM and frees it, then the fault
/// calls migrate_to_ram on it.
const FAULT_RACE: &str = "
config types=private pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 tasks=4 ram=4 order=1
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
do_swap_page proc=0 addr=0 cpu=1                                   # task 0: CPU 1 faults
step task=0                                                        # reads orig_pte
migrate_vma_setup proc=0 addr=0 pgmap=0 select=DEVICE_PRIVATE cpu=0 # task 1: the driver evicts the page
step task=1
step task=1
step task=1
step task=1
step task=1                                                        # finalize: page_free(pfn 0)
step task=0                                                        # E3+: pte_same fails; E1/E2: migrate_to_ram
";

/// The pte_same failure exit without the PTL unlock.
const BAIL_KEEPS_PTL: &str = r#"
name = "bail-keeps-ptl"
base = "e3"
description = "what-if: the pte_same exit of do_swap_page leaves the PTL locked"
[fault]
bail_unlocks_ptl = false
"#;

/// Two threads fault the same device page at once (left to the drain).
const TWO_FAULTS: &str = "
config types=private pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 tasks=4 ram=4 order=1
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
do_swap_page proc=0 addr=0 cpu=0
do_swap_page proc=0 addr=0 cpu=1
";

/// A dirty anonymous page migrated to device memory.
/// A written (dirty-PTE) anonymous page whose migration fails: a GUP
/// reference the migration cannot account for makes migrate_vma_check_page
/// refuse, and the page is mapped back (fd35ca3d12cc: "migration will fail
/// due to unexpected references but the dirty pte bit will be lost"). The
/// three steps are collect, (before v6.0) the TLB flush, and unmap, whose
/// check refuses the page; where the flush is part of collect the third is
/// the copy, after the refusal too.
const DIRTY_MIGRATION_FAILS: &str = "
config types=private pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 tasks=4 ram=4 order=1
memremap_pages pgmap=0
do_anonymous_page proc=0 addr=0 cpu=0
cpu_write proc=0 addr=0 cpu=0
get_user_pages proc=0 addr=0 flags=0 cpu=1
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
step task=0
step task=0
step task=0
put_page pfn=4 by=gup cpu=1
";

const DIRTY_TO_DEVICE: &str = "
config types=private pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 tasks=4 ram=4 order=1
memremap_pages pgmap=0
do_anonymous_page proc=0 addr=0 cpu=0
cpu_write proc=0 addr=0 cpu=0
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
step task=0
step task=0
step task=0
step task=0
step task=0
";

/// A clean anonymous page migrated to device memory (the source is freed
/// at finalize).
const ANON_TO_DEVICE: &str = "
config types=private pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 tasks=4 ram=4 order=1
memremap_pages pgmap=0
do_anonymous_page proc=0 addr=0 cpu=0
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
step task=0
step task=0
step task=0
step task=0
step task=0
";

/// A large device-private folio mapped by a PMD, then split.
const DEVICE_THP_SPLIT: &str = "
config types=private pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 tasks=4 ram=4 order=1
memremap_pages pgmap=0
alloc_device_folio pgmap=0 cpu=0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
split_huge_page pfn=0 cpu=0
";

/// The 2020 THP patch's split (tails unfrozen at 2, get_many(nr - 1))
/// without its can_split change, which otherwise refuses every split of a
/// 0-based device page.
const P20_TAILS_AT_2: &str = r#"
name = "p20-tails-at-2"
base = "p20"
description = "the 2020 split without the extra can_split pin"
[thp]
can_split_extra_pin = false
"#;

/// mbind walks the PMD of a device-private THP.
const DEVICE_THP_MBIND: &str = "
config types=private pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 tasks=4 ram=4 order=1
memremap_pages pgmap=0
alloc_device_folio pgmap=0 cpu=0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
mbind proc=0 addr=0 cpu=0
";

/// v6.19 as merged (docs/coverage.md #14, fixed 2026, Fixes: 368076f52ebe).
const E5_WALKERS: &str = r#"
name = "e5-v6.19-walkers"
base = "e5"
description = "v6.19 as merged: PMD walkers take a device-private PMD for a present THP"
[thp]
walkers_know_device_pmd = false
"#;

/// A large device folio freed, then one of its pages handed out alone.
const DEVICE_FOLIO_REUSE: &str = "
config types=private pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 tasks=4 ram=4 order=1
memremap_pages pgmap=0
alloc_device_folio pgmap=0 cpu=0
free_device_page pfn=0 cpu=0
alloc_device_page pgmap=0 cpu=0
";

/// An order-0 device-private page freed, its free path left after
/// `->folio_free()` (with the window open), and the page reallocated as
/// the tail of an order-1 folio before the path reads `folio->pgmap`.
const FREED_PAGE_REUSED_AS_TAIL: &str = "
config types=private pgmaps=1 pages=2 cpus=1 procs=1 addrs=1 tasks=1 ram=0 order=1
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
alloc_device_page pgmap=0 cpu=0
free_device_page pfn=1 cpu=0
free_device_page pfn=0 cpu=0
alloc_device_folio pgmap=0 cpu=0
step task=0
";

/// v6.19 as merged for the free path's late read only (docs/coverage.md
/// #13b, fixed by 85be0a262e39).
const E5_LATE_PGMAP_READ: &str = r#"
name = "e5-late-pgmap-read"
base = "e5"
description = "v6.19 as merged: folio->pgmap read after ->folio_free()"
[thp]
free_rereads_pgmap = true
"#;

/// v6.19 as merged (docs/coverage.md #13, fixed 2026, Fixes: d245f9b4ab80).
const E5_NO_PREPARE: &str = r#"
name = "e5-no-prepare"
base = "e5"
description = "v6.19 as merged: no free_zone_device_folio_prepare"
[thp]
free_prepare = false
"#;

/// A pinned anonymous page, a fork, a parent write, a DMA write.
const PIN_FORK_WRITE: &str = "
config types=private pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 tasks=4 ram=4 order=1
do_anonymous_page proc=0 addr=0 cpu=0
pin_user_pages proc=0 addr=0 flags=0 cpu=0
exit_mmap proc=1 cpu=0
fork proc=0 child=1
cpu_write proc=0 addr=0 cpu=0
dma_write pfn=4
cpu_write proc=0 addr=0 cpu=0
";

/// Before "mm: Do early cow for pinned pages during fork()" (v5.9).
const FORK_SHARES_PINNED: &str = r#"
name = "gup-cow-pre-v5.9"
base = "e1"
description = "fork shares a pinned page copy-on-write"
[gup]
fork_copies_pinned = false
"#;

const fn fire(id: &'static str, rules: Src, program: &'static str, class: Class, message: &'static str) -> Fires {
    Fires { id, how: How::Program { rules, program, class, message } }
}

use Class::{Conformance, Liveness, Safety};
use Src::{Preset, Toml};

/// One way to make each invariant fire (more than one entry per id is fine).
const FIRES: &[Fires] = &[
    fire("I-R1", Toml(P2P_PER_PAGE), P2P_TWO_PAGES, Safety, "percpu_ref_switch_to_atomic_rcu: underflow"),
    fire("I-R1", Toml(P2P_PER_PAGE), P2P_PUT_BELOW_ZERO, Safety, "memunmap_pages: percpu_ref_put_many: put_below_zero"),
    // No machine action makes pgmap->ref hit zero twice in one init cycle:
    // after release only get_many can raise a zero count, and its callers
    // (memremap_pages on an unused pgmap, p2pmem_alloc_mmap on a live one)
    // never run on a killed ref; every tryget is add-unless-zero. A put at
    // zero is I-R1 (put_below_zero), not a second release.
    Fires { id: "I-R2", how: How::RefEvents(&[RefEvent::DoubleRelease]) },
    fire(
        "I-R3",
        Toml(P2P_PER_PAGE),
        P2P_RELEASE_UNDER_ALLOC,
        Safety,
        "released while 0 get_dev_pagemap reference(s) and 1 P2P allocation(s)",
    ),
    // The machine kills each pgmap once per registration (memunmap_pages is
    // enabled only on a live pgmap, memremap_pages only on an unused one) and
    // never calls reinit, resurrect or switch_to_percpu.
    Fires {
        id: "I-R4",
        how: How::RefEvents(&[
            RefEvent::DoubleKill,
            RefEvent::ReinitNotZero,
            RefEvent::ResurrectNotDead,
            RefEvent::ResurrectPercpu,
            RefEvent::SwitchPercpuNoReinit,
        ]),
    },
    // Every pgmap get/put/tryget goes through a guard that reports I-L3
    // (touch after teardown) before the ref is used, and percpu_ref_exit
    // runs exactly at the teardown: a use after exit is always reported as
    // I-L3 first.
    Fires { id: "I-R7", how: How::RefEvents(&[RefEvent::UseAfterExit]) },
    // I-R8 *is* reachable: see UNBIND_NO_GRACE_PERIOD.
    fire("I-R8", Toml(NO_WAIT), UNBIND_NO_GRACE_PERIOD, Safety, "memunmap_pages: percpu_ref_exit: exit_during_switch"),
    Fires { id: "I-R8", how: How::RefEvents(&[RefEvent::ExitDuringSwitch]) },
    fire("I-P1", Toml(P2P_PER_PAGE), P2P_TWO_PAGES, Conformance, "the references the preset accounts for"),
    fire("I-L2", Toml(NO_WAIT), UNBIND_UNDER_PGMAP_REF, Safety, "1 kernel user(s) hold pgmap references"),
    fire("I-L2", Preset("p20"), Q1_PIN, Safety, "still held by 1 GUP pin(s)"),
    fire(
        "I-L3",
        Toml(NO_RCU_SYNC),
        LOOKUP_ACROSS_TEARDOWN,
        Safety,
        "get_dev_pagemap touches pgmap 0 after memunmap_pages freed it",
    ),
    fire(
        "I-L3",
        Toml(MF_NO_PGMAP_REF),
        MF_TEARDOWN_FIRST,
        Safety,
        "memory_failure_dev_pagemap touches pfn 0 after memunmap_pages tore pgmap 0 down",
    ),
    fire("I-H1", Toml(HMM_NO_RETRY), HMM_STALE, Safety, "from a stale hmm_range_fault snapshot"),
    fire(
        "I-L4",
        Toml(HALF_RFC1),
        GENERIC_UNBIND,
        Liveness,
        "hang: memunmap_pages(pgmap=0) at \"wait_for_completion\" never completes",
    ),
    fire(
        "I-L5",
        Toml(ALLOC_WHILE_UNBINDING),
        ALLOC_AFTER_KILL,
        Safety,
        "allocated after memunmap_pages killed pgmap 0",
    ),
    fire(
        "I-F1",
        Toml(E4_P2P_KERNEL_GET_PAGE),
        P2P_KERNEL_GET_PAGE,
        Safety,
        "get_page takes a reference on pfn 0 whose refcount is 0",
    ),
    fire(
        "I-F1",
        Toml(E1_ZERO_BASED_GENERIC),
        GENERIC_UNBIND_IDLE,
        Safety,
        "put_page drops pfn 0's refcount below zero (0 - 1)",
    ),
    fire(
        "I-F2",
        Toml(STALE_MAPPING),
        PRIVATE_REUSE,
        Safety,
        "folio_add_new_anon_rmap maps pfn 0 into process 1, but page->mapping still names the anon_vma of process 0",
    ),
    fire(
        "I-F5",
        Toml(BAD_FREE_RC),
        GENERIC_REGISTER,
        Conformance,
        "is free but its refcount is 1; the preset says free pages of this type have 0",
    ),
    fire(
        "I-F8",
        Toml(DEVDAX_ZERO_BASED_E2),
        DEVDAX_MAP_UNMAP,
        Safety,
        "takes pfn 0 (generic) to refcount 0: the free path WARNs",
    ),
    fire(
        "I-F11",
        Preset("v6.19-orig"),
        FSDAX_PMD_MAP_UNMAP,
        Safety,
        "takes the 2-page fsdax folio at pfn 0 to refcount 0: free_zone_device_folio WARNs",
    ),
    fire(
        "I-F9",
        Toml(E1_NO_ALLOC_GET),
        PRIVATE_MIGRATE,
        Safety,
        "page_free returns pfn 0 to its allocator while it is held by 1 mapping(s)",
    ),
    fire(
        "I-F10",
        Toml(E3_ALLOC_GET),
        PRIVATE_ALLOC_FREE,
        Liveness,
        "pfn 0's refcount is 1 after every holder released it; it started at 0 (1 reference(s) leaked)",
    ),
    // v5.10-v6.14 had this bug (fixed by cee91fa13a8e): e1-e3 fire as they are
    fire(
        "I-X2",
        Preset("e3"),
        DAX_TRUNCATE_UNDER_GUP,
        Safety,
        "truncate frees the block of file 0 index 0 (pfn 0) while it is held by 1 GUP reference(s)",
    ),
    fire(
        "I-X2",
        Toml(BUSY_SCAN_NEEDS_MAPPING),
        DAX_TRUNCATE_UNDER_GUP,
        Safety,
        "truncate frees the block of file 0 index 0 (pfn 0) while it is held by 1 GUP reference(s)",
    ),
    fire("I-X4", Toml(LONGTERM_GRANTED), DAX_LONGTERM_PIN, Safety, "FOLL_LONGTERM pin of FS-DAX pfn 0 was granted"),
    fire(
        "I-G1",
        Toml(PIN_BIAS_1),
        DEVDAX_PIN,
        Conformance,
        "pfn 0 has 1 pin(s) but refcount 2 < 1 x GUP_PIN_COUNTING_BIAS",
    ),
    fire("I-G3", Toml(GUP_DEVICE_PRIVATE), PRIVATE_GUP, Safety, "GUP returned device-private pfn 0"),
    fire(
        "I-G5",
        Toml(GUP_PINS_COHERENT),
        COHERENT_LONGTERM_PIN,
        Safety,
        "a FOLL_LONGTERM pin of coherent pfn 0 was granted",
    ),
    fire("I-G4", Toml(P2P_NO_FLAG), P2P_GUP_NO_FLAG, Safety, "GUP returned P2P pfn 0 without FOLL_PCI_P2PDMA"),
    fire("I-G4", Toml(P2P_NO_FLAG), P2P_PIN_LONGTERM, Safety, "GUP returned P2P pfn 0 for FOLL_LONGTERM"),
    fire(
        "I-F4",
        Toml(E5_NO_PREPARE),
        DEVICE_FOLIO_REUSE,
        Safety,
        "still carries the compound head 0 of an earlier order-1 folio",
    ),
    fire(
        "I-F3",
        Toml(E5_LATE_PGMAP_READ),
        FREED_PAGE_REUSED_AS_TAIL,
        Safety,
        "reallocated pfn 1 as a tail of the folio at pfn 0",
    ),
    fire("I-M1", Toml(E3_ALLOC_GET), PRIVATE_ALLOC_FREE, Conformance, "refcount is 2 but its holders account for 1"),
    fire(
        "I-M2",
        Toml(NO_MIGRATION_CHECKS),
        PIN_THEN_MIGRATE,
        Safety,
        "migrate_vma_pages migrates pfn 4 while it is held by 1 GUP pin(s)",
    ),
    // the 2019 bad-subpage bug left a migration entry behind, but the wild
    // pointer it came from is reported first now (I-M8); a stray entry is
    // made by hand
    Fires {
        id: "I-M3",
        how: How::Injected {
            make: stray_migration_entry,
            class: Safety,
            message: "a migration entry for pfn 5 survives migrate_vma_finalize",
        },
    },
    // an anonymous folio whose mapping names another process's anon_vma:
    // the walk of finalize's remove_migration_ptes never visits the
    // process whose migration entry it must remove (no preset reaches it
    // before I-F2 reports the stale mapping; set by hand)
    Fires {
        id: "I-M9",
        how: How::Injected {
            make: wrong_anon_vma,
            class: Safety,
            message: "remove_migration_ptes: the rmap walk of pfn 0 (page->mapping the anon_vma of process 1) never \
                      visits process 0",
        },
    },
    fire(
        "I-M10",
        Preset("e4"),
        RANGE_EVICT_EXIT,
        Safety,
        "remove_migration_ptes: the rmap walk for pfn 0 follows page->mapping to the anon_vma of process 0, which \
         no VMA is linked to any more",
    ),
    // before v5.3 try_to_unmap_one took a device-private entry's bits for a
    // present PTE's pfn (1de13ee59225): a wild struct page pointer
    fire(
        "I-M8",
        Toml(BAD_SUBPAGE),
        PRIVATE_FORKED_EVICT,
        Safety,
        "try_to_unmap_one computed the subpage of device-private pfn 0 from its swap entry",
    ),
    fire(
        "I-M4",
        Toml(HALF_TRYLOCK_FINALIZE_UNLOCKS),
        FAULT_MIGRATE,
        Safety,
        "the migration unlocks fault page 0, whose lock belongs to the fault path",
    ),
    // v5.10-v5.19 collect dropped the PTE dirty bit (fixed in v6.0); the
    // loss is on the failed path
    fire(
        "I-M5",
        Preset("e2"),
        DIRTY_MIGRATION_FAILS,
        Safety,
        "a dirty PTE of pfn 4 was replaced by a migration entry; the migration failed and pfn 4 is mapped back",
    ),
    // v5.10-v6.13 put the migrated-away source back on the LRU (41cddf83d8b0)
    fire(
        "I-M6",
        Preset("e3"),
        ANON_TO_DEVICE,
        Safety,
        "puts pfn 4 back on the LRU although its data was migrated away",
    ),
    fire(
        "I-M7",
        Toml(HALF_TRYLOCK_FINALIZE_SKIPS),
        FAULT_MIGRATE,
        Safety,
        "pfn 0 was locked by this migration and is still locked after finalize",
    ),
    // v5.10-v6.0: migrate_to_ram without a reference (16ce101db85d)
    fire(
        "I-D1",
        Preset("e2"),
        FAULT_RACE,
        Safety,
        "migrate_to_ram runs for pfn 0, which was freed after the fault read its entry",
    ),
    fire(
        "I-D1",
        Preset("e1"),
        FAULT_RACE,
        Safety,
        "migrate_to_ram runs for pfn 0, which was freed after the fault read its entry",
    ),
    fire("I-D2", Toml(BAIL_KEEPS_PTL), FAULT_RACE, Safety, "returns with a page-table lock still held"),
    // v6.1-v6.14: every faulting thread holds a reference (fixed by the
    // v6.15 trylock)
    fire("I-D3", Preset("e3"), TWO_FAULTS, Liveness, "livelock: 2 fault(s) on device-private pfn 0, 0 refault forever"),
    fire(
        "I-T2",
        Toml(P20_TAILS_AT_2),
        DEVICE_THP_SPLIT,
        Safety,
        "the split of folio 0 leaves its 2 pages with 3 references in all",
    ),
    fire(
        "I-T3",
        Toml(E5_WALKERS),
        DEVICE_THP_MBIND,
        Safety,
        "reads the device-private PMD entry for pfn 0 (process 0) as a present huge page",
    ),
    fire(
        "I-W1",
        Toml(FORK_SHARES_PINNED),
        PIN_FORK_WRITE,
        Safety,
        "lost write: before a CPU write, process 0 address 0 maps pfn 5",
    ),
    fire(
        "I-W2",
        Preset("e2"),
        DONTNEED_IN_COLLECT_WINDOW,
        Safety,
        "a CPU can still write pfn 1 through its stale TLB entry",
    ),
];

/// A migration's collect replaced the present PTE of address 0 and dropped
/// the page-table lock; a MADV_DONTNEED of the address runs before the
/// collect's TLB flush (the race 60bae7370896 closed in v6.0).
const DONTNEED_IN_COLLECT_WINDOW: &str = "
config types=private pgmaps=1 pages=1 cpus=2 procs=1 addrs=1 tasks=1 ram=1 order=0
memremap_pages pgmap=0
do_anonymous_page proc=0 addr=0 cpu=0
cpu_write proc=0 addr=0 cpu=1
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
step task=0
madvise_dontneed proc=0 addr=0 cpu=1
";

// ---------------------------------------------------------------------------
// Fires / quiet, one pair per invariant
// ---------------------------------------------------------------------------

#[test]
fn i_r1_fires() {
    fires("I-R1");
}

#[test]
fn i_r1_quiet() {
    quiet(P2P_TWO_PAGES, "e1");
    quiet(P2P_PUT_BELOW_ZERO, "e1");
    quiet(P2P_PUT_BELOW_ZERO, "e3");
}

#[test]
fn i_r2_fires() {
    fires("I-R2");
}

#[test]
fn i_r3_fires() {
    fires("I-R3");
}

#[test]
fn i_r3_quiet() {
    // E1: the unbind waits for allocation B, freed in the drain
    quiet(P2P_RELEASE_UNDER_ALLOC, "e1");
    quiet(P2P_RELEASE_UNDER_ALLOC, "e3");
}

#[test]
fn i_r4_fires() {
    fires("I-R4");
}

#[test]
fn i_r7_fires() {
    fires("I-R7");
}

#[test]
fn i_r8_fires() {
    fires("I-R8");
}

#[test]
fn i_r8_quiet() {
    // the wait and teardown steps block until the drain's grace period
    quiet(UNBIND_NO_GRACE_PERIOD, "e3");
}

#[test]
fn i_p1_fires() {
    fires("I-P1");
}

#[test]
fn i_p1_quiet() {
    quiet(P2P_TWO_PAGES, "e1");
    quiet(P2P_TWO_PAGES, "e4");
}

#[test]
fn i_l2_fires() {
    fires("I-L2");
}

#[test]
fn i_l2_quiet() {
    quiet(UNBIND_UNDER_PGMAP_REF, "e3");
    quiet(Q1_PIN, "e1");
}

#[test]
fn i_h1_fires() {
    fires("I-H1");
}

#[test]
fn i_h1_quiet() {
    // the driver's mmu_interval_read_retry sees the invalidation and retries
    // (e4 and e5: the migration into the device reaches e1-e3's I-M6 first)
    for era in ["e4", "e5"] {
        quiet(HMM_STALE, era);
    }
}

#[test]
fn i_l3_fires() {
    fires("I-L3");
}

#[test]
fn i_l3_quiet() {
    // synchronize_rcu holds the teardown until the lookup's tryget_live,
    // which fails on the killed pgmap
    quiet(LOOKUP_ACROSS_TEARDOWN, "e3");
    // memory_failure's reference holds the unbind's teardown back
    for era in ["e1", "e3", "e4", "e5"] {
        quiet(MF_ACROSS_TEARDOWN, era);
    }
}

#[test]
fn i_l4_fires() {
    fires("I-L4");
}

#[test]
fn i_l4_quiet() {
    quiet(GENERIC_UNBIND, "e1");
    quiet(GENERIC_UNBIND, "p20");
}

#[test]
fn i_l5_fires() {
    fires("I-L5");
}

#[test]
fn i_l5_quiet() {
    // Under e3 the driver's contract forbids the allocation: the program is
    // rejected at that action, not run.
    let err = run_as(ALLOC_AFTER_KILL, Preset("e3").rules()).unwrap_err();
    assert_eq!(err.0, 4, "{err:?}");
    assert!(matches!(err.1, StepError::NotEnabled(why) if why.contains("not bound")), "{err:?}");
    // the same program without the late allocation is clean
    let without: String =
        ALLOC_AFTER_KILL.lines().filter(|l| !l.starts_with("alloc_device_page")).collect::<Vec<_>>().join("\n");
    quiet(&without, "e3");
    // and under the permissive contract an allocation before the kill is
    // still fine: the page's pgmap reference holds the unbind until it is freed
    let before_kill = "
config types=private
memremap_pages pgmap=0
memunmap_pages pgmap=0 cpu=0
step task=0                   # shut user access down
alloc_device_page pgmap=0 cpu=1
step task=0                   # percpu_ref_kill
";
    let v = run(before_kill, Toml(ALLOC_WHILE_UNBINDING).rules());
    assert!(v.ok(), "{}", show(&v));
}

#[test]
fn i_f1_fires() {
    fires("I-F1");
}

#[test]
fn i_f1_quiet() {
    // E3 kernel-allocated P2P pages idle at 1: get/put bounce 1->2->1
    quiet(P2P_KERNEL_GET_PAGE, "e3");
    quiet(P2P_KERNEL_GET_PAGE, "e1");
}

#[test]
fn i_f2_fires() {
    fires("I-F2");
}

#[test]
fn i_f2_quiet() {
    quiet(PRIVATE_REUSE, "e3");
    quiet(PRIVATE_REUSE, "e4");
    // 6.12's __folio_set_anon overwrites the stale mapping
    let v = run(PRIVATE_REUSE, Src::Toml(STALE_MAPPING_SET_ANON).rules());
    assert!(v.ok(), "{}", show(&v));
}

#[test]
fn i_f5_fires() {
    fires("I-F5");
}

#[test]
fn i_f5_quiet() {
    quiet(GENERIC_REGISTER, "e3");
}

#[test]
fn i_f9_fires() {
    fires("I-F9");
}

#[test]
fn i_f9_quiet() {
    quiet(PRIVATE_MIGRATE, "e1");
}

#[test]
fn i_f10_fires() {
    fires("I-F10");
    // the preset is inconsistent with itself, which the conformance checks
    // see first: the allocated page has one reference more than its holders
    // account for (I-M1)
    let v = run(PRIVATE_ALLOC_FREE, Toml(E3_ALLOC_GET).rules());
    assert_eq!(v.conformance.as_ref().map(|c| c.invariant.id()), Some("I-M1"), "{}", show(&v));
}

#[test]
fn i_f10_quiet() {
    quiet(PRIVATE_ALLOC_FREE, "e3");
    // E1 drivers do take the get_page: the refcount is 1-based there
    quiet(PRIVATE_ALLOC_FREE, "e1");
}

#[test]
fn i_f8_fires() {
    fires("I-F8");
}

#[test]
fn i_f8_quiet() {
    quiet(DEVDAX_MAP_UNMAP, "e2");
    quiet(DEVDAX_MAP_UNMAP, "e4");
}

#[test]
fn i_f11_fires() {
    fires("I-F11");
}

#[test]
fn i_f11_quiet() {
    // with the fix that exempts FS-DAX, and in the eras before the WARN
    // (v6.15 has the compound folio; E1-E3 map a devmap PMD without a
    // reference)
    for era in ["e5", "e4", "e3", "e1"] {
        quiet(FSDAX_PMD_MAP_UNMAP, era);
    }
}

#[test]
fn i_x2_fires() {
    fires("I-X2");
}

#[test]
fn i_x2_quiet() {
    // v6.15 scans unmapped files too: the truncate waits until the drain's put
    quiet(DAX_TRUNCATE_UNDER_GUP, "e4");
}

#[test]
fn i_x4_fires() {
    fires("I-X4");
}

#[test]
fn i_x4_quiet() {
    quiet(DAX_LONGTERM_PIN, "e3");
    quiet(DAX_LONGTERM_PIN, "e4");
}

#[test]
fn i_g1_fires() {
    fires("I-G1");
}

#[test]
fn i_g1_quiet() {
    quiet(DEVDAX_PIN, "e3");
}

#[test]
fn i_g3_fires() {
    fires("I-G3");
}

#[test]
fn i_g3_quiet() {
    quiet(PRIVATE_GUP, "e3");
}

#[test]
fn i_g5_fires() {
    fires("I-G5");
}

#[test]
fn i_g5_quiet() {
    // GUP moves the page to system RAM and pins the copy (v6.0+)
    quiet(COHERENT_LONGTERM_PIN, "e4");
    quiet(COHERENT_LONGTERM_PIN, "e5");
}

#[test]
fn i_g4_fires() {
    fires("I-G4");
}

#[test]
fn i_g4_quiet() {
    quiet(P2P_GUP_NO_FLAG, "e3");
    quiet(P2P_PIN_LONGTERM, "e3");
}

#[test]
fn i_f4_fires() {
    fires("I-F4");
}

#[test]
fn i_f4_quiet() {
    quiet(DEVICE_FOLIO_REUSE, "e5");
}

#[test]
fn i_f3_fires() {
    fires("I-F3");
}

/// With the fix the free path is one step (the program's last action is no
/// action at all there), and what runs before it is clean; without it, a
/// page reallocated as an order-0 head still holds its pgmap in that word.
#[test]
fn i_f3_quiet() {
    let without_step = FREED_PAGE_REUSED_AS_TAIL.trim_end().trim_end_matches("step task=0");
    quiet(without_step, "e5");
    // (the lowest free page goes first: pfn 0, then pfn 1 again)
    let as_head = without_step.replace(
        "alloc_device_folio pgmap=0 cpu=0",
        "alloc_device_page pgmap=0 cpu=0\nalloc_device_page pgmap=0 cpu=0",
    );
    quiet(&format!("{as_head}\nstep task=0\n"), "v6.19-orig");
}

#[test]
fn i_m1_fires() {
    fires("I-M1");
}

#[test]
fn i_m1_quiet() {
    for p in BUILTIN {
        quiet(PRIVATE_ALLOC_FREE, p);
    }
}

#[test]
fn i_m2_fires() {
    fires("I-M2");
}

#[test]
fn i_m2_quiet() {
    // the pre-filter (system pages) refuses a pinned page in every era
    for p in BUILTIN {
        quiet(PIN_THEN_MIGRATE, p);
    }
}

#[test]
fn i_m3_fires() {
    fires("I-M3");
}

#[test]
fn i_m8_fires() {
    fires("I-M8");
}

#[test]
fn i_m8_quiet() {
    for p in BUILTIN {
        quiet(PRIVATE_FORKED_EVICT, p);
    }
}

#[test]
fn i_m3_quiet() {
    for p in BUILTIN {
        quiet(PRIVATE_FORKED_EVICT, p);
    }
}

#[test]
fn i_m9_fires() {
    fires("I-M9");
}

#[test]
fn i_m9_and_i_m10_quiet() {
    for p in BUILTIN {
        quiet(PRIVATE_FORKED_EVICT, p);
        quiet(FAULT_MIGRATE, p);
    }
    // the parent's page is found through the child's link to the parent's
    // anon_vma after the parent exited
    for p in ["e3", "e4", "e5"] {
        quiet(RANGE_EVICT, p);
    }
}

#[test]
fn i_m10_fires() {
    fires("I-M10");
}

/// The freed anon_vma is a finding of every era with `migrate_device_range`
/// (nothing in mm/migrate_device.c holds the anon_vma); the same program
/// without the exit is clean (RANGE_EVICT above).
#[test]
fn i_m10_in_every_era_with_device_range() {
    for p in ["e3", "e4", "e5"] {
        let v = run(RANGE_EVICT_EXIT, Rules::preset(p).unwrap());
        assert_eq!(v.violation.as_ref().map(|x| x.invariant.id()), Some("I-M10"), "{p}\n{}", show(&v));
    }
}

#[test]
fn i_m4_fires() {
    fires("I-M4");
}

#[test]
fn i_m4_quiet() {
    quiet(FAULT_MIGRATE, "e4");
    quiet(FAULT_MIGRATE, "e5");
}

#[test]
fn i_m5_fires() {
    fires("I-M5");
}

#[test]
fn i_m5_quiet() {
    quiet(DIRTY_MIGRATION_FAILS, "e3");
    quiet(DIRTY_MIGRATION_FAILS, "e4");
    // a successful migration loses nothing (the copy is a new page): even
    // e2's collect, which drops the dirty bit, is quiet about it
    let v = run(DIRTY_TO_DEVICE, Rules::preset("e2").unwrap());
    assert!(v.violation.as_ref().is_none_or(|x| x.invariant.id() != "I-M5"), "{}", show(&v));
    quiet(DIRTY_TO_DEVICE, "e4");
    // E3 has the dirty-bit fix but still the LRU bug of I-M6
    let v = run(DIRTY_TO_DEVICE, Rules::preset("e3").unwrap());
    assert_eq!(v.violation.as_ref().map(|x| x.invariant.id()), Some("I-M6"), "{}", show(&v));
}

#[test]
fn i_m6_fires() {
    fires("I-M6");
}

#[test]
fn i_m6_quiet() {
    quiet(ANON_TO_DEVICE, "e4");
    quiet(ANON_TO_DEVICE, "e5");
}

#[test]
fn i_m7_fires() {
    fires("I-M7");
}

#[test]
fn i_m7_quiet() {
    quiet(FAULT_MIGRATE, "e3");
    quiet(FAULT_MIGRATE, "e4");
}

#[test]
fn i_d1_fires() {
    fires("I-D1");
}

#[test]
fn i_d1_quiet() {
    // 16ce101db85d: the PTL + pte_same re-check sees the entry changed
    for p in ["e3", "e4", "e5"] {
        quiet(FAULT_RACE, p);
    }
}

#[test]
fn i_d2_fires() {
    fires("I-D2");
}

#[test]
fn i_d2_quiet() {
    quiet(FAULT_RACE, "e3");
}

#[test]
fn i_d3_fires() {
    fires("I-D3");
}

#[test]
fn i_d3_quiet() {
    // the v6.15 trylock: only the lock winner migrates
    quiet(TWO_FAULTS, "e4");
    quiet(TWO_FAULTS, "e5");
    // no reference at all: no livelock either (but the I-D1 race)
    quiet(TWO_FAULTS, "e2");
}

#[test]
fn i_t2_fires() {
    fires("I-T2");
}

#[test]
fn i_t2_quiet() {
    quiet(DEVICE_THP_SPLIT, "e5");
    // the whole 2020 patch refuses the split (its extra can_split pin)
    quiet(DEVICE_THP_SPLIT, "p20");
}

#[test]
fn i_t3_fires() {
    fires("I-T3");
}

#[test]
fn i_t3_quiet() {
    quiet(DEVICE_THP_MBIND, "e5");
}

#[test]
fn i_w1_fires() {
    fires("I-W1");
}

#[test]
fn i_w1_quiet() {
    for p in BUILTIN {
        quiet(PIN_FORK_WRITE, p);
    }
}

#[test]
fn i_w2_fires() {
    fires("I-W2");
}

/// With the flush under the PTL (v6.0 on) the collect is one step: the
/// MADV_DONTNEED comes after the flush. In the older eras the same call
/// after the flush step is quiet too.
#[test]
fn i_w2_quiet() {
    for p in ["e4", "e5"] {
        // e3 reaches I-M6 on this program (41cddf83d8b0), unrelated
        quiet(DONTNEED_IN_COLLECT_WINDOW, p);
    }
    let after_flush = DONTNEED_IN_COLLECT_WINDOW.replace("step task=0\n", "step task=0\nstep task=0\n");
    let v = run(&after_flush, Rules::preset("e2").unwrap());
    assert!(v.violation.as_ref().is_none_or(|x| x.invariant.id() != "I-W2"), "{}", show(&v));
}

/// A THP collected whole (MIGRATE_VMA_SELECT_COMPOUND): a MADV_DONTNEED of
/// its second address in the window names the subpage that address mapped.
#[test]
fn i_w2_names_the_subpage_of_a_huge_page_collected_whole() {
    let rules = Rules::from_toml_str(
        "name = \"e5-late-flush\"\nbase = \"e5\"\n[migrate]\ncollect_flush_after_unlock = true\n",
        "late-flush.toml",
    )
    .unwrap();
    let text = "
config types=private pgmaps=1 pages=2 cpus=1 procs=1 addrs=2 tasks=1 ram=2 order=1
memremap_pages pgmap=0
do_huge_pmd_anonymous_page proc=0 addr=0 cpu=0
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM|COMPOUND cpu=0
step task=0
madvise_dontneed proc=0 addr=1 cpu=0
";
    let v = run(text, rules.clone());
    let x = v.violation.as_ref().unwrap_or_else(|| panic!("{}", show(&v)));
    assert_eq!(x.invariant.id(), "I-W2", "{}", show(&v));
    // the THP is pfns 2..4 (RAM after the two device pages): address 1 is pfn 3
    assert_eq!(x.objects, [("proc", 0), ("addr", 1), ("pfn", 3)], "{}", show(&v));
    // the same block mapped by two PTEs of order-0 pages faulted in the
    // other order (address 1 has pfn 2): one entry per page
    let ptes = text.replace(
        "do_huge_pmd_anonymous_page proc=0 addr=0 cpu=0",
        "do_anonymous_page proc=0 addr=1 cpu=0\ndo_anonymous_page proc=0 addr=0 cpu=0",
    );
    let v = run(&ptes, rules);
    let x = v.violation.as_ref().unwrap_or_else(|| panic!("{}", show(&v)));
    assert_eq!(
        (x.invariant.id(), &x.objects[..]),
        ("I-W2", &[("proc", 0), ("addr", 1), ("pfn", 2)][..]),
        "{}",
        show(&v)
    );
}

// ---------------------------------------------------------------------------
// Coverage
// ---------------------------------------------------------------------------

#[test]
fn every_invariant_has_a_fires_test() {
    let reported: BTreeSet<&str> = Invariant::ALL.iter().map(|i| i.id()).collect();
    assert_eq!(reported.len(), Invariant::ALL.len(), "two invariants share an id");
    let covered: BTreeSet<&str> = FIRES.iter().map(|c| c.id).collect();
    let missing: Vec<&&str> = reported.difference(&covered).collect();
    assert!(missing.is_empty(), "invariants without a fires test in tests/invariants.rs: {missing:?}");
    let unknown: Vec<&&str> = covered.difference(&reported).collect();
    assert!(unknown.is_empty(), "FIRES names ids that are not invariants: {unknown:?}");
    for inv in Invariant::ALL {
        assert!(!inv.doc().is_empty(), "{inv} has no documentation");
        assert_eq!(Invariant::from_id(inv.id()), Some(*inv));
    }
    // every percpu_ref event maps to a listed invariant
    for e in RefEvent::ALL {
        assert!(reported.contains(e.invariant().id()), "{e:?} maps to unlisted {}", e.invariant());
    }
    // and the table is true as a whole
    for case in FIRES {
        check_fires(case);
    }
}

// ---------------------------------------------------------------------------
// Random byte programs under the built-in presets
// ---------------------------------------------------------------------------

/// A built-in preset must never fail a conformance check: that would be a
/// bug in the model, whatever the bytes. (Panics fail the property too.)
fn bytes_conform(preset: &str, data: &[u8]) -> Result<(), TestCaseError> {
    let rules = Rules::preset(preset).unwrap();
    let mut m = Machine::new(Config::new(rules)).unwrap();
    let v = m.run_bytes(data);
    if let Some(c) = &v.conformance {
        let ops = m.decode_program(data);
        let text: Vec<String> = ops.iter().map(zdfuzz_core::program::text::op_to_text).collect();
        return Err(TestCaseError::fail(format!("{preset}: {c}\nprogram:\n{}", text.join("\n"))));
    }
    Ok(())
}

const BUILTIN: [&str; 6] = ["e1", "e2", "e3", "e4", "e5", "p20"];

#[test]
fn bytes_property_covers_every_builtin_preset() {
    assert_eq!(Rules::preset_names(), BUILTIN.to_vec(), "add the new preset to the byte properties below");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn bytes_e1_conform(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        bytes_conform("e1", &data)?;
    }

    #[test]
    fn bytes_e2_conform(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        bytes_conform("e2", &data)?;
    }

    #[test]
    fn bytes_e3_conform(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        bytes_conform("e3", &data)?;
    }

    #[test]
    fn bytes_e4_conform(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        bytes_conform("e4", &data)?;
    }

    #[test]
    fn bytes_e5_conform(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        bytes_conform("e5", &data)?;
    }

    #[test]
    fn bytes_p20_conform(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        bytes_conform("p20", &data)?;
    }
}
