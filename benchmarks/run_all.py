#!/usr/bin/env python
"""``spottune`` from a checkout without installing: the same command and arguments (``--help``).

The command lives in :mod:`spottune.cli` (the ``spottune`` console script of ``pip install .``);
this file puts the checkout first on ``sys.path`` and runs it.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from spottune.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
