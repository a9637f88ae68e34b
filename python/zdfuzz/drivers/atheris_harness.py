#!/usr/bin/env python3
"""atheris harness: one ``Machine.run_bytes`` call per input.

Run by ``zdfuzz fuzz --engine atheris``, which builds the coverage-
instrumented core, preloads atheris's libFuzzer and sets the environment:

    ZDFUZZ_SANCOV_CORE  path of the instrumented ``_core`` library (loaded
                        here before anything imports ``zdfuzz._core``;
                        unset: the normal extension, Python coverage only)
    ZDFUZZ_HARNESS      JSON {"rules": ..., "types": [...], "known": PATH,
                        "report": true}  ("report": false never raises:
                        for measuring coverage and speed)

An input's first byte picks the device types (a non-empty subset of the
campaign's, as the native engine's swarm does); the rest is a byte program
for the total decoder. A violation whose signature is not in the ``known``
file raises, so libFuzzer saves the input as a crash artifact; known ones
do not, so a campaign is not stopped by the same bug again. This file must
stay an executable script: libFuzzer's -fork/-jobs modes re-execute argv[0].
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys


def _load_instrumented_core() -> None:
    path = os.environ.get("ZDFUZZ_SANCOV_CORE")
    if not path:
        return
    spec = importlib.util.spec_from_file_location("zdfuzz._core", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the instrumented core {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["zdfuzz._core"] = module
    spec.loader.exec_module(module)


_load_instrumented_core()

import atheris  # noqa: E402

import zdfuzz  # noqa: E402


def subsets(types: list[str]) -> list[list[str]]:
    """Non-empty subsets of ``types`` in the native engine's order."""
    return [[t for i, t in enumerate(types) if bits >> i & 1] for bits in range(1, 1 << len(types))]


def decode(data: bytes, rules: str, types: list[str]) -> zdfuzz.Program:
    """The program an input stands for (what a crash artifact reproduces)."""
    subs = subsets(types)
    sub = subs[data[0] % len(subs)] if data else subs[-1]
    return zdfuzz.Program.from_bytes(data[1:], rules=rules, shape=zdfuzz.Shape(types=sub))


class NewViolation(Exception):
    """A violation of a signature the campaign has not found yet."""


def main() -> None:
    cfg = json.loads(
        os.environ.get("ZDFUZZ_HARNESS", '{"rules": "p20", "types": ["private", "fsdax", "generic", "p2pdma"]}')
    )
    types = list(cfg["types"])
    machines = [zdfuzz.Machine(rules=cfg["rules"], shape=zdfuzz.Shape(types=s)) for s in subsets(types)]
    known: set[tuple[str, ...]] = set()
    if cfg.get("known") and os.path.exists(cfg["known"]):
        with open(cfg["known"]) as f:
            known = {tuple(s) for s in json.load(f)}

    report = bool(cfg.get("report", True))

    def test_one_input(data: bytes) -> None:
        if not data:
            return
        v = machines[data[0] % len(machines)].run_bytes(data[1:])
        sig = v.signature
        if report and sig is not None and sig not in known:
            raise NewViolation(" ".join(sig))

    atheris.Setup(sys.argv, atheris.instrument_func(test_one_input))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
