"""The minimizer (1-minimal, keeps the signature), explain, and bad .zdf input."""

from __future__ import annotations

import random
from pathlib import Path

from click.testing import CliRunner

import zdfuzz
from programs import Q1  # noqa: E402
from zdfuzz.cli import main
from zdfuzz.corpus import Signature


def signature_of(p: zdfuzz.Program) -> Signature | None:
    try:
        v = zdfuzz.Machine.for_program(p).run(p, trace=False)
    except zdfuzz.ProgramError:
        return None
    return Signature(*v.signature) if v.signature else None


def long_violating_program(n: int, seed: int) -> zdfuzz.Program:
    """A random p20 program of at least n actions whose last action breaks
    an invariant (the decoder stops at the first violation)."""
    rng = random.Random(seed)
    while True:
        p = zdfuzz.Program.from_bytes(rng.randbytes(n * 8), rules="p20")
        if len(p) >= n and signature_of(p) is not None:
            return p


def smaller_operand_variants(p: zdfuzz.Program) -> list[zdfuzz.Program]:
    """Every program with one operand of one action lowered (as text)."""
    lines = p.to_text().splitlines()
    header, body = lines[:2], lines[2:]
    out = []
    for i, line in enumerate(body):
        words = line.split()
        for j, w in enumerate(words[1:], start=1):
            key, value = w.split("=", 1)
            smaller: list[str] = []
            if value.isdigit():
                smaller = [str(k) for k in range(int(value))]
            elif value == "kernel":
                smaller = ["gup"]
            elif key == "cached" and value != "none":
                smaller = ["none"] + [str(k) for k in range(int(value))]
            elif key == "flags" and value != "0":
                smaller = ["0"]
            for s in smaller:
                nw = words.copy()
                nw[j] = f"{key}={s}"
                out.append(zdfuzz.Program.parse("\n".join(header + body[:i] + [" ".join(nw)] + body[i + 1 :])))
    return out


def assert_one_minimal(p: zdfuzz.Program, sig: Signature) -> None:
    assert signature_of(p) == sig
    for i in range(len(p)):
        dropped = p.select([k for k in range(len(p)) if k != i])
        assert signature_of(dropped) != sig, f"action {i} can be dropped:\n{p.to_text()}"
    for q in smaller_operand_variants(p):
        assert signature_of(q) != sig, f"an operand can be lowered:\n{q.to_text()}"


def test_minimize_200_actions_is_one_minimal_and_keeps_the_signature() -> None:
    p = long_violating_program(200, seed=3)
    sig = signature_of(p)
    assert sig is not None
    r = zdfuzz.minimize(p)
    assert Signature(*r.signature) == sig
    assert r.original_len >= 200 and len(r.program) < 40
    assert_one_minimal(r.program, sig)


def test_minimize_cli_writes_a_replayable_file(tmp_path: Path) -> None:
    big = tmp_path / "big.zdf"
    big.write_text(long_violating_program(120, seed=5).to_text())
    out = tmp_path / "small.zdf"
    r = CliRunner().invoke(main, ["minimize", str(big), "-o", str(out)])
    assert r.exit_code == 0, r.output
    small = zdfuzz.Program.parse(out.read_text())
    assert signature_of(small) == signature_of(zdfuzz.Program.parse(big.read_text()))
    r = CliRunner().invoke(main, ["replay", str(out)])
    assert r.exit_code == 1


def test_minimize_of_q1_is_the_readme_program() -> None:
    r = zdfuzz.minimize(zdfuzz.Program.parse(Q1))
    assert r.signature == ("I-L2", "memunmap_pages", "generic", "p20")
    assert [str(a).split()[0] for a in r.program.actions] == [
        "memremap_pages",
        "dev_dax_huge_fault",
        "get_user_pages",
        "memunmap_pages",
        "step",
        "step",
        "step",
        "rcu_grace_period",
        "step",
        "step",
    ]


def test_minimize_refuses_clean_programs(tmp_path: Path) -> None:
    f = tmp_path / "clean.zdf"
    f.write_text("rules e1\nconfig types=generic\nmemremap_pages pgmap=0\n")
    r = CliRunner().invoke(main, ["minimize", str(f)])
    assert r.exit_code == 2
    assert "breaks no invariant" in r.output


def test_explain_names_functions_cpus_changes_and_the_invariant(tmp_path: Path) -> None:
    f = tmp_path / "q1.zdf"
    f.write_text(Q1)
    r = CliRunner().invoke(main, ["explain", str(f)])
    assert r.exit_code == 1, r.output
    out = r.output
    assert "cpu 1  get_user_pages proc=0 addr=0 flags=0 cpu=1" in out
    assert "GUP caller takes a page reference" in out
    assert "pfn 1 refcount 1 -> 2" in out
    assert 'memunmap_pages(pgmap=0) at "percpu_ref_kill"' in out
    assert "pgmap 0 ref 5 -> 4" in out
    assert "I-L2 (safety) at step 9" in out
    assert "invariant I-L2: memunmap_pages tears the struct pages down only when no page of the pgmap is in use" in out
    assert "signature: I-L2 memunmap_pages generic p20" in out
    r = CliRunner().invoke(main, ["explain", str(f), "--rules", "e1"])
    assert r.exit_code == 0 and "no violation under e1" in r.output


def test_corrupted_and_truncated_files_name_their_line(tmp_path: Path) -> None:
    lines = Q1.splitlines()
    corrupted = tmp_path / "corrupted.zdf"
    corrupted.write_text(
        "\n".join(lines[:4] + ["get_user_pages proc=0 addr=0 flags=\x01\x02 cpu=1"] + lines[5:]) + "\n"
    )
    truncated = tmp_path / "truncated.zdf"
    truncated.write_text(Q1[: Q1.index("flags=0 cpu=1")])  # cut inside line 5
    binary = tmp_path / "binary.zdf"
    binary.write_bytes(b"rules p20\n\xff\xfe\x00garbage")
    for cmd in ("replay", "minimize", "explain"):
        r = CliRunner().invoke(main, [cmd, str(corrupted)])
        assert r.exit_code == 2, (cmd, r.output)
        assert f"{corrupted}:5:" in r.output.replace("\n", "") and "flags" in r.output
        r = CliRunner().invoke(main, [cmd, str(truncated)])
        assert r.exit_code == 2, (cmd, r.output)
        assert f"{truncated}:5:" in r.output.replace("\n", ""), r.output
        assert "get_user_pages" in r.output and "needs operand" in r.output
        r = CliRunner().invoke(main, [cmd, str(binary)])
        assert r.exit_code == 2 and f"{binary}:2:1: not UTF-8 (byte 0xff)" in r.output.replace("\n", ""), r.output


def test_a_program_cut_between_lines_is_reported_when_it_no_longer_replays(tmp_path: Path) -> None:
    f = tmp_path / "cut.zdf"
    f.write_text(
        "rules p20\nconfig types=generic\nmemremap_pages pgmap=0\nget_user_pages proc=0 addr=0 flags=0 cpu=1\n"
    )
    for cmd in ("replay", "explain", "minimize"):
        r = CliRunner().invoke(main, [cmd, str(f)])
        assert r.exit_code == 2, (cmd, r.output)
        assert f"{f}:4" in r.output.replace("\n", "") and "not enabled" in r.output
