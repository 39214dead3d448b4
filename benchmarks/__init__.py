"""Benchmarks of the training pipeline (`make bench` = `python -m benchmarks.run`); see benchmarks/README.md."""
