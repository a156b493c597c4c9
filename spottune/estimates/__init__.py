"""What a grid costs before it runs (``--dry-run``): GPU-hours from the committed throughput table
(:mod:`.cost`, :mod:`.throughput`, ``throughput.yaml``), the synthetic workloads that measure it
(:mod:`.workload`), image counts known without reading an image (:mod:`.dataset_sizes`) and the
wall time on this machine (:mod:`.walltime`).
"""
