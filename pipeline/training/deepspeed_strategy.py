"""`train.strategy: deepspeed`: the DeepSpeed config generated from the run config, and the Lightning strategy.

The generated config carries what the run config already says (accumulation, gradient clipping, bf16, ZeRO stage,
optimizer offload); a user JSON (`train.deepspeed_config`) is merged over it key by key, and the effective config is
written to `RUN_DIR/deepspeed_config.json` so a run records exactly what DeepSpeed was given.

On GPUs Lightning's stock `DeepSpeedStrategy` runs (NCCL), with one addition: `ZeroStrategy` saves each checkpoint
into an emptied directory. Lightning refuses that strategy without CUDA, although DeepSpeed itself runs on CPU (its
CPU accelerator, gloo collectives): `CPUDeepSpeedStrategy` removes Lightning's three CUDA assumptions and nothing
else, so CI trains ZeRO-1/2/3 with the very engine, partitioning and checkpoint format used on a cluster.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
from pathlib import Path
from typing import Any

import deepspeed
import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

from pipeline.config import ConfigError, RunConfig, load_mapping

CONFIG_NAME = "deepspeed_config.json"
# Set by Lightning from `Trainer(accumulate_grad_batches=...)`; it refuses a config that already holds it.
LIGHTNING_OWNED = ("gradient_accumulation_steps",)


def generated_config(cfg: RunConfig, accelerator: str) -> dict[str, Any]:
    """The DeepSpeed config implied by the run config (before any user JSON).

    `train_micro_batch_size_per_gpu` is 1 because our batches hold a token budget (`data.batch_tokens`), not a fixed
    number of sentences; DeepSpeed uses the micro batch only for its throughput printout and the
    `train_batch_size = micro x accumulation x world` consistency check, never for the loss or the gradients.
    """
    t = cfg.train
    zero: dict[str, Any] = {
        "stage": t.zero_stage,
        "contiguous_gradients": True,
        "overlap_comm": accelerator == "gpu",  # overlapping needs CUDA streams; on CPU it only adds copies
        "reduce_scatter": True,
    }
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": t.accumulate,
        "gradient_clipping": float(cfg.optim.grad_clip),
        "bf16": {"enabled": t.precision.startswith("bf16")},
        "zero_optimization": zero,
        # our optimizer comes from `configure_optimizers` (torch AdamW/SGD), which DeepSpeed wraps for ZeRO
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,  # Lightning logs; DeepSpeed's own per-step print is noise
        "wall_clock_breakdown": False,
    }
    if t.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": accelerator == "gpu"}
        # DeepSpeed insists on its compiled DeepSpeedCPUAdam for offload unless told otherwise; the torch optimizer
        # from `configure_optimizers` steps the offloaded fp32 state correctly, only slower.
        config["zero_force_ds_cpu_optimizer"] = False
    return config


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge, `override` winning; neither input is modified."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_user_config(path: str | Path) -> dict[str, Any]:
    """The user's DeepSpeed JSON (DeepSpeed itself checks its keys; the ones the run config owns are checked in
    `effective_config`)."""
    return load_mapping(Path(path), "train.deepspeed_config")


def effective_config(cfg: RunConfig, accelerator: str) -> dict[str, Any]:
    """Generated config with the user JSON merged over it; checks the keys the run config must keep owning."""
    config = generated_config(cfg, accelerator)
    if not cfg.train.deepspeed_config:
        return config
    user = load_user_config(cfg.train.deepspeed_config)
    where = f"train.deepspeed_config ({cfg.train.deepspeed_config})"
    if "gradient_accumulation_steps" in user and user["gradient_accumulation_steps"] != cfg.train.accumulate:
        raise ConfigError(
            f"{where}: gradient_accumulation_steps={user['gradient_accumulation_steps']} disagrees with "
            f"train.accumulate={cfg.train.accumulate}; set train.accumulate instead"
        )
    if "train_batch_size" in user:
        raise ConfigError(
            f"{where}: remove train_batch_size; it follows from train.accumulate and the world size"
        )
    stage = user.get("zero_optimization", {}).get("stage", cfg.train.zero_stage)
    if stage != cfg.train.zero_stage:
        raise ConfigError(
            f"{where}: zero_optimization.stage={stage} disagrees with train.zero_stage={cfg.train.zero_stage}; "
            "set train.zero_stage instead (resume and export read it)"
        )
    return merge(config, user)


def save_config_json(config: dict[str, Any], run_dir: Path) -> Path:
    """Write the effective config atomically (every rank writes the same bytes; no rank waits for another)."""
    from pipeline.scaling.records.json_file import write_text_atomic

    return write_text_atomic(run_dir / CONFIG_NAME, json.dumps(config, indent=2) + "\n")


class ZeroStrategy(DeepSpeedStrategy):
    """Lightning's `DeepSpeedStrategy` (used as is on GPUs) that saves each checkpoint into an empty directory.

    DeepSpeed writes one file per rank into the checkpoint directory and Lightning re-saves `last.ckpt` in place,
    so after a resume on fewer ranks the old run's extra shards would stay beside the new ones, and DeepSpeed's own
    loaders then refuse the mix ("Possibly due to an overwrite of an old checkpoint"). Clearing the directory first
    is crash-safe here: a checkpoint only counts once its metadata sidecar (written after the save) matches it.
    """

    def save_checkpoint(self, checkpoint: dict, filepath: Any, storage_options: Any = None) -> None:
        filepath = self.broadcast(filepath)
        if self.is_global_zero and Path(filepath).is_dir():
            shutil.rmtree(filepath)
        self.barrier("zero checkpoint directory cleared")
        super().save_checkpoint(checkpoint, filepath, storage_options)


class CPUDeepSpeedStrategy(ZeroStrategy):
    """Lightning's `DeepSpeedStrategy` minus its CUDA-only checks, for CPU processes talking over gloo.

    Lightning (2.6) rejects a non-CUDA accelerator in `setup_environment`, demands device indices 0..n-1 in
    `setup_distributed`, and hands DeepSpeed `device_rank=root_device.index`, which is None on CPU (DeepSpeed then
    fails comparing None >= 0). DeepSpeed picks its CPU accelerator by itself when torch has no CUDA, and
    `deepspeed.init_distributed("gloo")` is what the parent calls anyway; the engine, ZeRO partitioning, checkpoint
    format and the rest of the Lightning glue are inherited unchanged.
    """

    strategy_name = "deepspeed_cpu"

    def setup_environment(self) -> None:
        DDPStrategy.setup_environment(
            self
        )  # the parent's body without its "only supported on CUDA GPUs" raise

    def setup_distributed(self) -> None:
        # the parent's body without `_validate_device_index_selection` (CPU devices have index None)
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    def _setup_model_and_optimizer(
        self, model: Any, optimizer: Any, lr_scheduler: Any = None
    ) -> tuple[deepspeed.DeepSpeedEngine, Any]:
        # the parent's body with the local rank as DeepSpeed's device rank (the CPU device has no index)
        engine, ds_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self.local_rank),
            config=self.config,
            model=model,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            dist_init_required=False,
        )
        return engine, ds_optimizer


def build_deepspeed_strategy(cfg: RunConfig, accelerator: str) -> DeepSpeedStrategy:
    """Strategy for `Trainer(strategy=...)`; also writes RUN_DIR/deepspeed_config.json (the effective config)."""
    config = effective_config(cfg, accelerator)
    save_config_json(config, cfg.resolved_run_dir)
    for key in LIGHTNING_OWNED:  # Lightning sets it from Trainer(accumulate_grad_batches=train.accumulate)
        config.pop(key, None)
    if accelerator == "cpu":
        return CPUDeepSpeedStrategy(config=config, process_group_backend="gloo")
    return ZeroStrategy(config=config, process_group_backend="nccl")


def is_partitioned(model: torch.nn.Module) -> bool:
    """True when ZeRO-3 has partitioned the parameters (each rank then holds a slice, `p.numel()` is 0)."""
    return any(hasattr(p, "ds_id") for p in model.parameters())


def unpartitioned_copy(model: torch.nn.Module, materialize: bool) -> torch.nn.Module:
    """A plain (hook-free) copy of a ZeRO-3 model, for decoding and counting parameters after training.

    Collective: every rank must call it. Parameters are all-gathered on every rank (`GatheredParameters`); where
    `materialize` is True (rank 0, which decodes) the full weights are copied into a fresh model on the same device,
    elsewhere the copy is built on the meta device (shapes only, no memory). Decoding the ZeRO-3 model itself on one
    rank would hang: its forward hooks all-gather parameters from ranks that are not running the forward.
    """
    params = dict(model.named_parameters())
    device = next(iter(params.values())).device
    with torch.device(device if materialize else "meta"):
        copy_ = type(model)(model.config)
    with deepspeed.zero.GatheredParameters(list(params.values()), modifier_rank=None), torch.no_grad():
        if materialize:
            for name, param in copy_.named_parameters():
                param.copy_(params[name].data)
    if materialize:
        for name, buffer in model.named_buffers():  # buffers are never partitioned
            copy_.get_buffer(name).copy_(buffer)
    return copy_.train(model.training)


class ZeroResumeError(ValueError):
    """A ZeRO checkpoint cannot be resumed by this run; the message says how to convert it."""


def check_zero_resume(ckpt: Path, cfg: RunConfig) -> None:
    """Fail before any process starts when a ZeRO checkpoint cannot be loaded by this run.

    DeepSpeed cannot re-partition ZeRO optimizer shards on load (it raises deep inside `load_checkpoint`). Its
    universal format can: `pipeline export RUN_DIR --universal` writes one beside it, and a DeepSpeed config with
    `"checkpoint": {"load_universal": true}` loads it on any number of ranks.
    """
    from pipeline.training.exported_weights import is_universal, zero_world_size

    run_dir = ckpt.parent.parent
    if not ckpt.is_dir():
        raise ZeroResumeError(
            f"{ckpt} is a single-file (DDP) checkpoint; train.strategy=deepspeed resumes only ZeRO checkpoint "
            f"directories. Export its weights with `pipeline export {run_dir} --checkpoint {ckpt}`."
        )
    load_universal = effective_config(cfg, "cpu").get("checkpoint", {}).get("load_universal", False)
    switch = 'train.deepspeed_config=FILE, FILE holding {"checkpoint": {"load_universal": true}}'
    if is_universal(ckpt):
        if not load_universal:
            raise ZeroResumeError(f"{ckpt} is a universal checkpoint; resume from it with {switch}")
        return
    if load_universal:
        raise ZeroResumeError(
            f"{ckpt} is an ordinary ZeRO checkpoint but the DeepSpeed config sets checkpoint.load_universal; "
            f"remove it from train.deepspeed_config ({cfg.train.deepspeed_config}) once resumed from a universal one"
        )
    saved, world = zero_world_size(ckpt), cfg.train.devices * cfg.train.num_nodes
    if saved != world:
        raise ZeroResumeError(
            f"{ckpt} was written by {saved} data-parallel ranks, this run has {world} (train.devices x "
            f"train.num_nodes), and DeepSpeed cannot re-partition ZeRO shards on load. Resume on {saved} ranks, or "
            f"convert it to DeepSpeed's universal checkpoint: `pipeline export {run_dir} --checkpoint {ckpt} "
            f"--universal`, then resume with {switch}"
        )
