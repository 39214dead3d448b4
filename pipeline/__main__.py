"""`python -m pipeline` == the `pipeline` console script (what sbatch scripts call)."""

import sys

from pipeline.cli import main

sys.exit(main())
