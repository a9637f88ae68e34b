"""Campaigns: findings written atomically, deduplicated, replayable,
reproducible from a seed, and kept across a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

import zdfuzz
from zdfuzz.cli import main
from zdfuzz.corpus import Corpus, Signature, replay_signature

Q1_SIG = Signature("I-L2", "memunmap_pages", "generic", "p20")


def fuzz(*args: str) -> str:
    r = CliRunner().invoke(main, ["fuzz", *args])
    assert r.exit_code == 0, r.output
    return r.output


def test_native_campaign_finds_q1_and_every_reproducer_replays_to_its_signature(tmp_path: Path) -> None:
    out = fuzz("--corpus", str(tmp_path), "--seed", "1", "--execs", "20000", "--time", "120")
    found = Corpus(tmp_path).findings()
    sigs = [f.signature for f in found]
    assert Q1_SIG in sigs, out
    assert len(sigs) == len(set(sigs))  # one reproducer per signature
    for f in found:
        assert f.minimized, f.meta
        assert replay_signature(f.zdf) == f.signature
        r = CliRunner().invoke(main, ["replay", str(f.zdf)])
        assert r.exit_code == 1 and f.signature.invariant in r.output
        assert {"engine", "time_to_find", "seed", "message", "actions", "original_actions"} <= set(f.meta)
        assert f.meta["engine"] == "native" and f.meta["seed"] == 1
        assert f.meta["actions"] <= f.meta["original_actions"]
        assert str(f.zdf) in out.replace("\n", "")  # the summary names the paths
    q1 = next(f for f in found if f.signature == Q1_SIG)
    assert q1.meta["actions"] == 10  # the README's Q1, nothing more


def test_same_seed_same_findings(tmp_path: Path) -> None:
    runs = []
    for d in ("a", "b"):
        fuzz(
            "--corpus", str(tmp_path / d), "--seed", "7", "--execs", "6000", "--time", "120", "--types", "generic,fsdax"
        )
        runs.append(
            [
                (f.signature, f.zdf.read_text().split("\n", 2)[2], f.meta["execs"])
                for f in Corpus(tmp_path / d).findings()
            ]
        )
    assert runs[0] and runs[0] == runs[1]


def test_a_second_run_reports_nothing_known_again(tmp_path: Path) -> None:
    fuzz("--corpus", str(tmp_path), "--seed", "1", "--execs", "8000", "--time", "120")
    before = {f.signature: f.zdf.read_text() for f in Corpus(tmp_path).findings()}
    assert before
    out = fuzz("--corpus", str(tmp_path), "--seed", "1", "--execs", "8000", "--time", "120")
    for sig in before:
        assert f"new {sig} " not in out
    after = {f.signature: f.zdf.read_text() for f in Corpus(tmp_path).findings()}
    assert {s: after[s] for s in before} == before


def test_an_unminimized_finding_left_by_a_kill_is_minimized_on_restart(tmp_path: Path) -> None:
    c = Corpus(tmp_path)
    c.create()
    p = zdfuzz.Program.parse(
        "rules p20\nconfig types=generic\nmemremap_pages pgmap=0\nexit_mmap proc=1 cpu=0\n"
        "dev_dax_huge_fault proc=0 addr=0 pfn=1 cpu=0\nget_user_pages proc=0 addr=0 flags=0 cpu=1\n"
        "memunmap_pages pgmap=0 cpu=0\nstep task=0\nstep task=0\nstep task=0\nrcu_grace_period\nstep task=0\nstep task=0\n"
    )
    c.write_finding(Q1_SIG, p, {"engine": "native", "time_to_find": 1.0, "seed": 3, "minimized": False})
    fuzz("--corpus", str(tmp_path), "--seed", "1", "--execs", "1", "--time", "10", "--types", "generic")
    f = next(f for f in Corpus(tmp_path).findings() if f.signature == Q1_SIG)
    assert f.minimized and f.meta["seed"] == 3 and f.meta["actions"] == 10
    assert "exit_mmap" not in f.zdf.read_text()


def test_sigkill_and_restart_keeps_every_finding(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    cmd = [sys.executable, "-m", "zdfuzz.cli", "fuzz", "--corpus", str(corpus), "--time", "120", "--seed", "5"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # wait (bounded) until it has written two findings and some of the
        # engine's corpus, then kill
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            len(list((corpus / "findings").glob("*.json"))) < 2 or not list((corpus / "native").glob("*.pack"))
        ):
            assert p.poll() is None, "the campaign ended early"
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait(timeout=10)
    assert p.returncode == -signal.SIGKILL
    before = {f.signature: f for f in Corpus(corpus).findings()}
    assert len(before) >= 2
    queue = len(list((corpus / "native").glob("*.pack")))
    assert queue > 0  # the engine's corpus was saved as it grew (at checkpoints)
    out = fuzz("--corpus", str(corpus), "--time", "3", "--seed", "6")
    after = {f.signature: f for f in Corpus(corpus).findings()}
    assert set(before) <= set(after)
    for sig in before:
        assert after[sig].minimized
        assert replay_signature(after[sig].zdf) == sig
        assert f"new {sig} " not in out
    # no half-written file is taken for a finding
    for js in (corpus / "findings").glob("*.json"):
        json.loads(js.read_text())


def test_jobs_use_worker_processes(tmp_path: Path) -> None:
    out = fuzz("--corpus", str(tmp_path), "--seed", "2", "--time", "4", "--jobs", "2", "--types", "generic")
    found = Corpus(tmp_path).findings()
    assert Q1_SIG in {f.signature for f in found}, out
    assert all(f.meta.get("job") in (0, 1) for f in found)


def test_corpus_list_and_merge(tmp_path: Path) -> None:
    fuzz("--corpus", str(tmp_path / "a"), "--seed", "1", "--execs", "4000", "--time", "60", "--types", "generic")
    fuzz("--corpus", str(tmp_path / "b"), "--seed", "2", "--execs", "4000", "--time", "60", "--types", "fsdax")
    r = CliRunner().invoke(main, ["corpus", "list", str(tmp_path / "a")])
    assert r.exit_code == 0 and "I-L2" in r.output and "generic" in r.output
    r = CliRunner().invoke(main, ["corpus", "merge", str(tmp_path / "m"), str(tmp_path / "a"), str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    merged = {f.signature for f in Corpus(tmp_path / "m").findings()}
    expect = {f.signature for f in Corpus(tmp_path / "a").findings()} | {
        f.signature for f in Corpus(tmp_path / "b").findings()
    }
    assert merged == expect and any(s.device == "fsdax" for s in merged)
    r = CliRunner().invoke(main, ["corpus", "merge", str(tmp_path / "m"), str(tmp_path / "a")])
    assert "0 finding(s) added" in r.output


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["fuzz", "--types", "gpu", "--corpus", str(tmp_path)])
    assert r.exit_code == 2 and "gpu" in r.output
    r = CliRunner().invoke(main, ["fuzz", "--rules", "e9", "--corpus", str(tmp_path)])
    assert r.exit_code == 2


def test_findings_of_presets_with_dots_in_their_names_do_not_collide(tmp_path: Path) -> None:
    from zdfuzz.corpus import Corpus, Signature

    c = Corpus(tmp_path)
    p = zdfuzz.Program.parse("rules v4.10\nconfig types=generic\nmemremap_pages pgmap=0\n")
    a = Signature("I-R1", "put_page", "generic", "v4.10")
    b = Signature("I-R3", "put_page", "generic", "v4.10")
    pa = c.write_finding(a, p, {"engine": "native"})
    pb = c.write_finding(b, p, {"engine": "native"})
    assert pa != pb and pa.name == "v4.10-I-R1-put_page-generic.zdf"
    assert {f.signature for f in c.findings()} == {a, b}


def test_jobs_workers_stop_at_the_campaigns_deadline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--jobs workers start later than the campaign (spawned interpreters):
    they get the campaign's own end on the shared monotonic clock, not
    their start plus --time."""
    import io

    from rich.console import Console

    from zdfuzz.campaign import Campaign, Config, worker_config, worker_deadline

    c = Campaign(Config(rules="e3", jobs=2, seconds=7.0, corpus=tmp_path, seed=1), Console(file=io.StringIO()))
    w = worker_config(c)
    assert w.deadline == c.start + 7.0
    # a worker that starts later still stops at the same instant
    assert worker_deadline(w) == c.start + 7.0
    assert worker_deadline(c.cfg) > c.start + 7.0  # without a deadline: its own start + time
