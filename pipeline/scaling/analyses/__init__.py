"""Analyses: each computes a result object and writes no markdown and draws nothing. Which runs a fit uses (learned
nothing, the learning-rate scan), every architecture's laws and the whole sweep's fit (`sweep_fit.SweepFit`),
loss by position and the plateau test, the gain from distant context, the time axis, gradient reach, matched runs,
source length, the loss on a token subset a user names; `study.Study` holds them all, computed from the sweep read
once.

May import: `pipeline.scaling.records`, `pipeline.scaling.fits`, `pipeline.cost` (the time axis),
`pipeline.data.tokenizer` (a token subset named by its text), numpy, scipy.
Never `report`, `tools` or the CLI.
"""
