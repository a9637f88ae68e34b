"""End to end: real Debian kernels booted under QEMU.

``test_f1_on_debian_6_12`` runs in the default suite (and in CI): it boots
Debian's stock 6.12 kernel under TCG, runs the F1 scenario, and checks that
the unbind completes under the pin on the real kernel while the model reports
I-L2. It is skipped, with the reason, only where QEMU or the kernel package
cannot be had. The rest (the whole suite on 6.12 and 6.1, a guest that
panics, a guest that hangs) run with ``pytest -m lab``.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from zdfuzz.lab import guest, kernels, scenario
from zdfuzz.lab.errors import LabError
from zdfuzz.lab.predict import rules_label
from zdfuzz.lab.run import run_scenario


def _kernel(name: str) -> kernels.Kernel:
    try:
        guest.qemu_binary()
    except LabError as e:
        pytest.skip(str(e))
    try:
        return kernels.resolve(name)
    except LabError as e:
        pytest.skip(f"{name} cannot be had here: {e}")


def _qemus_using(directory: Path) -> list[str]:
    """QEMU processes whose command line names ``directory`` (their initrd)."""
    r = subprocess.run(["pgrep", "-f", "qemu-system-x86_64"], capture_output=True, text=True, check=False)
    out = []
    for pid in r.stdout.split():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(directory) in cmd:
            out.append(pid)
    return out


@pytest.fixture
def leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The lab's temporary files go to a directory of this test's own (so
    other lab runs on the machine do not count); after the test it must be
    empty, and no QEMU process may still use it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield
    assert _qemus_using(tmp) == [], "a QEMU process outlived its scenario"
    assert list(tmp.iterdir()) == [], "a temporary directory outlived its scenario"


def test_f1_on_debian_6_12(leaves_nothing_behind: None) -> None:
    k = _kernel("debian-6.12")
    assert rules_label(k.preset) == "debian-6.12"
    sc = scenario.load(scenario.find("f1-devdax-unbind-iouring"))
    res = run_scenario(sc, k, guest.probe_accel(k), save=False)
    assert res.run is not None and res.run.status == "done", res.run and res.run.message
    unbind = next(i for i, s in enumerate(sc.steps) if "unbind_dax" in s.text)
    obs = res.observation
    assert obs is not None
    # the real kernel: the unbind returns while the io_uring buffer still pins the page
    assert obs.steps[unbind].status == "ok"
    assert all(s.status == "ok" for s in obs.steps[:unbind])
    # the model: the teardown under the pin is I-L2, at that step
    assert res.row.model.startswith(f"I-L2 (safety) at step {unbind}")
    assert res.row.result == "agree", res.row.reasons


@pytest.mark.lab
@pytest.mark.parametrize("name", ["debian-6.12", "debian-6.1"])
def test_the_suite_agrees_on_stock_kernels(name: str, leaves_nothing_behind: None) -> None:
    k = _kernel(name)
    accel = guest.probe_accel(k)
    rows = [run_scenario(scenario.load(p), k, accel, save=False).row for p in scenario.builtin()]
    bad = [(r.scenario, r.result, r.reasons) for r in rows if r.result not in ("agree", "n/a")]
    assert bad == []
    assert sum(r.confirmed for r in rows) >= 3


PANIC = """scenario panics
actors A
- write_sysfs path=/proc/sysrq-trigger value=c
"""

HANGS = """scenario hangs
actors A
- sleep ms=600000 @timeout=600
"""


@pytest.mark.lab
def test_a_guest_that_panics_is_reported_with_its_oops(tmp_path: Path, leaves_nothing_behind: None) -> None:
    k = _kernel("debian-6.12")
    sc = scenario.parse(PANIC, "panics.lab")
    res = run_scenario(sc, k, guest.probe_accel(k), save=False)
    assert res.run is not None and res.run.status == "panic"
    assert any("sysrq" in line.lower() for line in res.run.last_console_lines(60))
    assert res.observation is not None and any(e.kind == "panic" for e in res.observation.events)


@pytest.mark.lab
def test_a_silent_guest_is_stopped_and_its_console_kept(leaves_nothing_behind: None) -> None:
    k = _kernel("debian-6.12")
    sc = scenario.parse(HANGS, "hangs.lab")
    res = run_scenario(sc, k, guest.probe_accel(k), save=False, idle_timeout=10)
    assert res.run is not None and res.run.status == "hang" and "said nothing for 10 s" in res.run.message
    assert res.run.last_console_lines(5), "the last console lines are kept for the report"


def _lab_kernel() -> kernels.Kernel:
    try:
        guest.qemu_binary()
    except LabError as e:
        pytest.skip(str(e))
    k = kernels.newest_lab()
    if k is None:
        pytest.skip("no lab kernel is built here (zdfuzz lab build, about 10 minutes on 2 cores)")
    return k


@pytest.mark.lab
@pytest.mark.parametrize(
    "name",
    [
        "hmm-migrate-fault-back",
        "hmm-evict-then-rmmod",
        "hmm-device-write-fork-exit",
        "p2pdma-mmap-dio-munmap",
        "p2pdma-unbind-while-pinned",
    ],
)
def test_device_private_and_p2pdma_agree_on_the_lab_kernel(name: str, leaves_nothing_behind: None) -> None:
    k = _lab_kernel()
    res = run_scenario(scenario.load(scenario.find(name)), k, guest.probe_accel(k), save=False)
    assert res.row.result == "agree", res.row.reasons


@pytest.mark.lab
def test_f1_on_the_lab_kernel_is_confirmed_with_symbols(leaves_nothing_behind: None) -> None:
    k = _lab_kernel()
    res = run_scenario(scenario.load(scenario.find("f1-devdax-unbind-iouring")), k, guest.probe_accel(k), save=False)
    assert res.row.result == "agree" and res.row.confirmed
    assert any(e.func.startswith("io_buffer_unmap") for e in res.row.events)


@pytest.mark.lab
def test_kconfig_accepts_the_lab_fragment_on_debian_6_12_source() -> None:
    from zdfuzz.lab import build

    try:
        src, bad = build.check_fragment()
    except LabError as e:
        pytest.skip(f"Debian's linux-source-6.12 cannot be had here: {e}")
    assert bad == [], f"{src.label}: {bad}"
