"""Fits: the scaling laws (power laws, Chinchilla L(N, D)), their bootstrap intervals, the compute frontier (the one
lower envelope), L(C) on it, where two laws cross (independent and paired over matched runs), IsoFLOP profiles,
and the points (seeds of one size, budget and rate) every fit resamples.

May import: `pipeline.scaling.records`, numpy, scipy. Never `analyses`, `report`, `tools` or the CLI.
"""
