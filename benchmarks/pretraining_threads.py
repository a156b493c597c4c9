"""Pretrain the mini preset's source once, in a new empty cache, with ``$OMP_NUM_THREADS`` torch
threads, and print the thread count, the source task's test accuracy and the seconds: the
weights of a suite pretraining depend on the thread count (spottune.training.cpus,
PRETRAINING_THREADS). benchmarks/RESULTS.md, "Pretraining threads", times it with farm-bench:

    farm-bench -n 2 --warmup 0 --timeout 900 \
        --vs "sh -c 'OMP_NUM_THREADS=2 exec .venv/bin/python benchmarks/pretraining_threads.py >>/tmp/t2.log'" \
        -- sh -c 'OMP_NUM_THREADS=1 exec .venv/bin/python benchmarks/pretraining_threads.py >>/tmp/t1.log'
"""
from __future__ import annotations

import os
import tempfile
import time

os.environ["SPOTTUNE_CACHE"] = tempfile.mkdtemp(prefix="spottune-pretraining-threads-")

from spottune.planning.grid import make_grid  # noqa: E402  (after the cache is chosen)
from spottune.pretraining.cache import SuitePretraining  # noqa: E402
from spottune.pretraining.weights import ensure_pretrained  # noqa: E402

if __name__ == "__main__":
    spec = make_grid("mini").runs()[0].hparams["backbone"]
    start = time.perf_counter()
    ensure_pretrained(spec, progress=False)
    record = SuitePretraining(spec).record()
    print(f"{record['source']['torch_threads']} thread(s): source test accuracy "
          f"{record['source']['test_accuracy']:.2f}, {time.perf_counter() - start:.1f} s")
