#!/usr/bin/env bash
# Set up the suite on a fresh Debian machine: the Fashion-MNIST Debian package (when apt is
# available and we may use it), a virtual environment in .venv, the suite installed in it.
#   bash scripts/setup.sh          # to run benchmarks
#   bash scripts/setup.sh --dev    # also pytest and pytest-benchmark, to run the tests
set -euo pipefail
cd "$(dirname "$0")/.."

extra=""
[[ "${1:-}" == "--dev" ]] && extra="[dev]"

if [[ ! -d /usr/share/datasets/fashion-mnist ]] && command -v apt-get >/dev/null; then
    if [[ $(id -u) -eq 0 ]]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="-"; fi
    if [[ "$SUDO" != "-" ]]; then
        echo "setup: installing Debian's dataset-fashion-mnist (the embedded default's source data)"
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        echo "setup: cannot apt-get install dataset-fashion-mnist (not root, no sudo); use --data-root or --download" >&2
    fi
fi

PYTHON="${PYTHON:-python3}"
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
echo "setup: installing the suite into .venv (torch is large: the first time takes a few minutes)"
.venv/bin/python -m pip install -q -e ".${extra}"
echo "setup: done (.venv/bin/python)"
