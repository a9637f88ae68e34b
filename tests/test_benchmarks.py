"""The benchmark suite (benchmarks/run.py) runs end to end and reports every
row; time to bug stops each campaign at its first detection.

No assertion here is about speed: the numbers are whatever this machine
gives (they are benchmarks, not timed tests). What is checked is that every
measurement ran, that the PASS/MISS verdicts agree with the numbers, and
that the time-to-bug table covers every reproducer it finds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from zdfuzz import campaign
from zdfuzz.corpus import Signature

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

import time_to_bug  # noqa: E402

Q1 = Signature("I-L2", "memunmap_pages", "generic", "p20")
# the seed's Q1 (README): a device-dax page mapped and GUP'd, the driver unbinds
from programs import Q1 as Q1_ZDF  # noqa: E402

try:
    import atheris  # noqa: F401

    HAVE_ATHERIS = True
except ImportError:
    HAVE_ATHERIS = False


def run_suite(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    results = tmp_path / "results"
    r = subprocess.run(
        [sys.executable, str(RUN), *args, "--results-dir", str(results)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r, results


def test_quick_run_measures_everything_and_its_verdicts_match_its_numbers(tmp_path: Path) -> None:
    r, results = run_suite(tmp_path, "--quick")
    latest = results / "latest.json"
    dated = [p for p in results.glob("*-quick.json")]
    assert len(dated) == 1 and dated[0].read_text() == latest.read_text()
    doc: dict[str, Any] = json.loads(latest.read_text())
    assert doc["mode"] == "quick"

    m = doc["machine"]
    for key in ("cpu_model", "cores", "load_average_start", "load_average_end", "python", "rustc", "git_commit"):
        assert m[key], key
    assert len(m["load_average_start"]) == len(m["load_average_end"]) == 3

    res = doc["results"]
    for name in ("core", "hypothesis", "native", "minimizer", "percpu_ref", "explorer", "explorer_por"):
        assert "result" in res[name], (name, res[name])
    if HAVE_ATHERIS:
        assert "result" in res["atheris"], res["atheris"]
    else:
        assert "not_measured" in res["atheris"]

    # core and reference ran the same programs of exactly 64 and 1024 actions
    core = res["core"]["result"]
    assert [c["actions"] for c in core] == [64, 1024]
    for c in core:
        for side in ("core", "reference"):
            assert c[side]["actions"] == c[side]["programs"] * c["actions"] > 0
        assert c["ratio"] == pytest.approx(c["core"]["actions_per_cpu_s"] / c["reference"]["actions_per_cpu_s"])
    assert res["minimizer"]["result"]["actions"] == 200
    assert [p["threads"] for p in res["percpu_ref"]["result"]] == [1, 2]
    assert res["explorer"]["result"]["states"] > 0
    # partial-order reduction: the same states, side by side, never more transitions
    por = res["explorer_por"]["result"]
    assert por["por"]["states"] == por["plain"]["states"] > 0
    assert por["transitions_ratio"] == pytest.approx(por["por"]["transitions"] / por["plain"]["transitions"])
    assert por["transitions_ratio"] <= 1
    assert por["plain"]["slept"] == 0

    # every target is judged, and PASS/MISS follows from the number
    targets = {t["key"]: t for t in doc["targets"]}
    assert set(targets) == {
        "core_vs_reference_64",
        "atheris_vs_empty",
        "native_programs_per_s",
        "explorer_states_per_s",
    }
    for key, t in targets.items():
        if key == "atheris_vs_empty" and not HAVE_ATHERIS:
            assert t["status"] == "NOT MEASURED"
            continue
        assert t["measured"] > 0
        assert t["status"] == ("PASS" if t["measured"] >= t["target"] else "MISS"), t
        assert ("shortfall" in t) == (t["status"] == "MISS")
    assert targets["core_vs_reference_64"]["measured"] == core[0]["ratio"]

    # the printed table has a row per measurement and a status per target
    labels = [row[0] for row in doc["rows"]]
    for prefix in (
        "core: run_bytes, 64-action",
        "core: run_bytes, 1024-action",
        "atheris",
        "hypothesis",
        "native engine",
        "minimize a 200-action",
        "percpu_ref get+put, 1",
        "percpu_ref get+put, 2",
        "explorer",
        "explorer --por vs plain",
    ):
        assert any(label.startswith(prefix) for label in labels), (prefix, labels)
    statuses = [row[4].split()[0] for row in doc["rows"] if row[4]]
    assert sorted(statuses) == sorted(t["status"].split()[0] for t in doc["targets"])
    assert "zdfuzz benchmarks" in r.stdout


def test_time_to_bug_on_a_one_file_regression_directory(tmp_path: Path) -> None:
    reg = tmp_path / "regressions" / "p20"
    reg.mkdir(parents=True)
    (reg / "q1.zdf").write_text(Q1_ZDF)
    (reg / "q1.json").write_text(json.dumps({"signature": Q1._asdict(), "note": "synthetic"}))
    engines = "native,hypothesis,atheris" if HAVE_ATHERIS else "native,hypothesis"
    r, results = run_suite(
        tmp_path, "--time-to-bug", "--regressions", str(reg.parent), "--cap", "5", "--seeds", "1", "--engines", engines
    )
    doc = json.loads((results / "time-to-bug-latest.json").read_text())
    assert doc["cap_s"] == 5 and doc["seeds"] == [1] and doc["skipped"] == []
    [row] = doc["results"]
    assert row["reproducer"] == "p20/q1.zdf" and row["types"] == ["generic"] and row["replays"]
    assert Signature(**row["signature"]) == Q1
    assert set(row["engines"]) == set(engines.split(","))
    # the native engine finds Q1 within a fraction of this budget
    # (tests/test_engines.py: within 20,000 programs)
    native = row["engines"]["native"]
    assert native["found"] == 1 and native["result"] == time_to_bug.fmt_seconds(native["median_s"])
    for e in row["engines"].values():
        assert len(e["seconds"]) == 1 and not e["result"].startswith("error"), e
        assert (e["seconds"][0] is None) == (e["found"] == 0)
    assert "p20/q1.zdf" in r.stdout and "I-L2 memunmap_pages generic p20" in r.stdout


def test_time_to_bug_with_no_regressions_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r, results = run_suite(tmp_path, "--time-to-bug", "--regressions", str(tmp_path / "empty"))
    assert "no reproducers under" in r.stdout
    assert json.loads((results / "time-to-bug-latest.json").read_text())["results"] == []


def test_discover_reads_flat_metadata_replays_without_it_and_skips_clean_files(tmp_path: Path) -> None:
    (tmp_path / "p20").mkdir()
    (tmp_path / "e1").mkdir()
    (tmp_path / "p20" / "a.zdf").write_text(Q1_ZDF)
    (tmp_path / "p20" / "a.json").write_text(json.dumps(dict(Q1._asdict(), extra=1)))
    # no metadata: the signature comes from a replay under the directory's preset
    (tmp_path / "p20" / "b.zdf").write_text(Q1_ZDF.replace("rules p20\n", ""))
    # clean under e1 (memunmap_pages waits for the page) and no metadata: skipped
    (tmp_path / "e1" / "c.zdf").write_text(Q1_ZDF.replace("rules p20\n", ""))
    regs, skipped = time_to_bug.discover(tmp_path)
    assert [r.name for r in regs] == ["p20/a.zdf", "p20/b.zdf"]
    assert all(r.signature == Q1 and r.replays and r.types == ("generic",) for r in regs)
    assert regs[1].notes and "replay" in regs[1].notes[-1]
    assert len(skipped) == 1 and "c.zdf" in skipped[0] and "clean under e1" in skipped[0]


def test_medians_count_misses_as_above_the_cap() -> None:
    assert time_to_bug.verdict_text([1.0, 2.0, None, 3.0, None], 60) == "3.00"
    assert time_to_bug.verdict_text([11.0, 12.0, 13.0], 60) == "12.0"
    assert time_to_bug.verdict_text([1.0, None, None, 3.0, None], 60) == ">60"
    assert time_to_bug.verdict_text([None] * 5, 60) == "not found"


def test_a_campaign_stops_at_its_stop_signature(tmp_path: Path) -> None:
    quiet = Console(file=open("/dev/null", "w"))
    full = campaign.run(campaign.Config(seed=1, execs=5000, corpus=tmp_path / "full", seconds=120), quiet)
    order = [f.signature for f in full.found]
    # on four types the native engine finds other signatures before and after Q1
    assert Q1 in order and order.index(Q1) < len(order) - 1
    stopped = campaign.run(
        campaign.Config(seed=1, corpus=tmp_path / "stop", seconds=120, stop_on=frozenset({Q1})), quiet
    )
    assert [f.signature for f in stopped.found] == order[: order.index(Q1) + 1]
