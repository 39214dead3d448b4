"""Scaling laws: load sweep result records, fit L(N), L(C) and L(N, D) with bootstrap CIs, write the report.

numpy/scipy/matplotlib only; never imports torch, Lightning or SLURM code (see docs/interfaces.md).
"""
