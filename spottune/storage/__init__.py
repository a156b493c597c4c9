"""A run on disk: its identity and folder records (:mod:`.records`: RunSpec, RunFolder, the one
Status vocabulary), the claim of the one process working in a folder (:mod:`.claim`) and the
run's checkpoints (:mod:`.checkpoint`). The lowest layer: it imports no model and no loader.
"""
