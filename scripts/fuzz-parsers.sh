#!/usr/bin/env bash
# A bounded libFuzzer run on the core's parsers: the .zdf text parser (and
# running what it parses), the TOML rules loader (and its round trip) and the
# byte decoder (fuzz/src/main.rs). Builds fuzz/ with SanitizerCoverage (the
# flags of the atheris engine, python/zdfuzz/drivers/sancov.py) against the
# libFuzzer atheris ships, and runs it from a copy of fuzz/seeds.
#
#   bash scripts/fuzz-parsers.sh [SECONDS (default 60)] [libFuzzer options...]
#
# Exit 0: no crash (a panic of the core is a crash); a crashing input is
# left in target/fuzz-parsers/ as crash-<sha1>. Needs the environment
# `pip install -e .[test]` makes (atheris, the zdfuzz package) and cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
if ! python -c "import atheris" 2>/dev/null; then
    echo "fuzz-parsers: skipped: atheris (its libFuzzer) is not installed; it has wheels for CPython <= 3.11"
    exit 0
fi
so=$(python -c "import atheris, os; print(os.path.join(atheris.path(), 'asan_with_fuzzer.so'))")
flags=$(python -c "from zdfuzz.drivers.sancov import SANCOV_RUSTFLAGS; print(' '.join(SANCOV_RUSTFLAGS))")
triple=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps the flags away from build scripts and proc macros
RUSTFLAGS="$flags -Clink-arg=$so -Clink-arg=-Wl,-rpath,$(dirname "$so")" \
    cargo build --quiet --release --locked --manifest-path fuzz/Cargo.toml \
    --target "$triple" --target-dir target/fuzz-parsers
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r fuzz/seeds/. "$work/"
# atheris's libFuzzer carries ASan's runtime: this binary is not
# ASan-instrumented, so the link order does not matter, and Rust's own
# allocations at exit are no leak
ASAN_OPTIONS="detect_leaks=0:verify_asan_link_order=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
    "target/fuzz-parsers/$triple/release/fuzz_parsers" "$work" \
    -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
    -artifact_prefix=target/fuzz-parsers/ "$@"
