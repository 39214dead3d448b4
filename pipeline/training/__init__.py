"""Training: the Lightning side that turns a config, a model and a data stream into a trained, resumable run.

Owns the LightningModule (`module`), the data module over the streaming loader (`datamodule`), the Trainer wiring
(`trainer`: strategy, precision, loggers, callbacks), checkpoint files and their verification (`checkpoint_files`),
the Lightning checkpoint pieces (`checkpoint_callbacks`), preemption signals (`preemption`), DeepSpeed on CPU and GPU
(`deepspeed_strategy`), throughput and logged-metric readers (`throughput`, `logged_metrics`), W&B (`wandb_logger`),
the LR schedule, evaluation (BLEU/chrF), the gradient-reach callback, and how a training process ends
(`process_exit`).

May import: `pipeline.config`, `pipeline.models`, `pipeline.data`, `pipeline.scaling`, Lightning, DeepSpeed, wandb.
Never imports `pipeline.slurm`, `pipeline.sweep` or the CLI: the trainer knows nothing of SLURM beyond the
`SLURM_*` variables Lightning reads.
"""
