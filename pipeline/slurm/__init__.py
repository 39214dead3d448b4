"""SLURM: render sbatch scripts from templates (`render`), submit them (`submit`), read job state (`status`).

May import: `pipeline.config` and the CSV metric reader `pipeline.training.logged_metrics` (no Lightning import at
module level, so `pipeline submit` starts without torch). Nothing below this package imports it.
"""
