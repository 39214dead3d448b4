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

May import: numpy, scipy, torch and `pipeline.models`; never Lightning, DeepSpeed, wandb or SLURM code. torch and
the models are imported only inside the functions that build a model (`structure.step_flops`, `num_params`) and in
`precision`, so `pipeline.scaling` can import the rest without loading torch. See docs/cost_model.md.
"""
