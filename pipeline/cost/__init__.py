"""Cost model: what a training step costs in *time*, from each architecture's structure, and projections of it.

FLOPs alone cannot show the thesis of this project: an LSTM's step t waits for step t-1, so past some width a GPU
cannot turn its FLOP/s into tokens/s. This package owns
- `structure`: per architecture and config, training FLOPs per step (from the models' own `flops_per_token`),
  sequential depth (dependent kernel steps per forward + backward) and the LSTMs' recurrent cells (`step_cost`);
- `recurrent`: how cuDNN runs an LSTM step on a GPU (one thin GEMM per layer and step, size-dependent speed,
  per-step latency, the layer wavefront);
- `step_time`: the model time ~ max(FLOPs / (peak * efficiency), depth * step_latency) + overhead (on a GPU:
  parallel FLOPs + recurrent cells), and its calibration from measured step times with the fit error;
- `accelerators`: peak FLOP/s per precision, memory and NVLink bandwidth of named accelerators (sources cited);
- `published` + `gpu_fit` -> `gpu_profile.json`: published GPU measurements and the profile fitted on part of them;
- `multi_gpu`: data parallel with the gradient all-reduce over NVLink;
- `projection`: tokens/s and GPU-hours on a named accelerator (always labelled as projections; `projected_seconds`
  is the one projection of training time, the scaling report's included), and the check against every published
  figure (`python -m pipeline.cost.projection`; as docs/cost_model.md's tables: `check_report`);
- `precision`: the cuDNN bf16 check for LSTMs at trainer start.

May import: numpy, scipy, torch and `pipeline.models`; never Lightning, DeepSpeed, wandb or SLURM code. torch and
the models are imported only inside the functions that build a model (`structure.step_flops`, `num_params`) and in
`precision`, so `pipeline.scaling` can import the rest without loading torch. See docs/cost_model.md.
"""
