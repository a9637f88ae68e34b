"""The Python surface of the percpu_ref model."""

from __future__ import annotations

import pytest

import zdfuzz
from zdfuzz import PercpuRef


def names(ref: PercpuRef) -> list[str]:
    return [e.name for e in ref.events()]


def test_version_is_the_crate_version() -> None:
    assert zdfuzz.__version__.count(".") == 2


def test_issue_example() -> None:
    ref = PercpuRef(cpus=4)
    assert ref.count() == 1
    ref.get(0)
    ref.get(1)
    ref.put(0)
    ref.kill()
    assert ref.is_dying()
    assert ref.mode == "atomic"
    ref.grace_period()
    assert ref.released == 0
    ref.put(1)
    assert ref.count() == 0
    assert ref.released == 1
    assert ref.events() == []


def test_percpu_mode_never_releases() -> None:
    ref = PercpuRef(cpus=2)
    assert ref.mode == "percpu"
    assert ref.put(1) is False
    assert ref.count() == 0
    assert not ref.is_zero()
    assert ref.released == 0


def test_double_kill_is_an_event() -> None:
    ref = PercpuRef(cpus=2)
    ref.get(0)
    ref.kill()
    ref.kill()
    assert names(ref) == ["double_kill"]
    ev = ref.events()[0]
    assert ev.invariant == "I-R4"
    assert ev.op == "kill"
    assert ev.call == 2


def test_underflow_at_the_fold() -> None:
    ref = PercpuRef(cpus=2)
    ref.put(0)
    ref.put(1)
    ref.kill()
    assert names(ref) == []
    ref.grace_period()
    assert names(ref) == ["underflow"]
    assert ref.events()[0].value <= 0


def test_reinit_requires_zero_and_allow_reinit() -> None:
    ref = PercpuRef(cpus=2, flags=["allow_reinit"])
    ref.get(0)
    ref.kill()
    ref.grace_period()
    ref.reinit()
    assert names(ref) == ["reinit_not_zero"]

    ref = PercpuRef(cpus=2)
    ref.kill()
    ref.grace_period()
    ref.reinit()
    assert names(ref) == ["switch_percpu_no_reinit"]


def test_resurrect_and_exit_events() -> None:
    ref = PercpuRef(cpus=1)
    ref.resurrect()
    assert names(ref) == ["resurrect_not_dead", "resurrect_percpu"]
    ref = PercpuRef(cpus=1)
    ref.kill()
    ref.exit()
    ref.get(0)
    assert names(ref) == ["exit_during_switch", "use_after_exit"]


def test_tryget_live_after_kill() -> None:
    ref = PercpuRef(cpus=2)
    assert ref.tryget_live(0) is True
    ref.kill()
    assert ref.tryget_live(1) is False
    assert ref.tryget(1) is True


def test_init_flags() -> None:
    ref = PercpuRef(cpus=1, flags=["init_atomic"])
    assert ref.mode == "atomic"
    assert ref.kill() is True  # already atomic: release is synchronous
    dead = PercpuRef(cpus=1, flags=["init_dead"])
    assert dead.is_dying() and dead.is_zero()
    dead.reinit()
    assert dead.mode == "percpu" and dead.count() == 1
    assert dead.events() == []


def test_switching() -> None:
    ref = PercpuRef(cpus=2, flags=["allow_reinit"])
    ref.switch_to_atomic()
    assert ref.switch_pending
    ref.grace_period()
    assert not ref.switch_pending
    ref.switch_to_percpu()
    assert ref.mode == "percpu"
    ref.switch_to_atomic_sync()
    assert ref.mode == "atomic" and not ref.switch_pending
    assert ref.count() == 1
    assert ref.events() == []


def test_kill_and_confirm() -> None:
    ref = PercpuRef(cpus=2)
    assert ref.kill_and_confirm() is False  # confirmation waits for the grace period
    atomic = PercpuRef(cpus=2, flags=["init_atomic"])
    assert atomic.kill_and_confirm() is True


@pytest.mark.parametrize("cpus", [0, 5000])
def test_bad_cpu_count(cpus: int) -> None:
    with pytest.raises(ValueError, match="cpus must be between"):
        PercpuRef(cpus=cpus)


def test_bad_cpu_and_flag_are_clear_errors() -> None:
    ref = PercpuRef(cpus=2)
    with pytest.raises(ValueError, match="cpu 2 does not exist"):
        ref.get(2)
    with pytest.raises(ValueError, match="unknown percpu_ref flag 'sticky'"):
        PercpuRef(flags=["sticky"])
    with pytest.raises(OverflowError):
        ref.get(-1)


def test_real_thread_stress_from_python() -> None:
    releases, late, ops, events = zdfuzz._core.percpu_ref_stress(workers=2, ops=50_000)
    assert (releases, late, events) == (1, 0, 0)
    assert ops == 200_000
