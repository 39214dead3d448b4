"""Cost model: what a training step costs in *time*, from each architecture's structure, and projections of it.

FLOPs alone cannot show the thesis of this project: an LSTM's step t waits for step t-1, so past some width a GPU
cannot turn its FLOP/s into tokens/s. This package owns
- `structure`: per architecture and config, training FLOPs per step (from the models' own `flops_per_token`) and
  sequential depth (dependent kernel steps per forward + backward);
- `step_time`: the model time ~ max(FLOPs / (peak * efficiency), depth * step_latency) + overhead, and its
  calibration from measured step times (scipy least squares in log space) with the fit error;
- `accelerators`: peak FLOP/s, step latency and memory bandwidth of named accelerators (sources cited);
- `projection`: tokens/s and GPU-hours on a named accelerator (always labelled as projections);
- `precision`: the cuDNN bf16 check for LSTMs at trainer start.

Imports: numpy, scipy and torch only (torch lazily, for building a model's FLOPs formula), never Lightning,
DeepSpeed, wandb or SLURM code; `pipeline.scaling` may import everything here except `structure.step_flops`'s
model build at module load. See docs/cost_model.md.
"""
