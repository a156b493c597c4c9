#!/usr/bin/env bash
# The suite as a user installs it: a wheel of this checkout (pip install, not editable) in a
# fresh virtual environment in a temporary folder, run from there (outside the checkout, so that
# `import spottune` can only find the installed package). It runs the `spottune` console script
# on a one-epoch grid of the embedded default, then `spottune report`, and reads the packaged
# presets, SLURM profiles and published numbers. CI runs it (.ci/run).
#   bash scripts/check_install.sh          # a few minutes (mostly pip); $SPOTTUNE_CACHE is reused if set
#   KEEP=1 bash scripts/check_install.sh   # keep the temporary folder (its path is printed)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TMP="$(mktemp -d -t spottune-install-XXXXXX)"
[[ -n "${KEEP:-}" ]] || trap 'rm -rf "$TMP"' EXIT
say() { echo "check_install [${SECONDS}s]: $*" >&2; }

# build from a copy of the working tree's files (in a git checkout: tracked and untracked, not
# ignored): no stale build/ folder of the checkout ends up in the wheel, and the checkout is left
# as it is
mkdir "$TMP/src" "$TMP/work"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$TMP/src"
else
    tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./results \
        --exclude=./.ci-cache --exclude=./.slurm -cf - . | tar -xf - -C "$TMP/src"
fi
say "installing the suite (wheel, not editable) into a fresh virtual environment in $TMP"
"$PYTHON" -m venv "$TMP/venv"
if ! "$TMP/venv/bin/python" -m pip install -q --no-compile "$TMP/src" 2>"$TMP/pip.log"; then
    cat "$TMP/pip.log" >&2; say "pip install failed"; exit 1
fi
rm -rf "$TMP/src"

cd "$TMP/work"
export PATH="$TMP/venv/bin:$PATH"
export SPOTTUNE_CACHE="${SPOTTUNE_CACHE:-$TMP/cache}"  # the pretrained network: reused when already there

say "the installed package, its data files and the console script"
python - "$TMP/venv" <<'EOF'
import sys
from pathlib import Path

import spottune
from spottune.planning.grid import PRESET_DIR
from spottune.launch import slurm_resources
from spottune.launch.slurm import PROFILE_DIR
from spottune.report.reference import REFERENCE_DIR, load_published

venv = Path(sys.argv[1]).resolve()
for path in (Path(spottune.__file__), PRESET_DIR, PROFILE_DIR, REFERENCE_DIR):
    assert path.resolve().is_relative_to(venv), f"{path} is not inside the installed package under {venv}"
assert slurm_resources({"gpus": 1}, "local")["partition"] == "debug", "the packaged SLURM profile 'local'"
assert len(load_published("decathlon")) > 0, "the packaged published numbers"
print(f"spottune {spottune.__version__} from {Path(spottune.__file__).parent}")
EOF
[[ "$(command -v spottune)" == "$TMP/venv/bin/spottune" ]] || { say "spottune is not the installed console script"; exit 1; }

say "a one-epoch grid with the console script, then its report"
grid=(--methods finetune,spottune --datasets digits --seeds 0 --no-progress
      --set epochs=1 "lr_milestones=[]" backbone.pretrained.epochs=1 backbone.pretrained.max_images=512)
spottune "${grid[@]}"
test -s results/mini/tables/summary.md && ls results/mini/figures/*.png >/dev/null
spottune report results/mini --into report --tables-only >/dev/null
test -s report/tables/summary.md && test -s report/tables/mini.md && test -s report/report.html
cmp -s results/mini/tables/summary.md report/tables/summary.md || { say "report differs from the run's tables"; exit 1; }
say "ok: the installed spottune ran a grid and wrote its report outside the checkout"
