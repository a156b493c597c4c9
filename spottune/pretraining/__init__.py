"""Pretrained backbones: built from a preset's ``backbone`` spec, loaded or pretrained by the suite
(:mod:`.weights`), and the cache of the suite's own pretrainings, safe on shared storage
(:mod:`.cache`).
"""
