"""`python -m pipeline` == the `pipeline` console script (what sbatch scripts call)."""

from pipeline.cli import entry

entry()
