"""Model programs translated into lab scenarios (what user space can drive
of them), and the pieces of the lab's kernel fuzzer that need no VM."""

from __future__ import annotations

from pathlib import Path

import pytest

import zdfuzz
from zdfuzz.lab import scenario
from zdfuzz.lab.console import KernelEvent
from zdfuzz.lab.fuzz import _join, _split, engine_programs, report_signature
from zdfuzz.lab.predict import predict
from zdfuzz.lab.translate import NotDrivable, translate

ROOT = Path(__file__).resolve().parents[2]


def prog(body: str, types: str = "generic", extra: str = "") -> zdfuzz.Program:
    return zdfuzz.Program.parse(
        f"rules e3\nconfig types={types} pgmaps=1 pages=2 cpus=1 procs=2 addrs=2 files=1 "
        f"file_pages=2 tasks=2 ram=0 order=0 {extra}\n{body}"
    )


def test_f1_translates_to_the_lab_scenario_and_keeps_its_verdict() -> None:
    p = zdfuzz.Program.parse((ROOT / "corpus/findings/F1-e4-devdax-unbind-under-gup.zdf").read_text())
    t = translate(p)
    assert t.drivable == t.total and t.stopped_at == ""
    sc = scenario.parse(t.text, "f1.lab")
    assert [s.op for s in sc.steps] == ["open", "mmap", "touch", "iouring_register", "write_sysfs"]
    assert sc.steps[3].model == ["pin_user_pages proc=0 addr=0 flags=FOLL_LONGTERM cpu=0"]
    v = predict(sc, "e3").violation
    assert v is not None and v.invariant == "I-L2" and v.step == 4


def test_translation_stops_at_the_first_action_user_space_cannot_drive() -> None:
    p = prog(
        "memremap_pages pgmap=0\ndev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0\n"
        "get_dev_pagemap pfn=0 cached=none cpu=0\nmunmap proc=0 addr=0 cpu=0\n"
    )
    t = translate(p)
    assert t.drivable == 2 and t.total == 4 and "get_dev_pagemap" in t.stopped_at
    assert "munmap" not in t.text.split("actors")[1]
    with pytest.raises(NotDrivable, match="no drivable action"):
        translate(prog("memremap_pages pgmap=0\nget_dev_pagemap pfn=0 cached=none cpu=0\n"))
    with pytest.raises(NotDrivable, match="one device-dax or FS-DAX pgmap"):
        translate(prog("memremap_pages pgmap=0\n", types="private"))


def test_exit_releases_what_the_process_holds_and_a_fork_child_drops_what_it_inherits() -> None:
    p = prog(
        "memremap_pages pgmap=0\nexit_mmap proc=1 cpu=0\ndev_dax_huge_fault proc=0 addr=0 pfn=1 cpu=0\n"
        "get_user_pages proc=0 addr=0 flags=0 cpu=0\npin_user_pages proc=0 addr=0 flags=0 cpu=0\n"
        "fork proc=0 child=1\nexit_mmap proc=0 cpu=0\nmemunmap_pages pgmap=0 cpu=0\n"
    )
    sc = scenario.parse(translate(p).text, "t.lab")
    ops = [(s.runner, s.op) for s in sc.steps]
    assert ("P1", "exit") in ops and ("P0", "fork") in ops and ("P1b", "drop_holdings") in ops
    exit0 = next(s for s in sc.steps if s.runner == "P0" and s.op == "exit")
    assert exit0.model == ["exit_mmap proc=0 cpu=0", "put_page pfn=1 by=gup cpu=0", "unpin_user_page pfn=1 cpu=0"]
    pr = predict(sc, "e3")
    assert pr.violation is None
    unbind = next(i for i, s in enumerate(sc.steps) if s.op == "write_sysfs")
    assert pr.steps[unbind].outcome == "ok"


def test_fsdax_association_happens_at_the_fault_and_truncate_is_a_punched_hole() -> None:
    p = prog(
        "memremap_pages pgmap=0\ndax_associate_entry file=0 index=1 pfn=0\n"
        "dax_iomap_fault proc=0 addr=0 file=0 index=1 cpu=0\nget_user_pages proc=0 addr=0 flags=0 cpu=0\n"
        "munmap proc=0 addr=0 cpu=0\ntruncate file=0 index=1 cpu=0\n",
        types="fsdax",
    )
    sc = scenario.parse(translate(p).text, "t.lab")
    touch = next(s for s in sc.steps if s.op == "touch")
    assert touch.model[0] == "dax_associate_entry file=0 index=1 pfn=0"
    punch = next(s for s in sc.steps if s.op == "punch_hole")
    assert punch.args == {"path": "/mnt/f0", "page": 1, "pages": 1}
    v = predict(sc, "e3").violation
    assert v is not None and v.invariant == "I-X2"


