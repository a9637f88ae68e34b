#!/bin/sh
# The rustc wrapper of the atheris engine's build (python/zdfuzz/drivers/sancov.py
# sets it as RUSTC_WORKSPACE_WRAPPER): it adds the SanitizerCoverage flags in
# $ZDFUZZ_SANCOV_FLAGS only when the crate being compiled is one of
# $ZDFUZZ_SANCOV_CRATES (space-separated crate names).
#
# Why not RUSTFLAGS: RUSTFLAGS instruments every crate of the build, and
# libFuzzer then scans the counters of serde, toml and pyo3 after every
# execution and calls its compare hooks from their code, for coverage that
# says nothing about the model. Only the model crate is worth guidance.
#
#   rustc-sancov.sh RUSTC ARGS...   (cargo's wrapper convention)
rustc="$1"
shift
prev=
for a in "$@"; do
    if [ "$prev" = "--crate-name" ]; then
        case " $ZDFUZZ_SANCOV_CRATES " in
            *" $a "*)
                # word splitting of the flags is intended: one flag per word
                # shellcheck disable=SC2086
                exec "$rustc" "$@" $ZDFUZZ_SANCOV_FLAGS
                ;;
        esac
        break
    fi
    prev="$a"
done
exec "$rustc" "$@"
