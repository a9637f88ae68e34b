"""The in-guest agent, run as an ordinary process on the host (it is PID 1
only in a guest): its protocol, its actors, blocking and late completion,
fork, and errors, without booting anything."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from zdfuzz.lab import guest
from zdfuzz.lab.errors import LabError


@pytest.fixture(scope="module")
def agent() -> Path:
    try:
        return guest.find_agent()
    except LabError as e:
        pytest.skip(f"the lab agent cannot be built here: {e}")


def run(agent: Path, tmp_path: Path, spec: dict[str, Any]) -> list[dict[str, Any]]:
    f = tmp_path / "scenario.json"
    f.write_text(json.dumps(spec))
    r = subprocess.run(
        [str(agent), "--scenario", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"ZDLAB_RUN_DIR": str(tmp_path / "run"), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def steps(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["i"]: r for r in records if r.get("t") == "step"}


def test_the_agent_is_a_static_executable(agent: Path) -> None:
    assert guest.elf_is_static(agent)


def test_actors_keep_state_fork_and_exit(agent: Path, tmp_path: Path) -> None:
    recs = run(
        agent,
        tmp_path,
        {
            "name": "t",
            "actors": ["A"],
            "step_timeout_ms": 3000,
            "steps": [
                {"actor": "A", "op": "mmap", "args": {"pages": 2, "as": "m", "shared": False}},
                {"actor": "A", "op": "touch", "args": {"map": "m", "page": 1}},
                {"actor": "A", "op": "vmsplice", "args": {"map": "m", "page": 0, "as": "p"}},
                {"actor": "A", "op": "fork", "args": {"child": "B"}},
                {"actor": "B", "op": "touch", "args": {"map": "m", "page": 0}},
                {"actor": "B", "op": "close_pipe", "args": {"pipe": "p"}},
                {"actor": "B", "op": "exit", "args": {}},
                {"actor": "A", "op": "close_pipe", "args": {"pipe": "p"}},
                {"actor": "A", "op": "touch", "args": {"map": "m", "page": 2}},
                {"actor": "A", "op": "munmap", "args": {"map": "nope"}},
                {"actor": "C", "op": "exit", "args": {}},
                {"actor": "-", "op": "frobnicate", "args": {}},
            ],
        },
    )
    s = steps(recs)
    assert [s[i]["status"] for i in range(12)] == ["ok"] * 8 + ["error"] * 4
    assert s[1]["page"]["present"] is True
    assert s[3]["detail"].startswith("forked B")
    assert "outside the 8192-byte mapping" in s[8]["detail"]  # bounds-checked: page 2 of 2
    assert s[9]["errno"] == "EINVAL" and "no mapping named `nope`" in s[9]["detail"]
    assert s[10]["errno"] == "ESRCH" and s[11]["errno"] == "EINVAL"
    assert recs[0]["t"] == "hello" and recs[-1] == {"t": "done", "status": "ok", "ms": recs[-1]["ms"]}


def test_a_step_that_outlives_its_timeout_is_blocked_then_late(agent: Path, tmp_path: Path) -> None:
    recs = run(
        agent,
        tmp_path,
        {
            "name": "t",
            "actors": ["A"],
            "step_timeout_ms": 300,
            "settle_ms": 100,
            "final_wait_ms": 3000,
            "steps": [
                {"actor": "-", "op": "sleep", "args": {"ms": 1200}},
                {"actor": "A", "op": "mmap", "args": {"pages": 1, "as": "m"}},
                {"actor": "-", "op": "wait", "args": {"step": 0}, "timeout_ms": 5000},
                {"actor": "-", "op": "exec", "args": {"argv": ["/bin/sh", "-c", "echo out; exit 3"]}},
            ],
        },
    )
    s = steps(recs)
    assert s[0]["status"] == "blocked" and "nanosleep" in s[0]["stack"] + s[0]["wchan"]
    [late] = [r for r in recs if r.get("t") == "late"]
    assert late["i"] == 0 and late["status"] == "ok" and late["during"] == 2
    assert s[1]["status"] == "ok" and s[2]["status"] == "ok"
    assert s[3]["status"] == "error" and s[3]["output"] == "out\n" and "exited with status 3" in s[3]["detail"]
    [end] = [r for r in recs if r.get("t") == "end"]
    assert end["still_blocked"] == []


@pytest.mark.parametrize("background", [True, False])
def test_a_background_step_is_raced_not_waited_for(agent: Path, tmp_path: Path, background: bool) -> None:
    # a step sent with timeout 0 is left running at once; after the next
    # step, settling waits for steps still in the kernel (so a completion
    # that step caused is reported during it), except a background one,
    # which the scenario races on purpose: its completion comes at the wait
    recs = run(
        agent,
        tmp_path,
        {
            "name": "t",
            "actors": ["A", "B"],
            "step_timeout_ms": 3000,
            "settle_ms": 3000,
            "final_wait_ms": 3000,
            "steps": [
                {"actor": "-", "op": "exec", "args": {"argv": ["/bin/sleep", "1"]}, "timeout_ms": 0}
                | ({"background": True} if background else {}),
                {"actor": "B", "op": "mmap", "args": {"pages": 1, "as": "m"}},
                {"actor": "-", "op": "wait", "args": {"step": 0}, "timeout_ms": 5000},
            ],
        },
    )
    s = steps(recs)
    assert s[0]["status"] == "blocked" and s[1]["status"] == "ok"
    [late] = [r for r in recs if r.get("t") == "late"]
    assert late["i"] == 0 and late["during"] == (2 if background else 1)


def test_a_bad_scenario_file_is_reported_not_crashed_on(agent: Path, tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    f.write_text("{not json")
    r = subprocess.run([str(agent), "--scenario", str(f)], capture_output=True, text=True, timeout=30)
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["t"] for x in recs] == ["hello", "fatal", "done"] and "cannot read" in recs[1]["detail"]


def test_a_batch_runs_each_item_with_its_own_actors_and_clears_between(agent: Path, tmp_path: Path) -> None:
    item = {
        "actors": ["A"],
        "final_wait_ms": 200,
        "steps": [
            {"actor": "A", "op": "mmap", "args": {"pages": 1, "as": "m"}},
            {"actor": "-", "op": "sleep", "args": {"ms": 30000}},
        ],
        "teardown": [["/bin/echo", "teardown"]],
    }
    recs = run(
        agent,
        tmp_path,
        {
            "name": "b",
            "step_timeout_ms": 300,
            "settle_ms": 50,
            "batch": [dict(item, name="one"), dict(item, name="two")],
        },
    )
    items = [r for r in recs if r.get("t") == "item"]
    assert [r["name"] for r in items] == ["one", "two"] and [r["item"] for r in items] == [0, 1]
    ends = [r for r in recs if r.get("t") == "item_end"]
    assert [(r["item"], r["status"], r["tainted"]) for r in ends] == [(0, "ok", None), (1, "ok", None)]
    # the sleeping one-shot process of item 0 was killed, not left behind
    blocked = [r for r in recs if r.get("t") == "step" and r.get("status") == "blocked"]
    assert [r["item"] for r in blocked] == [0, 1]
    assert [r["output"] for r in recs if r.get("t") == "teardown"] == ["teardown\n", "teardown\n"]
    assert recs[-1]["t"] == "done"