def test_every_drivable_engine_program_becomes_a_scenario_the_model_can_predict() -> None:
    rules = zdfuzz.Rules.preset("e3")
    programs = engine_programs(rules, ["generic", "fsdax"], seed=3, execs=1500)
    assert len(programs) > 50
    translated = 0
    for _origin, p in programs:
        try:
            t = translate(p)
        except NotDrivable:
            continue
        translated += 1
        predict(scenario.parse(t.text, "t.lab"), "e3")
    assert translated >= 20, "most engine programs have a drivable prefix"


def test_report_signatures_ignore_addresses_and_offsets() -> None:
    a = KernelEvent(
        "oops", "BUG: unable to handle page fault for address: ffef4d9641010008", "io_buffer_unmap+0x53/0xe0"
    )
    b = KernelEvent(
        "oops", "BUG: unable to handle page fault for address: ff7e743ac1010008", "io_buffer_unmap+0x53/0xe0"
    )
    assert report_signature(a) == report_signature(b) == "oops io_buffer_unmap"
    w = KernelEvent(
        "warning",
        "WARNING: CPU: 0 PID: 146 at fs/dax.c:390 dax_disassociate_entry+0x86/0xb0",
        "dax_disassociate_entry+0x86/0xb0",
        "fs/dax.c:390",
    )
    assert report_signature(w) == "warning dax_disassociate_entry"


def test_minimization_keeps_the_header_and_splits_only_steps() -> None:
    text = "scenario x\nsetup devdax\nactors A\n\nA open path=/dev/dax0.0 as=d\nA exit\n"
    head, steps = _split(text)
    assert steps == ["A open path=/dev/dax0.0 as=d", "A exit"]
    assert _join(head, steps[1:]) == "scenario x\nsetup devdax\nactors A\n\nA exit\n"


class _FakeRow:
    def __init__(self, steps: list[dict[str, str]]) -> None:
        self.steps = steps


def test_minimization_removes_steps_while_the_report_recurs_and_never_boots_a_meaningless_scenario(
    tmp_path: Path,
) -> None:
    from zdfuzz.lab import fuzz, kernels

    p = zdfuzz.Program.parse((ROOT / "corpus/findings/F1-e4-devdax-unbind-under-gup.zdf").read_text())
    text = translate(p).text
    k = kernels.Kernel("debian-6.12", "6.12.0", Path("/x"), None, None)
    lf = fuzz.LabFuzzer(k, guest_accel(), tmp_path, "e3", minimize_boots=50)
    booted: list[list[str]] = []

    def fake_batch(scs: list[scenario.Scenario]) -> list[tuple[scenario.Scenario, object, list[KernelEvent]]]:
        [sc] = scs
        ops = [s.op for s in sc.steps]
        booted.append(ops)
        # the "agent": a step naming a file or mapping no earlier step made fails
        made: set[str] = set()
        outcomes = []
        for s in sc.steps:
            needs = [v for key, v in s.args.items() if key in ("file", "map")]
            outcomes.append("ok" if all(v in made for v in needs) else "error:EINVAL")
            if "as" in s.args:
                made.add(s.args["as"])
        # the "kernel": the unpin after an unbind of a registered page oopses
        oops = "iouring_register" in ops and "write_sysfs" in ops
        events = [KernelEvent("oops", "BUG: unable to handle page fault", "io_buffer_unmap+0x1/0x2")] if oops else []
        return [(sc, _FakeRow([{"kernel": o} for o in outcomes]), events)]

    lf.run_batch = fake_batch  # type: ignore[method-assign]
    small = lf.minimize(text, "oops io_buffer_unmap")
    sc = scenario.parse(small, "small.lab")
    assert [s.op for s in sc.steps] == ["open", "mmap", "touch", "iouring_register", "write_sysfs"]
    # no candidate the model could not run was booted: a pin always follows
    # the fault that maps its page
    for ops in booted:
        if "iouring_register" in ops:
            assert "touch" in ops and ops.index("touch") < ops.index("iouring_register")


def guest_accel() -> object:
    from zdfuzz.lab import guest

    return guest.TCG
