"""The README runs as written: every command of its ``console`` blocks is run
in one directory (in README order, with the files the README shows), its
shown output checked, and every ``python`` block is executed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import zdfuzz

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
BIN = str(Path(sys.executable).parent)

#: commands that would run for minutes (or boot kernels) as written: run with
#: a smaller budget appended (click and argparse take the last value), or
#: only checked to exist (the lab: tests/lab boots it)
SHORTER = {
    "zdfuzz regressions find": " --time 2 --only unbind-does-not-wait",
    "zdfuzz soak": " --minutes 0.02 --presets e4 --types generic --engines native",
    "python -m zdfuzz_reference.diff": " --time 2",
}
HELP_ONLY = {"zdfuzz lab check": "boots a kernel under QEMU (tests/lab covers it)"}


def blocks(lang: str) -> list[tuple[int, str]]:
    """(offset, text) of every fenced block of ``lang``."""
    return [(m.start(), m.group(1)) for m in re.finditer(rf"^```{lang}\n(.*?)^```", README, re.S | re.M)]


def files() -> dict[str, str]:
    """The files the README shows: a zdf or toml block, named in backticks
    in the paragraph before it."""
    out = {}
    for lang in ("zdf", "toml"):
        for off, text in blocks(lang):
            before = README[:off].rstrip().rsplit("\n\n", 1)[-1]
            m = re.search(r"`([\w.-]+\.(?:zdf|toml))`", before)
            assert m is not None, f"a {lang} block without its file name: {text[:40]!r}"
            out[m.group(1)] = text
    return out


def commands() -> list[tuple[str, list[str]]]:
    """(command, the output lines shown under it) of every console block."""
    out: list[tuple[str, list[str]]] = []
    for _, text in blocks("console"):
        for line in text.splitlines():
            if line.startswith("$ "):
                out.append((line[2:], []))
            elif out and line.strip() and not line.startswith("..."):
                out[-1][1].append(line)
    return out


def shown_matches(shown: str, actual: str) -> bool:
    """A shown output line matches an actual line up to its numbers."""
    pattern = re.sub(r"\\\d(?:\\\.|\d|,)*|\d[\d.,]*", r"[\\d.,e+-]+", re.escape(shown.rstrip()))
    return re.search(pattern, actual) is not None


def without_comment(cmd: str) -> str:
    # a trailing `# ...` after two spaces is the README's comment, not the command's
    return re.split(r"\s{2,}# ", cmd, maxsplit=1)[0].strip()


def test_readme_gives_exactly_two_setup_commands() -> None:
    setup = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    setup = re.sub(r"^```.*?^```", "", setup, flags=re.S | re.M)
    commands = [line.strip() for line in setup.splitlines() if line.startswith("    ")]
    assert commands == ["pip install . && zdfuzz compare e1 p20", "bash scripts/test.sh"]


def test_readme_blocks_run_as_written(tmp_path: Path) -> None:
    for name, text in files().items():
        (tmp_path / name).write_text(text)
    assert {"q1.zdf", "mine.toml"} <= set(files())
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", ""), "COLUMNS": "80"}
    env.pop("NO_COLOR", None)
    ran = []
    # the console blocks and the python blocks, in README order
    pieces = [(off, "console", t) for off, t in blocks("console")] + [(off, "python", t) for off, t in blocks("python")]
    cmds = iter(commands())
    namespace: dict[str, object] = {"__name__": "readme"}  # one Python session, as a reader's
    for _, lang, text in sorted(pieces):
        if lang == "python":
            cwd = os.getcwd()
            os.chdir(tmp_path)
            try:
                exec(compile(text, "README.md", "exec"), namespace)
            finally:
                os.chdir(cwd)
            continue
        for _ in [line for line in text.splitlines() if line.startswith("$ ")]:
            cmd, shown = next(cmds)
            run = without_comment(cmd)
            if any(run.startswith(k) for k in HELP_ONLY):
                run = run.split(" --", 1)[0] + " --help"
            for prefix, extra in SHORTER.items():
                if run.startswith(prefix):
                    run += extra
            p = subprocess.run(["bash", "-c", run], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            out = p.stdout + p.stderr
            assert p.returncode in (0, 1), f"$ {run}\nexit {p.returncode}\n{out}"
            for line in shown:
                assert shown_matches(line, out), f"$ {run}\nshown: {line}\nactual:\n{out}"
            ran.append(run)
    assert len(ran) == len(commands()) >= 20


def test_readme_q1_example_gives_the_output_shown() -> None:
    program = zdfuzz.Program.parse(files()["q1.zdf"])
    bad = zdfuzz.Machine.for_program(program).run(program)
    assert bad.violation is not None
    shown = re.search(r"(I-L\d) \(safety\) at step (\d+)", README)
    assert shown is not None
    assert (bad.violation.invariant, bad.violation.step) == (shown.group(1), int(shown.group(2)))
    assert bad.violation.message in README
    good = zdfuzz.Machine.for_program(program, rules="e1").run(program)
    assert good.ok
    assert f"clean under e1: {good.steps} steps" in README


def test_readme_explore_example_numbers_stay_true() -> None:
    shown = re.search(
        r"zdfuzz explore --rules e4 --depth (\d+) --quiet.*?\n(no violation [^,]+, \d+ transitions)", README
    )
    assert shown is not None
    r = zdfuzz.explore("e4", depth=int(shown.group(1)))
    assert r.summary().startswith(shown.group(2)), (r.summary(), shown.group(2))
    q1 = re.search(r"(I-L2 \(safety\) reachable in 10 actions \(shortest\) — [^,]+, \d+ transitions)", README)
    assert q1 is not None
    r = zdfuzz.explore("p20", shape=zdfuzz.Shape(types=["generic"], pages=1, procs=1, addrs=1, tasks=1), depth=12)
    assert r.summary().startswith(q1.group(1)), (r.summary(), q1.group(1))


def test_readme_main_command_shows_what_the_rfc_breaks(tmp_path: Path) -> None:
    """The main job, as the README shows its output (with a shorter budget)."""
    from click.testing import CliRunner

    from zdfuzz.cli import compare, main

    setup = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    defaults = {p.name: p.default for p in compare.params}
    assert defaults["seconds"] == 10.0 and defaults["depth"] == 12 and defaults["corpus_dir"] == "zdfuzz-compare"
    shown = re.search(r"^```\n(e1 -> p20: .*?)^```", setup, re.S | re.M)
    assert shown is not None
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        r = CliRunner().invoke(main, ["compare", "e1", "p20", "--time", "3"])
    finally:
        os.chdir(cwd)
    assert r.exit_code == 1, r.output  # p20 breaks something
    out = r.stdout
    heads = [line for line in shown.group(1).splitlines() if line and not line.startswith(" ")]
    for line in heads:
        assert shown_matches(line.split(" (")[0], out), (line, out)
    broken = out.split("broken by p20")[1].split("fixed by p20")[0]
    assert "I-L2 memunmap_pages generic: 10 actions" in broken and "clean under e1" in broken
    assert "I-X2 truncate fsdax" in out.split("unchanged:")[1]  # v5.10's own bug is not "broken"


@pytest.mark.parametrize("cmd", ["zdfuzz demo", "zdfuzz fuzz --max-actions 8 --time 1 --corpus c"])
def test_documented_extras_exist(cmd: str, tmp_path: Path) -> None:
    """`zdfuzz demo` and `--max-actions` are documented, and run."""
    assert cmd.split()[1] in README and ("--max-actions" not in cmd or "--max-actions" in README)
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    p = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
