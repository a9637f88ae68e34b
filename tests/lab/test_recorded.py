"""The lab's reading of what a guest said, on logs recorded from real boots
of Debian's 6.12 and 6.1 kernels (tests/lab/data, each with the command that
recorded it): kernel reports are classified, each step's outcome is read,
and the comparison with the model gives the verdict the live run gave."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from zdfuzz.lab import kernels, scenario
from zdfuzz.lab.conformance import compare
from zdfuzz.lab.console import classify, observe
from zdfuzz.lab.predict import predict

DATA = Path(__file__).parent / "data"


def recorded(name: str) -> dict[str, Any]:
    d: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return d


def verdict(name: str, rules: str = "e3", d: dict[str, Any] | None = None) -> Any:
    d = d or recorded(name)
    sc = scenario.load(scenario.find(d["scenario"]))
    obs = observe(d["agent_records"], len(sc.steps), d["console"])
    row = compare(sc, predict(sc, rules), obs, d["kernel_release"], d["status"], d["message"])
    return sc, obs, row


DEBIAN_612 = str(kernels.PRESETS_DIR / "debian-6.12.toml")


def test_f5_on_the_lab_kernel_kasan_reports_the_walk_of_the_freed_anon_vma() -> None:
    # docs/findings.md F5: the eviction's finalize walks the anon_vma that the
    # racing exit freed; KASAN (with CONFIG_SLUB_RCU_DEBUG) names the model's
    # path: allocated by the fault's anon_vma_prepare, freed by exit_mmap's
    # unlink_anon_vmas, read in rmap_walk_anon from migrate_device_finalize
    sc, obs, row = verdict("evict-races-exit-kasan-lab-6.12", DEBIAN_612)
    [kasan] = [e for e in obs.events if e.kind == "kasan"]
    assert kasan.summary.startswith("BUG: KASAN: slab-use-after-free") and kasan.func == "rmap_walk_anon"
    console = recorded("evict-races-exit-kasan-lab-6.12")["console"]
    for frame in ("remove_migration_ptes", "migrate_device_finalize", "unlink_anon_vmas", "anon_vma_alloc"):
        assert frame in console
    close = next(i for i, s in enumerate(sc.steps) if s.text.startswith("B close"))
    assert obs.steps[close].status == "blocked", "the guest raced the eviction instead of waiting for it"
    assert row.result == "agree" and row.confirmed and row.model.startswith("I-M10")


@pytest.mark.parametrize("during,confirmed", [("10", True), ("9", True), ("7", False)])
def test_a_report_from_a_background_task_counts_from_the_step_that_started_it(during: str, confirmed: bool) -> None:
    # the model runs the held eviction at the wait (step 11); the kernel may
    # finish it during any step after the close (step 8) started it, but not
    # before: a report read after step 7 is not this violation's
    d = recorded("evict-races-exit-kasan-lab-6.12")
    for r in d["agent_records"]:
        if r.get("t") == "kmsg" and r.get("after") == "11":
            r["after"] = during
    _sc, _obs, row = verdict("", DEBIAN_612, d)
    assert row.confirmed is confirmed


def test_f1_on_6_12_the_unbind_returns_under_the_pin_and_the_unpin_oopses() -> None:
    sc, obs, row = verdict("f1-iouring-oops-6.12")
    unbind = next(i for i, s in enumerate(sc.steps) if "unbind_dax" in s.text)
    assert obs.steps[unbind].status == "ok"
    unpin = obs.steps[unbind + 1]
    assert unpin.status == "died", "the oops killed the unregistering task, stuck in do_exit"
    [oops] = [e for e in obs.events if e.kind == "oops"]
    assert oops.func == "io_buffer_unmap" and oops.summary.startswith("BUG: unable to handle page fault")
    assert any(line.startswith("RIP: 0010:io_buffer_unmap") for line in oops.context)
    assert row.result == "agree" and row.confirmed
    assert row.model.startswith("I-L2")


def test_truncate_of_an_unmapped_held_page_warns_in_dax_disassociate_entry() -> None:
    sc, obs, row = verdict("truncate-unmapped-warn-6.12")
    [warn] = [e for e in obs.events if e.kind == "warning"]
    assert warn.func.startswith("dax_disassociate_entry") and warn.where.startswith("fs/dax.c:")
    t = next(i for i, s in enumerate(sc.steps) if s.text.startswith("- truncate"))
    assert obs.steps[t].status == "ok" and warn.after == str(t)
    assert row.result == "agree" and row.confirmed and row.model.startswith("I-X2")


def test_truncate_of_a_mapped_held_page_waits_for_the_put() -> None:
    sc, obs, row = verdict("truncate-mapped-waits-6.12")
    t = next(i for i, s in enumerate(sc.steps) if s.text.startswith("- truncate"))
    put = next(i for i, s in enumerate(sc.steps) if "close_pipe" in s.text)
    assert obs.steps[t].status == "blocked" and obs.steps[t].completed_during == put
    assert "ext4_break_layouts" in obs.steps[t].stack, "the agent shows where truncate waits"
    assert row.result == "agree" and not row.confirmed and obs.events == []


def test_a_background_io_holds_truncate_until_the_wait() -> None:
    sc, obs, row = verdict("truncate-during-dio-6.12")
    t = next(i for i, s in enumerate(sc.steps) if s.text.startswith("- truncate"))
    w = next(i for i, s in enumerate(sc.steps) if s.text.startswith("- wait"))
    assert obs.steps[t].status == "blocked" and obs.steps[t].completed_during == w
    assert row.result == "agree"


def test_a_pin_path_the_kernel_does_not_offer_is_not_applicable() -> None:
    _sc, obs, row = verdict("iouring-refused-6.1")
    assert obs.steps[3].status == "error" and obs.steps[3].errno == "EOPNOTSUPP"
    assert row.result == "n/a" and "EOPNOTSUPP" in row.reasons[0]


def test_a_failed_setup_is_an_error_that_quotes_the_command() -> None:
    _sc, obs, row = verdict("xfs-mkfs-failed-6.12")
    assert row.result == "error" and "mkfs.xfs" in row.reasons[0] and "300MB" in row.reasons[0]
    assert all(s.status == "missing" for s in obs.steps)


def test_a_module_that_fails_to_load_is_an_error_that_names_it() -> None:
    _sc, _obs, row = verdict("xfs-module-failed-6.12")
    assert row.result == "error" and row.reasons[0].startswith("module libcrc32c:")


def test_a_guest_that_hangs_before_any_step_is_an_error_not_a_disagreement() -> None:
    _sc, _obs, row = verdict("module-load-hang-6.12")
    assert row.result == "error" and "no step ran" in row.reasons[0]


def test_the_idle_control_is_clean_on_both_sides() -> None:
    _sc, obs, row = verdict("unbind-idle-clean-6.12")
    assert row.result == "agree" and not row.confirmed and row.model == "clean"
    assert all(s.status == "ok" for s in obs.steps)


def test_a_kernel_report_where_the_model_is_clean_is_a_disagreement() -> None:
    d = recorded("unbind-idle-clean-6.12")
    sc = scenario.load(scenario.find(d["scenario"]))
    records = d["agent_records"] + [
        {
            "t": "kmsg",
            "after": "5",
            "lines": [{"prio": 4, "text": "WARNING: CPU: 1 PID: 99 at mm/memremap.c:123 memunmap_pages+0x1/0x2"}],
        }
    ]
    row = compare(sc, predict(sc, "e3"), observe(records, len(sc.steps), ""), "6.12", "done", "")
    assert row.result == "disagree" and "memunmap_pages" in row.reasons[-1]


def test_a_mismatched_step_is_a_disagreement_that_names_it() -> None:
    d = recorded("truncate-mapped-waits-6.12")
    sc = scenario.load(scenario.find(d["scenario"]))
    # pretend the truncate had returned at once
    records = [
        dict(r, status="ok") if r.get("t") == "step" and r.get("i") == 5 else r
        for r in d["agent_records"]
        if r.get("t") != "late"
    ]
    row = compare(sc, predict(sc, "e3"), observe(records, len(sc.steps), ""), "6.12", "done", "")
    assert row.result == "disagree"
    assert any("step 5" in r and "model blocks, returns after step 6; kernel ok" in r for r in row.reasons)


CLASSES = [
    ("BUG: KASAN: slab-use-after-free in io_buffer_unmap+0x1/0x2", "kasan", "io_buffer_unmap+0x1/0x2"),
    ("BUG: Bad page state in process init  pfn:41000", "bad-page", ""),
    ("kernel BUG at mm/memremap.c:501!", "vm-bug", ""),
    (
        "WARNING: CPU: 0 PID: 1 at lib/percpu-refcount.c:196 percpu_ref_switch_to_atomic_rcu+0x1/0x2",
        "warning",
        "percpu_ref_switch_to_atomic_rcu+0x1/0x2",
    ),
    ("refcount_t: underflow; use-after-free.", "refcount", ""),
    ("percpu ref (dev_pagemap_percpu_release) <= 0 (-1) after switching to atomic", "refcount", ""),
    ("INFO: task truncate:77 blocked for more than 120 seconds.", "hung-task", ""),
    ("Kernel panic - not syncing: Fatal exception", "panic", ""),
    ("BUG: kernel NULL pointer dereference, address: 0000000000000008", "oops", ""),
    ("general protection fault, probably for non-canonical address 0xdead: 0000 [#1] SMP", "oops", ""),
]


@pytest.mark.parametrize("line,kind,func", CLASSES)
def test_kernel_report_classes(line: str, kind: str, func: str) -> None:
    [e] = classify([("3", "[   12.345678] " + line)])
    assert (e.kind, e.after) == (kind, "3")
    if func:
        assert e.func == func.split("+")[0] or e.func == func


def test_ordinary_kernel_lines_are_not_reports() -> None:
    lines = [
        "nd_pmem namespace0.0: unable to guarantee persistence of writes",
        "EXT4-fs (pmem0): mounted filesystem",
        "dax0.0: detached",
        "Buffer I/O error on dev dm-0, logical block 0",
    ]
    assert classify([("1", ln) for ln in lines]) == []


def test_6_1_loses_the_wakeup_of_a_truncate_waiting_for_an_o_direct_read() -> None:
    """F2 (docs/findings.md): on Debian's 6.1 the O_DIRECT read completes
    and truncate sleeps on; the model says truncate returns at the wait. The
    row disagrees and is explained by a recorded finding."""
    sc, obs, row = verdict("truncate-during-dio-lost-wakeup-6.1")
    t = next(i for i, s in enumerate(sc.steps) if s.text.startswith("- truncate"))
    dio = next(i for i, s in enumerate(sc.steps) if "dio_read" in s.text)
    assert obs.steps[dio].status == "blocked" and obs.steps[dio].completed_during is not None
    assert obs.steps[t].status == "blocked" and obs.steps[t].completed_during is None
    assert "ext4_break_layouts" in obs.steps[t].stack
    assert row.result == "disagree" and row.explained == "F2"


def test_only_the_recorded_kernel_is_explained() -> None:
    d = recorded("truncate-during-dio-lost-wakeup-6.1")
    sc = scenario.load(scenario.find(d["scenario"]))
    row = compare(
        sc, predict(sc, "e3"), observe(d["agent_records"], len(sc.steps), d["console"]), "6.12.117", "done", ""
    )
    assert row.result == "disagree" and row.explained == ""


def test_a_report_of_the_wrong_kind_does_not_confirm_a_violation() -> None:
    """I-X2 (a block freed under DMA) is shown by dax_disassociate_entry's
    WARN, not by a hung task: like is compared with like."""
    d = recorded("truncate-unmapped-warn-6.12")
    sc = scenario.load(scenario.find(d["scenario"]))
    records = [r for r in d["agent_records"] if r.get("t") != "kmsg"] + [
        {
            "t": "kmsg",
            "after": "6",
            "lines": [{"prio": 3, "text": "INFO: task init:1 blocked for more than 120 seconds."}],
        }
    ]
    row = compare(sc, predict(sc, "e3"), observe(records, len(sc.steps), ""), "6.12", "done", "")
    assert row.result == "agree" and not row.confirmed
    assert "not the kind of report I-X2 would give" in row.reasons[-1]


@pytest.mark.parametrize("kernel", ["6.12", "6.1"])
def test_f1_on_a_2m_aligned_device_dax_the_put_of_a_tail_page_oopses_after_the_unbind(kernel: str) -> None:
    # the fault mapped 2 MiB with one devmap PMD (a 4 KiB fault of a 2M-aligned
    # device is SIGBUS), vmsplice's GUP-fast took the reference on the
    # compound folio through a tail page, and nothing waited for it
    sc, obs, row = verdict(f"f1-pmd-vmsplice-oops-{kernel}")
    assert "devdax_pmd=1" in sc.config and sc.setup == "devdax-2m"
    touch = next(i for i, s in enumerate(sc.steps) if "touch" in s.text)
    assert obs.steps[touch].status == "ok"
    unbind = next(i for i, s in enumerate(sc.steps) if "unbind_dax" in s.text)
    assert obs.steps[unbind].status == "ok"
    assert obs.steps[unbind + 1].status == "died"
    [oops] = [e for e in obs.events if e.kind == "oops"]
    assert oops.func == "page_cache_pipe_buf_release"
    assert row.result == "agree" and row.confirmed
    assert row.model.startswith("I-L2") and "pfn 1" in row.model


@pytest.mark.parametrize("kernel", ["6.12", "6.1"])
def test_a_pin_on_a_tail_page_of_a_pmd_mapped_fs_dax_extent_holds_the_truncate(kernel: str) -> None:
    # XFS with a 2 MiB stripe unit: the fault mapped the extent by a PMD (the
    # tracepoint read back says the PMD fault inserted it: NOPAGE, not
    # FALLBACK), vmsplice took a reference through a tail page, and the
    # truncate's busy scan (dax_busy_page over every pfn of the entry before
    # v6.15) waited for it, as the model's fsdax_pmd=1 shape predicts
    sc, obs, row = verdict(f"fsdax-pmd-truncate-waits-{kernel}")
    assert "fsdax_pmd=1" in sc.config and sc.setup == "fsdax-xfs-2m"
    trace = next(i for i, s in enumerate(sc.steps) if "tracing/trace" in s.text)
    done = [line for line in obs.steps[trace].detail.splitlines() if "dax_pmd_fault_done" in line]
    assert len(done) == 1 and done[0].endswith("NOPAGE"), obs.steps[trace].detail
    t = next(i for i, s in enumerate(sc.steps) if s.text.startswith("- truncate"))
    put = next(i for i, s in enumerate(sc.steps) if "close_pipe" in s.text)
    assert obs.steps[t].status == "blocked" and obs.steps[t].completed_during == put
    assert "xfs_break_dax_layouts" in obs.steps[t].stack
    assert row.result == "agree" and obs.events == []


@pytest.mark.parametrize("kernel", ["6.12", "6.1"])
def test_f3_through_a_pmd_mapped_fs_dax_extent_oopses_at_the_put_of_the_tail_page(kernel: str) -> None:
    # the PMD fault mapped the extent (NOPAGE), the pipe held a tail page,
    # the unmap dropped the whole PMD, nothing waited for the reference at
    # the unbind, and the pipe's put touched the removed memmap
    sc, obs, row = verdict(f"fsdax-pmd-unbind-oops-{kernel}")
    assert "fsdax_pmd=1" in sc.config and sc.setup == "fsdax-xfs-2m"
    trace = next(i for i, s in enumerate(sc.steps) if "tracing/trace" in s.text)
    assert any(line.endswith("NOPAGE") for line in obs.steps[trace].detail.splitlines() if "dax_pmd_fault_done" in line)
    unbind = next(i for i, s in enumerate(sc.steps) if "unbind_pmem" in s.text)
    assert obs.steps[unbind].status == "ok" and obs.steps[unbind + 1].status == "died"
    [oops] = [e for e in obs.events if e.kind == "oops"]
    assert oops.func == "page_cache_pipe_buf_release"
    assert row.result == "agree" and row.confirmed
    assert row.model.startswith("I-L2") and "pfn 1" in row.model


@pytest.mark.parametrize("name", ["reflink-read-both-warn-6.1", "reflink-cow-truncate-warn-6.1"])
def test_fsdax_reflink_on_6_1_warns_in_dax_associate_entry_explained_by_f6(name: str) -> None:
    # docs/findings.md F6: the model has no reflink and predicts clean; 6.1
    # warns at dax_associate_entry's WARN_ON_ONCE(page->mapping) (fs/dax.c:380
    # in Debian's 6.1.192), a disagreement known.toml explains
    sc, obs, row = verdict(name)
    [warn] = [e for e in obs.events if e.kind == "warning"]
    assert warn.where == "fs/dax.c:380" and warn.func.startswith("dax_insert_entry")
    last_touch = max(i for i, s in enumerate(sc.steps) if " touch " in f" {s.text} ")
    assert warn.after == str(last_touch), "the warning comes from the last fault, not the first"
    assert row.model == "clean" and row.result == "disagree" and row.explained == "F6"


def test_the_cow_block_that_warns_is_the_one_truncate_left_flagged() -> None:
    # the block g's write fault got (the CoW copy) is the first block of h
    d = recorded("reflink-cow-truncate-warn-6.1")
    sc = scenario.load(scenario.find(d["scenario"]))
    pfn = {r["i"]: r["page"]["pfn"] for r in d["agent_records"] if r.get("t") == "step" and "page" in r}
    g, h = (next(i for i, s in enumerate(sc.steps) if f"touch map={m} " in s.text) for m in ("mg", "mh"))
    assert pfn[g] == pfn[h]
