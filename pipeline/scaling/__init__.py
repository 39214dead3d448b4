"""Scaling laws: read a sweep's run files, fit L(N), L(C) and L(N, D) with bootstrap CIs, analyse, report.

Layers, bottom to top; a module imports its own layer and the ones below, never one above (checked by
tests/unit/test_scaling_layers.py, lazy imports included):

  records/   the run files a sweep leaves (result.json, per-token losses, plan.json, gradient reach): read + validate
  fits/      laws, bootstrap and intervals, the compute frontier, crossings, IsoFLOP, paired fits
  analyses/  result objects: the fitted sweep, positions and plateau, context gain, time axis, gradient reach, ...
  report/    fit.json, report.md sections and figures, rendered from the result objects; reads no run file
  tools/     compare two sweeps, the interval-coverage simulation
  cli.py     the four `pipeline scaling` commands

numpy/scipy/matplotlib only; never imports torch, Lightning or SLURM code (see docs/interfaces.md).
"""
