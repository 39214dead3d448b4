"""Data parallel over N GPUs: each step adds the all-reduce of the gradients over the GPUs' interconnect.

A ring all-reduce sends and receives 2 (N - 1) / N x the gradient bytes per GPU (Patarasuk & Yuan 2009; NCCL's
"bus bandwidth" convention, https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md), over one
direction of each GPU's NVLink (half the datasheet's both-directions figure). `efficiency` is the fraction of that
the step actually loses time at: fitted on one published 4-GPU row (`pipeline.cost.gpu_fit`), it also absorbs
what data parallelism adds besides bandwidth (the slowest GPU's batch sets the step, bucket launches) minus what
overlaps with backward. The rest of the step is the one-GPU step at the per-GPU batch.
"""

from __future__ import annotations


def allreduce_s(
    params: int, grad_bytes: float, n_gpus: int, nvlink_bytes_per_s: float, efficiency: float
) -> float:
    """Seconds per step the gradient all-reduce adds (0 on one GPU)."""
    if n_gpus < 1:
        raise ValueError(f"n_gpus={n_gpus!r}: must be >= 1")
    if n_gpus == 1:
        return 0.0
    if nvlink_bytes_per_s <= 0 or efficiency <= 0:
        raise ValueError(
            "a multi-GPU projection needs the accelerator's NVLink bandwidth and an efficiency > 0"
        )
    moved = 2.0 * (n_gpus - 1) / n_gpus * params * grad_bytes
    return moved / (nvlink_bytes_per_s / 2.0 * efficiency)


def data_parallel_tokens_per_s(step_s: float, tokens_per_step: float, comm_s: float, n_gpus: int) -> float:
    """Tokens/s summed over `n_gpus` GPUs, each running `tokens_per_step` per step of `step_s + comm_s`."""
    return n_gpus * tokens_per_step / (step_s + comm_s)
