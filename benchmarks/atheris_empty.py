#!/usr/bin/env python3
"""A near-empty atheris target: the ceiling for any atheris harness.

``benchmarks/engines.py`` runs it with exactly the settings it uses for the
zdfuzz harness (``python/zdfuzz/drivers/atheris_harness.py``): the same
interpreter, preload, libFuzzer flags and input sizes, and a
``TestOneInput`` instrumented the same way (``atheris.instrument_func``).
What is left is libFuzzer's own loop and one Python call per input, so
harness exec/s divided by this target's exec/s is the share of the fuzzer's
time the model leaves to the fuzzer.
"""

from __future__ import annotations

import sys

import atheris


def test_one_input(data: bytes) -> None:
    # the harness's first statements, without the model call
    if not data:
        return
    if data[0] == 0x5A:
        return


def main() -> None:
    atheris.Setup(sys.argv, atheris.instrument_func(test_one_input))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
