#!/usr/bin/env bash
# Set up (with the dev extra) and run the whole test suite. SLURM integration tests run when a
# cluster answers (bash slurm/local/start.sh starts a local one) and are skipped otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
exec .venv/bin/python -m pytest -q "$@"
