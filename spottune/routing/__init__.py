"""SpotTune's per-image routing: the two-path network and its policy (:mod:`.network`) and the
registered methods SpotTune and SpotTune-Global (:mod:`.methods`).
"""
