#!/usr/bin/env bash
# GPU check of issue 7: per-method training / evaluation images/s and peak GPU memory, fp32 and
# bf16, and images/s of 1, 2, 4 runs sharing the GPU (runs_per_gpu, issue 12), as a Markdown table
# (benchmarks/gpu_check.py documents it). Usage, from anywhere:
#   bash benchmarks/gpu_check.sh            # on one GPU, well under 5 minutes
#   bash benchmarks/gpu_check.sh --smoke    # on any machine: tiny shapes (the test suite runs this)
# Python: $PYTHON if set, else the repository's .venv, else python3 / python on PATH; the first
# that can import the suite (torch, torchvision, numpy, pyyaml, tqdm, ...) is used. Nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

PY=""
REASONS=""
for candidate in "${PYTHON:-}" .venv/bin/python python3 python; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || { REASONS+="  $candidate: not found"$'\n'; continue; }
    if err=$("$candidate" -c "import spottune.estimates.workload" 2>&1); then
        PY="$candidate"
        break
    fi
    REASONS+="  $candidate: $(printf '%s\n' "$err" | tail -n 1)"$'\n'
done
if [ -z "$PY" ]; then
    printf 'gpu_check: no Python here can import the suite:\n%s' "$REASONS" >&2
    printf 'gpu_check: install it with `bash scripts/setup.sh` (needs a package registry), or set PYTHON\n' >&2
    printf 'gpu_check: to an interpreter that has torch, torchvision, numpy, pyyaml and tqdm.\n' >&2
    exit 3
fi
exec "$PY" benchmarks/gpu_check.py "$@"
