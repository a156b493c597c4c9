"""How a model trains: the one loop (:mod:`.loop`: optimisers, schedules, resume, step, epoch,
evaluation), how fast it computes (:mod:`.acceleration`: bf16, channels-last, compile), what a
run records it ran (:mod:`.protocol`) and the CPUs and threads a process may use (:mod:`.cpus`).
"""
