"""Sweeps: a grid file (`grid`) becomes planned runs, trained locally or as a SLURM array (`runner`), each leaving
one result record for `pipeline.scaling`.

May import: `pipeline.config`, `pipeline.models`, `pipeline.data`, `pipeline.scaling`, `pipeline.training`,
`pipeline.slurm`. Nothing below this package imports it.
"""
