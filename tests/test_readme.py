"""The README's example stays true."""

from __future__ import annotations

import re
from pathlib import Path

import zdfuzz

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_q1_example_gives_the_output_shown() -> None:
    block = re.search(r"`q1.zdf`.*?```\n(.*?)```", README, re.S)
    assert block is not None
    program = zdfuzz.Program.parse(block.group(1))
    bad = zdfuzz.Machine.for_program(program).run(program)
    assert bad.violation is not None
    shown = re.search(r"(I-L\d) \(safety\) at step (\d+)", README)
    assert shown is not None
    assert (bad.violation.invariant, bad.violation.step) == (shown.group(1), int(shown.group(2)))
    assert bad.violation.message in README
    good = zdfuzz.Machine.for_program(program, rules="e1").run(program)
    assert good.ok
    assert f"clean under e1: {good.steps} steps" in README


def test_readme_gives_exactly_two_setup_commands() -> None:
    setup = README.split("## Set-up", 1)[1].split("##", 1)[0]
    commands = [line.strip() for line in setup.splitlines() if line.startswith("    ")]
    assert len(commands) == 2, commands
    assert "scripts/test.sh" in commands[1]


def test_readme_explore_example_numbers_stay_true() -> None:
    shown = re.search(
        r"zdfuzz explore --rules e4 --depth (\d+) --quiet.*?\n\s+(no violation [^,]+, \d+ transitions)", README
    )
    assert shown is not None
    r = zdfuzz.explore("e4", depth=int(shown.group(1)))
    assert r.summary().startswith(shown.group(2)), (r.summary(), shown.group(2))
    q1 = re.search(r"(I-L2 \(safety\) reachable in 10 actions \(shortest\) — [^,]+, \d+ transitions)", README)
    assert q1 is not None
    r = zdfuzz.explore("p20", shape=zdfuzz.Shape(types=["generic"], pages=1, procs=1, addrs=1, tasks=1), depth=12)
    assert r.summary().startswith(q1.group(1)), (r.summary(), q1.group(1))


def test_readme_main_command_runs_a_short_default_campaign() -> None:
    from click.testing import CliRunner

    from zdfuzz.cli import fuzz, main

    setup = README.split("## Set-up", 1)[1].split("##", 1)[0]
    first = [line.strip() for line in setup.splitlines() if line.startswith("    ")][0]
    assert first == "pip install . && zdfuzz fuzz"
    defaults = {p.name: p.default for p in fuzz.params}
    assert defaults["rules_name"] == "p20" and defaults["engine"] == "native" and defaults["seconds"] == 30.0
    assert defaults["types_"] == "private,fsdax,generic,p2pdma"
    runner = CliRunner()
    with runner.isolated_filesystem():
        r = runner.invoke(main, ["fuzz", "--time", "2", "--seed", "1"])
        assert r.exit_code == 0, r.output
        assert "new I-L2 memunmap_pages" in r.output
        assert "zdfuzz-corpus/findings/p20-I-L2-memunmap_pages-generic.zdf" in r.output.replace("\n", "")
