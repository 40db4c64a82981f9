#!/usr/bin/env bash
# Build convcore with AddressSanitizer + UndefinedBehaviorSanitizer and Cython's bounds, wraparound
# and initialization checks (CONVCORE_SANITIZE=1 implies CONVCORE_CYTHON_DEBUG=1), in a throwaway
# venv, and run the kernel and reliability tests under it. Any sanitizer report aborts the run.
# Usage: bash scripts/run_sanitized_tests.sh [extra pytest args]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Build from a copy of the tracked files: pip builds local directories in place, and a sanitized
# build/ folder left in the work tree would be picked up by the next in-place build.
mkdir "$work/src"
(cd "$root" && git ls-files -z | xargs -0 cp --parents -t "$work/src")
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
CONVCORE_SANITIZE=1 "$work/venv/bin/pip" install -q --no-cache-dir "$work/src" pytest hypothesis
asan=$(gcc -print-file-name=libasan.so)
cd "$work"
# Python itself is not built with ASan: preload the runtime, and ignore CPython's intentional leaks.
LD_PRELOAD="$asan" \
CONVCORE_SANITIZED=1 \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1:max_allocation_size_mb=4096 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$work/venv/bin/python" -m pytest -q -p no:cacheprovider \
  "$root/tests/test_ops.py" "$root/tests/test_reliability.py" "$root/tests/test_nn.py" "$root/tests/test_inference.py" \
  "$root/tests/test_gemm_kernels.py" "$root/tests/test_isa.py" "$root/tests/test_limits.py" -k "not overlap_in_time" "$@"
