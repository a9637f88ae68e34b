"""zdfuzz export (--as pytest, --as kernel-comment) and the pytest plugin."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from programs import Q1
from zdfuzz.cli import main

ROOT = Path(__file__).resolve().parent.parent


def pytest_in(d: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
        cwd=d,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_export_as_pytest_asserts_the_verdict(tmp_path: Path) -> None:
    q1 = tmp_path / "q1.zdf"
    q1.write_text(Q1)
    tests = tmp_path / "tests"
    tests.mkdir()
    r = CliRunner().invoke(main, ["export", str(q1), "--as", "pytest", "-o", str(tests / "test_q1_p20.py")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["export", str(q1), "--as", "pytest", "--rules", "e1"])
    assert r.exit_code == 0, r.output
    (tests / "test_q1_e1.py").write_text(r.stdout)
    assert "EXPECTED = ('I-L2', 'memunmap_pages', 'generic')" in (tests / "test_q1_p20.py").read_text()
    assert "EXPECTED = None" in r.stdout
    p = pytest_in(tests)
    assert p.returncode == 0 and "2 passed" in p.stdout, p.stdout + p.stderr
    # it can fail: the p20 expectation does not hold under e1
    broken = (tests / "test_q1_p20.py").read_text().replace("RULES = 'p20'", "RULES = 'e1'")
    (tests / "test_q1_p20.py").write_text(broken)
    p = pytest_in(tests)
    assert p.returncode == 1 and "1 failed, 1 passed" in p.stdout, p.stdout


def test_export_as_kernel_comment(tmp_path: Path) -> None:
    q1 = tmp_path / "q1.zdf"
    q1.write_text(Q1)
    r = CliRunner().invoke(main, ["export", str(q1), "--as", "kernel-comment"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "/*" and lines[-1] == " */"
    assert all(line.startswith(" *") for line in lines[1:])
    assert " *   4. CPU0: memunmap_pages pgmap=0 cpu=0" in lines
    assert any("percpu_ref_kill" in line for line in lines)
    assert " * I-L2 (safety) at step 10: step task=0" in lines
    assert "*/" not in "\n".join(lines[1:-1])


def test_export_bad_input_is_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zdf"
    bad.write_text("rules e3\nfree_device_page pfn=0\n")
    r = CliRunner().invoke(main, ["export", str(bad), "--as", "pytest"])
    assert r.exit_code == 2


def test_plugin_turns_a_corpus_into_test_items(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "corpus" / "regressions", corpus)
    n = len(list(corpus.rglob("*.zdf")))
    empty = tmp_path / "run"
    empty.mkdir()
    p = pytest_in(empty, "--zdfuzz-corpus", str(corpus))
    assert p.returncode == 0 and f"{n} passed" in p.stdout, p.stdout + p.stderr
    # under its fix each regression is clean; the metadata says which preset fixes it
    some = sorted(corpus.rglob("*.json"))[0]
    fixed_in = json.loads(some.read_text())["fixed_in"]
    p = pytest_in(empty, "--zdfuzz-corpus", str(corpus), "--zdfuzz-rules", fixed_in)
    assert p.returncode == 0 and "passed" in p.stdout, p.stdout + p.stderr
    # a reproducer whose metadata expects another bug fails, with the replay command
    meta = json.loads(some.read_text())
    meta["signature"]["invariant"] = "I-NOPE"
    some.write_text(json.dumps(meta))
    p = pytest_in(empty, "--zdfuzz-corpus", str(corpus))
    assert p.returncode == 1 and "1 failed" in p.stdout, p.stdout
    assert "expected I-NOPE" in p.stdout and "zdfuzz replay" in p.stdout


def test_plugin_collects_a_corpus_inside_a_hidden_directory(tmp_path: Path) -> None:
    """A wheel's data in `.venv/.../site-packages` is collected: only hidden
    directories *below* the corpus are skipped."""
    corpus = tmp_path / ".venv" / "data"
    shutil.copytree(ROOT / "corpus" / "regressions", corpus)
    (corpus / ".state").mkdir()
    shutil.copy(sorted(corpus.rglob("*.zdf"))[0], corpus / ".state" / "skipped.zdf")
    n = len([p for p in corpus.rglob("*.zdf") if ".state" not in p.parts])
    empty = tmp_path / "run"
    empty.mkdir()
    p = pytest_in(empty, "--zdfuzz-corpus", str(corpus))
    assert p.returncode == 0 and f"{n} passed" in p.stdout, p.stdout + p.stderr


def test_plugin_uses_baseline_labels(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        main, ["fuzz", "--time", "10", "--execs", "3000", "--seed", "1", "--corpus", str(tmp_path / "c")]
    )
    assert r.exit_code == 0, r.output
    labels = [json.loads(p.read_text())["label"] for p in (tmp_path / "c" / "findings").glob("*.json")]
    assert "new" in labels and "shared" in labels
    run = tmp_path / "run"
    run.mkdir()
    p = pytest_in(run, "--zdfuzz-corpus", str(tmp_path / "c"), "--zdfuzz-rules", "e1")
    assert p.returncode == 0 and f"{len(labels)} passed" in p.stdout, p.stdout + p.stderr
    p = pytest_in(run, "--zdfuzz-corpus", str(tmp_path / "c"), "--zdfuzz-rules", "e4")
    assert p.returncode == 0 and f"{len(labels)} skipped" in p.stdout and "says nothing about e4" in p.stdout
