"""Hostile input, kills, Ctrl-C and concurrency: nothing is lost, nothing
crashes, nothing is left behind, nothing is written where it was not asked."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import zdfuzz
from programs import Q1, Q1_SIG
from zdfuzz import corpus as corpus_mod
from zdfuzz.cli import main
from zdfuzz.corpus import Corpus, Signature
from zdfuzz.term import sanitize

CLI = [sys.executable, "-m", "zdfuzz.cli"]


def _wait(what: str, cond: object, seconds: float = 60.0) -> None:
    """Poll ``cond()`` until true (bounded: the deadline is a failure, not a
    measurement)."""
    deadline = time.monotonic() + seconds
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def _gone(pid: int) -> bool:
    """Dead (a zombie waiting for an init that does not reap counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


# -- names, markup, terminal control ------------------------------------------


def test_sanitize_escapes_control_characters_only() -> None:
    assert sanitize("a\x1b[2Jb\x07c\x9b\x7f") == "a\\x1b[2Jb\\x07c\\x9b\\x7f"
    assert sanitize("tab\tnew\nline [bold]é") == "tab\tnew\nline [bold]é"


def test_corpus_metadata_is_printed_as_text(tmp_path: Path) -> None:
    """An ``engine`` with markup and escapes: `corpus list` prints it as it is
    (it crashed on ``[/x]``) and escapes the terminal control."""
    c = Corpus(tmp_path)
    c.create()
    c.write_finding(Q1_SIG, zdfuzz.Program.parse(Q1), {"engine": "evil[/x]\x1b]0;title\x07", "time_to_find": 1.0})
    r = CliRunner().invoke(main, ["corpus", "list", str(tmp_path)], env={"COLUMNS": "400"})
    assert r.exit_code == 0, (r.output, r.exception)
    flat = "".join(r.output.split())
    assert "evil[/x]\\x1b]0;title\\x07" in flat, r.output
    assert "\x1b" not in r.output and "\x07" not in r.output


def test_error_messages_quoting_user_text_escape_it(tmp_path: Path) -> None:
    f = tmp_path / "esc.zdf"
    f.write_text("rules e3\n\x1b[2Jmemremap_pages pgmap=0\n")
    r = CliRunner().invoke(main, ["replay", str(f)])
    assert r.exit_code == 2
    assert "\x1b" not in r.output and "unknown action `\\x1b[2Jmemremap_pages`" in r.output


def test_a_campaign_under_a_user_preset_writes_and_prints_its_findings(tmp_path: Path) -> None:
    rules = tmp_path / "mine.toml"
    rules.write_text('name = "mine-1.0"\nbase = "p20"\ndescription = "x"\n')
    r = CliRunner().invoke(
        main,
        ["fuzz", "--rules", str(rules), "--types", "generic", "--seed", "1", "--execs", "4000"]
        + ["--time", "60", "--corpus", str(tmp_path / "c")],
    )
    assert r.exit_code == 0, (r.output, r.exception)
    found = Corpus(tmp_path / "c").findings()
    assert Signature("I-L2", "memunmap_pages", "generic", "mine-1.0") in {f.signature for f in found}
    # labelled against the rules' base: p20 itself breaks the same way
    assert "shared I-L2 memunmap_pages generic mine-1.0" in r.output


# -- inputs that never end ----------------------------------------------------


def test_a_fifo_or_a_huge_file_is_refused_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "x.zdf"
    os.mkfifo(fifo)
    tfifo = tmp_path / "x.toml"
    os.mkfifo(tfifo)
    good = tmp_path / "q1.zdf"
    good.write_text(Q1)
    # a subprocess: if it blocked on the FIFO, the timeout fails the test
    for args, message in (
        (["replay", str(fifo)], "not a regular file"),
        (["explain", str(fifo)], "not a regular file"),
        (["replay", str(good), "--rules", str(tfifo)], "not a regular file"),
    ):
        p = subprocess.run(CLI + args, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and message in p.stderr, (args, p.stderr)
    huge = tmp_path / "huge.zdf"
    with open(huge, "wb") as f:
        f.truncate(zdfuzz.inputs.MAX_PROGRAM_BYTES + 1)  # sparse: nothing is written
    r = CliRunner().invoke(main, ["replay", str(huge)])
    assert r.exit_code == 2 and "larger than" in r.output


def test_explain_streams_the_same_lines(tmp_path: Path) -> None:
    import io

    from zdfuzz.report import explain

    e = explain(zdfuzz.Program.parse(Q1))
    out = io.StringIO()
    e.write(out)
    assert out.getvalue().splitlines() == e.lines()
    # the task each `step` runs is still named, with its CPU
    assert any("memunmap_pages" in line and "models:" in line for line in e.lines())


# -- kills and Ctrl-C -----------------------------------------------------------


def test_kill_9_of_a_jobs_campaign_leaves_no_worker_and_no_temporary_file(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    p = subprocess.Popen(
        CLI + ["fuzz", "--jobs", "2", "--time", "300", "--corpus", str(corpus), "--seed", "3"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait("two workers", lambda: len(_children(p.pid)) >= 2)
        workers = _children(p.pid)
        # a write interrupted by the kill leaves a temporary file like this one
        _wait("the corpus", lambda: (corpus / "findings").is_dir())
        (corpus / "findings" / ".p20-x.zdf.abcd.tmp").write_text("half")
    finally:
        p.kill()
        p.wait(timeout=30)
    _wait("the workers to die with the campaign", lambda: all(_gone(w) for w in workers))
    r = CliRunner().invoke(main, ["fuzz", "--time", "1", "--corpus", str(corpus), "--types", "generic"])
    assert r.exit_code == 0, r.output
    assert not list(corpus.rglob(".*.tmp"))


def _read_until(p: subprocess.Popen[str], pattern: str, seconds: float = 60.0) -> list[str]:
    """Lines of ``p``'s stdout up to the first that matches ``pattern``
    (bounded: the deadline is a failure, not a measurement)."""
    assert p.stdout is not None
    deadline = time.monotonic() + seconds
    lines: list[str] = []
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {pattern!r} in {lines}"
        ready, _, _ = select.select([p.stdout], [], [], left)
        if ready:
            line = p.stdout.readline()
            assert line, f"the campaign ended before {pattern!r}: {lines}"
            lines.append(line)
            if re.search(pattern, line):
                return lines


@pytest.mark.parametrize("engine", ["native", "hypothesis"])
@pytest.mark.parametrize("when", ["starting", "running"])
def test_ctrl_c_of_a_jobs_campaign_exits_130_with_the_summary_only(tmp_path: Path, engine: str, when: str) -> None:
    p = subprocess.Popen(
        CLI
        + ["fuzz", "--engine", engine, "--jobs", "2", "--time", "300", "--corpus", str(tmp_path / "c")]
        + ["--types", "generic"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait("two workers", lambda: len(_children(p.pid)) >= 2)
        if when == "running":
            # the workers report: a stopped campaign must stop them too, not
            # wait for their last words until the deadline
            _read_until(p, r"\b[1-9]\d* execs")
        workers = _children(p.pid)
        # a terminal's Ctrl-C: SIGINT to the whole foreground process group
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 130, (out, err)
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err, err
    assert "interrupted" in out and "finding" in out
    _wait("the workers", lambda: all(_gone(w) for w in workers))


# -- one campaign per corpus ----------------------------------------------------


def test_a_second_campaign_on_a_corpus_is_refused_naming_the_first(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    p = subprocess.Popen(
        CLI + ["fuzz", "--time", "300", "--corpus", str(corpus), "--types", "generic"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lock = corpus / ".lock"
        _wait("the lock", lambda: lock.is_file() and str(p.pid) in lock.read_text())
        r = CliRunner().invoke(main, ["fuzz", "--time", "1", "--corpus", str(corpus)])
        assert r.exit_code == 2, r.output
        assert f"in use by another campaign (pid {p.pid}: zdfuzz fuzz" in r.output.replace("\n", "")
    finally:
        p.kill()
        p.wait(timeout=30)
    # the kernel dropped the lock with the process
    r = CliRunner().invoke(main, ["fuzz", "--time", "1", "--corpus", str(corpus), "--types", "generic"])
    assert r.exit_code == 0, r.output


def test_the_lock_is_exclusive_between_two_corpus_objects(tmp_path: Path) -> None:
    a, b = Corpus(tmp_path), Corpus(tmp_path)
    a.create()
    a.lock("first")
    try:
        with pytest.raises(corpus_mod.CorpusError, match=f"pid {os.getpid()}: first"):
            b.lock("second")
    finally:
        a.unlock()
    b.lock("second")
    b.unlock()


# -- known signatures stay honest -------------------------------------------------


def _stale_corpus(root: Path) -> tuple[Corpus, Signature]:
    """Q1's program filed as an e1 finding: under e1 it is clean (stale)."""
    c = Corpus(root)
    c.create()
    sig = Signature("I-L2", "memunmap_pages", "generic", "e1")
    c.write_finding(sig, zdfuzz.Program.parse(Q1), {"engine": "native", "time_to_find": 1.0, "minimized": True})
    (c.findings_dir / "e1-garbage.zdf").write_text("rules e1\nthis is not a program\n")
    return c, sig


def test_a_stale_finding_is_reported_and_its_signature_open_again(tmp_path: Path) -> None:
    c, sig = _stale_corpus(tmp_path)
    from zdfuzz import campaign
    from zdfuzz.term import SafeConsole

    cfg = campaign.Config(rules="e1", types=("generic",), seconds=10, corpus=tmp_path, seed=1, execs=1)
    console = SafeConsole(file=open(os.devnull, "w"))  # noqa: SIM115
    camp = campaign.run(cfg, console)
    assert sig in camp.stale and sig not in camp.known - {f.signature for f in camp.found}
    r = CliRunner().invoke(
        main,
        ["fuzz", "--rules", "e1", "--types", "generic", "--execs", "1", "--seed", "1"] + ["--corpus", str(tmp_path)],
    )
    flat = r.output.replace("\n", "")
    assert "stale: I-L2 memunmap_pages generic e1" in flat and "no longer reproduces: now clean under e1" in flat
    assert "unreadable:" in flat and "e1-garbage.zdf" in flat


def test_corpus_check_lists_and_retires_stale_findings(tmp_path: Path) -> None:
    c, sig = _stale_corpus(tmp_path)
    fresh = Corpus(tmp_path / "ok")
    fresh.write_finding(Q1_SIG, zdfuzz.Program.parse(Q1), {"engine": "native"})
    r = CliRunner().invoke(main, ["corpus", "check", str(tmp_path / "ok")])
    assert r.exit_code == 0 and "ok" in r.output, r.output
    r = CliRunner().invoke(main, ["corpus", "check", str(tmp_path)])
    assert r.exit_code == 1, r.output
    assert "stale" in r.output and "unreadable" in r.output and "2 stale or unreadable" in r.output
    r = CliRunner().invoke(main, ["corpus", "check", str(tmp_path), "--retire"])
    assert r.exit_code == 0, r.output
    assert not list(c.findings_dir.iterdir())
    assert sorted(p.name for p in c.retired_dir.iterdir()) == [
        "e1-I-L2-memunmap_pages-generic.json",
        "e1-I-L2-memunmap_pages-generic.zdf",
        "e1-garbage.zdf",
    ]


# -- writes go where they are asked -------------------------------------------------


def test_explore_out_replaces_a_symlink_and_leaves_its_target(tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    out = tmp_path / "q1.zdf"
    out.symlink_to(target)
    r = CliRunner().invoke(
        main,
        ["explore", "--rules", "p20", "--types", "generic", "--pages", "1", "--procs", "1", "--addrs", "1"]
        + ["--tasks", "1", "--depth", "12", "--quiet", "--out", str(out)],
    )
    assert r.exit_code == 1, r.output
    assert target.read_text() == "keep me\n"
    assert not out.is_symlink() and zdfuzz.Program.parse(out.read_text())


def test_the_hypothesis_engine_writes_under_the_corpus_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(
        main,
        ["fuzz", "--engine", "hypothesis", "--types", "generic", "--seed", "1", "--execs", "50"]
        + ["--time", "60", "--corpus", "c"],
    )
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_program_parse_and_the_cli_agree_on_line_endings(tmp_path: Path) -> None:
    lf = Q1.replace("step task=0\n", "fork proc=0\n", 1)
    for text in (lf, lf.replace("\n", "\r\n"), lf.replace("\n", "\r")):
        with pytest.raises(zdfuzz.ProgramError) as e:
            zdfuzz.Program.parse(text)
        f = tmp_path / "p.zdf"
        f.write_bytes(text.encode())
        r = CliRunner().invoke(main, ["replay", str(f)])
        assert r.exit_code == 2 and f"{f}:{e.value.line}:{e.value.col}:" in r.output.replace("\n", "")
    ok = zdfuzz.Program.parse(Q1.replace("\n", "\r"))
    assert ok == zdfuzz.Program.parse(Q1)


# -- durability without an fsync per corpus entry ------------------------------------


def test_corpus_entries_are_written_in_batches_and_findings_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    c = Corpus(tmp_path)
    c.create()
    entries = [bytes([i, i + 1, 7]) for i in range(100)]
    c.save_native_entries(entries)
    assert calls == []  # queued until the checkpoint
    c.checkpoint()
    assert len(calls) == 2  # one pack file, one directory
    assert sorted(Corpus(tmp_path).native_entries()) == sorted(entries)
    calls.clear()
    c.write_finding(Q1_SIG, zdfuzz.Program.parse(Q1), {"engine": "native"})
    assert len(calls) == 4  # .zdf and .json, each file and directory: durable at once


def test_a_campaign_checkpoints_its_corpus_at_the_end(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        main,
        ["fuzz", "--types", "generic", "--seed", "1", "--execs", "3000", "--time", "60", "--corpus", str(tmp_path)],
    )
    assert r.exit_code == 0, r.output
    packs = list((tmp_path / "native").glob("*.pack"))
    assert packs and Corpus(tmp_path).native_entries()


def test_a_read_only_corpus_is_refused_before_the_campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def refuse(*a: object, **k: object) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    r = CliRunner().invoke(main, ["fuzz", "--time", "1", "--corpus", str(tmp_path)])
    assert r.exit_code == 2, r.output
    assert "cannot write: Permission denied" in r.output and "engine" not in r.output


def test_corpus_metadata_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    c = Corpus(tmp_path)
    c.write_finding(Q1_SIG, zdfuzz.Program.parse(Q1), {"engine": "native"})
    js = c.finding_paths(Q1_SIG)[1]
    meta = json.loads(js.read_text())
    meta["actions"] = "ten"
    js.write_text(json.dumps(meta))
    with pytest.raises(corpus_mod.CorpusError, match="`actions` must be a whole number"):
        c.findings()
