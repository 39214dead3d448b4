"""LightningModule that trains any registered seq2seq model: loss, optimiser, schedule, validation metrics.

It knows nothing of SLURM, data files or W&B: batches arrive as dicts (see docs/interfaces.md) and metrics leave
through `self.log`.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from pipeline.config import MEMORY_TASKS, RunConfig, config_from_dict, to_dict
from pipeline.data.tokenizer import PAD_ID
from pipeline.training.answer_metrics import (
    AnswerForward,
    AnswerTally,
    answer_loss,
    run_facts,
    validation_nll,
)
from pipeline.training.compile import TrainingForward
from pipeline.training.run_data import target_width
from pipeline.training.run_model import run_model
from pipeline.training.schedule import lr_multiplier


def seq2seq_train_loss(
    logits: torch.Tensor, tgt_out: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """The training loss alone: label-smoothed cross-entropy averaged over real target tokens (padding ignored).

    The training step needs nothing else. `seq2seq_loss`'s unsmoothed NLL sum is a second log-softmax over
    [tokens x vocab] that the step used to compute and discard (see benchmarks/results/SUMMARY.md, "fixes").
    """
    flat_logits = logits.reshape(-1, logits.size(-1)).float()
    return F.cross_entropy(
        flat_logits, tgt_out.reshape(-1), ignore_index=PAD_ID, label_smoothing=label_smoothing
    )


def seq2seq_loss(
    logits: torch.Tensor, tgt_out: torch.Tensor, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(training loss, summed NLL, number of real tokens). Padding (id 0) is ignored in all three.

    The training loss is label-smoothed and averaged over real target tokens; the NLL sum is unsmoothed so that
    validation loss and perplexity are comparable across label-smoothing settings.
    """
    flat_logits = logits.reshape(-1, logits.size(-1)).float()
    flat_tgt = tgt_out.reshape(-1)
    loss = F.cross_entropy(flat_logits, flat_tgt, ignore_index=PAD_ID, label_smoothing=label_smoothing)
    nll_sum = F.cross_entropy(flat_logits, flat_tgt, ignore_index=PAD_ID, reduction="sum")
    return loss, nll_sum, (flat_tgt != PAD_ID).sum()


class Seq2SeqModule(L.LightningModule):
    """Wraps `run_model(cfg)`; hyper-parameters are the whole resolved run config (as a dict, so a checkpoint
    restores without this package's classes).

    A run passes its `RunConfig`, already validated by `load_config`, and it is used as is. Lightning's
    `load_from_checkpoint` passes the saved dict, which is read back once (`config_from_dict`).
    """

    def __init__(self, config: dict[str, Any] | RunConfig) -> None:
        super().__init__()
        self.cfg = config if isinstance(config, RunConfig) else config_from_dict(config, "checkpoint config")
        self.save_hyperparameters({"config": to_dict(self.cfg)})
        self.model = run_model(self.cfg)
        # data.task=mqar/copy: only answers are scored (and projected); the last validation's answer metrics
        self.memory_task = self.cfg.data.task if self.cfg.data.task in MEMORY_TASKS else None
        # train.compile: the training step's forward, compiled or eager (validation and decoding stay eager); for
        # a memory task that forward is lm_hidden + the projection at the answers (AnswerForward)
        self.train_forward = TrainingForward(
            AnswerForward(self.model) if self.memory_task else self.model,
            self.cfg.train.compile,
            self.cfg.model,
            self.cfg.train.max_steps,
        )
        self._val_nll = torch.zeros(())
        self._val_tokens = torch.zeros(())
        self._val_pos_nll: torch.Tensor | None = None
        self._val_pos_count: torch.Tensor | None = None
        self.val_loss_by_position: list[float] | None = None  # mean loss per target position, last validation
        # this rank's per-token losses, one row per validation sequence, with what names the row and its tokens
        self._val_rows: list[torch.Tensor] = []
        self._val_src_lens: list[torch.Tensor] = []
        self._val_keys: list[str] = []
        self._val_tokens_in: list[tuple[torch.Tensor, torch.Tensor]] = []  # (targets, inputs) per batch
        self._answers: Any = None
        self.answer_metrics: dict[str, Any] | None = None

    # --- forward / loss -------------------------------------------------------------------------------------
    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.model(src, src_mask, tgt_in)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if (
            self.memory_task
        ):  # answers only: the projection runs at the answers (compiled with the model or not)
            loss = answer_loss(self.train_forward, batch, self.cfg.optim.label_smoothing)
        else:
            logits = self.train_forward(batch["src"], batch["src_mask"], batch["tgt_in"])
            loss = seq2seq_train_loss(logits, batch["tgt_out"], self.cfg.optim.label_smoothing)
        bs = batch["src"].size(0)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """The model's own per-step statistics (e.g. `newton/iters` of `recurrence=newton`), after its backward."""
        stats = self.model.step_stats()
        if stats:
            self.log_dict({k: float(v) for k, v in stats.items()}, rank_zero_only=True)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        tgt = batch["tgt_out"]
        if self.memory_task:  # the answers' NLL, 0 elsewhere (as ignore_index gives)
            nll = validation_nll(self._answers, self.model, batch)
        else:
            logits = self(batch["src"], batch["src_mask"], batch["tgt_in"])
            nll = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(),
                tgt.reshape(-1),
                ignore_index=PAD_ID,
                reduction="none",
            ).view_as(tgt)
        real = tgt != PAD_ID
        self._val_nll = self._val_nll.to(nll.device) + nll.sum()
        self._val_tokens = self._val_tokens.to(nll.device) + real.sum()
        # loss by target position (Kaplan et al. 2020, fig. 7): summed per position, averaged at epoch end
        pos_len = target_width(self.cfg.data)  # the LM window, else the longest target + EOS
        pos_nll = torch.zeros(pos_len, device=nll.device)
        pos_cnt = torch.zeros(pos_len, device=nll.device)
        t = min(tgt.size(1), pos_len)
        pos_nll[:t] += (nll * real)[:, :t].sum(0)
        pos_cnt[:t] += real[:, :t].sum(0)
        self._val_rows.append(nll.detach().float().masked_fill(~real, math.nan).cpu())
        self._val_src_lens.append(batch["src_mask"].sum(1).cpu())
        self._val_keys += [str(k) for k in batch.get("keys", ())]
        self._val_tokens_in.append((tgt.detach().int().cpu(), batch["tgt_in"].detach().int().cpu()))
        if self._val_pos_nll is None:
            self._val_pos_nll, self._val_pos_count = pos_nll, pos_cnt
        else:
            self._val_pos_nll += pos_nll
            self._val_pos_count += pos_cnt

    def on_validation_epoch_start(self) -> None:
        self._val_nll = torch.zeros((), device=self.device)
        self._val_tokens = torch.zeros((), device=self.device)
        self._val_pos_nll = self._val_pos_count = None
        self._val_rows, self._val_src_lens, self._val_keys, self._val_tokens_in = [], [], [], []
        if self.memory_task:
            self._answers = AnswerTally(self.memory_task, target_width(self.cfg.data), self.device)

    def on_validation_epoch_end(self) -> None:
        # Token-weighted mean over *all* ranks: ranks may hold different numbers of validation batches, so we
        # reduce sums once here instead of syncing per step (which would deadlock on uneven batch counts).
        pos_len = target_width(self.cfg.data)  # the LM window, else the longest target + EOS
        if self._val_pos_nll is None:
            self._val_pos_nll = torch.zeros(pos_len, device=self.device)
            self._val_pos_count = torch.zeros(pos_len, device=self.device)
        stats = torch.cat([self._val_nll.view(1).float(), self._val_tokens.view(1).float()])
        stats = torch.cat([stats, self._val_pos_nll, self._val_pos_count])
        stats = self.all_gather(stats)
        if stats.dim() == 2:
            stats = stats.sum(0)
        nll, tokens = stats[0], stats[1].clamp(min=1)
        loss = (nll / tokens).item()
        self.val_loss_by_position = (stats[2 : 2 + pos_len] / stats[2 + pos_len :].clamp(min=1)).tolist()
        self.val_position_counts = stats[2 + pos_len :].tolist()
        self.log("valid/loss", loss, prog_bar=True, rank_zero_only=True)
        self.log("valid/ppl", math.exp(min(loss, 50.0)), rank_zero_only=True)
        self.log("valid/tokens", float(tokens), rank_zero_only=True)
        self._write_token_losses()
        if self.memory_task:
            self._finish_answers()

    def _finish_answers(self) -> None:
        """Sum the answer tally over ranks; log valid/accuracy (and valid/exact_match); keep the record's metrics."""
        counts = self.all_gather(self._answers.flat())
        metrics = self._answers.summary(counts.sum(0) if counts.dim() == 2 else counts)
        self.answer_metrics = {**run_facts(self.cfg.data, self.model), **metrics}
        for name in ("accuracy", "exact_match"):
            if metrics.get(name) is not None:
                self.log(f"valid/{name}", metrics[name], rank_zero_only=True)

    def _write_token_losses(self) -> None:
        """`<run_dir>/valid_token_losses.npz` (pipeline/scaling/records/token_losses.py owns the format): per
        validation sequence, its loss at every position (NaN where not scored), its key, its target and input
        token ids, the scored mask and `src_len`, from every rank, so the report can bootstrap over validation
        sequences, pair runs by key and score any token subset. Overwritten at each validation; the last one is
        the final model's. A collective: every rank calls it."""
        import numpy as np

        from pipeline.training.checkpoint_callbacks import gather_objects

        width = target_width(self.cfg.data)

        def fit(rows: list[torch.Tensor], value: float) -> np.ndarray:
            cut = [F.pad(r[:, :width], (0, max(0, width - r.size(1))), value=value) for r in rows]
            return torch.cat(cut).numpy()

        if self._val_rows:
            tokens = fit([t for t, _ in self._val_tokens_in], PAD_ID)
            local = (fit(self._val_rows, math.nan), torch.cat(self._val_src_lens).numpy(), self._val_keys,
                     tokens, fit([i for _, i in self._val_tokens_in], PAD_ID))  # fmt: skip
        else:
            empty = np.zeros((0, width), np.int32)
            local = (np.zeros((0, width), np.float32), np.zeros(0, np.int64), [], empty, empty)
        parts = gather_objects(local)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            from pipeline.scaling.records.token_losses import save_token_losses

            loss, tokens = np.concatenate([p[0] for p in parts]), np.concatenate([p[3] for p in parts])
            keys = [k for p in parts for k in p[2]]
            save_token_losses(
                self.cfg.resolved_run_dir,
                loss,
                seq_key=keys
                if len(keys) == len(loss)
                else None,  # batches without keys: rows in loader order
                tokens=tokens,
                inputs=np.concatenate([p[4] for p in parts]),
                scored=tokens != PAD_ID,
                src_len=np.concatenate([p[1] for p in parts]),
                step=np.int64(self.trainer.global_step),
            )

    # --- optimisation ----------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        o = self.cfg.optim
        params = [p for p in self.parameters() if p.requires_grad]
        if o.name == "sgd":
            optimizer = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        else:
            decay = [p for p in params if p.dim() >= 2]
            no_decay = [p for p in params if p.dim() < 2]
            groups = [
                {"params": decay, "weight_decay": o.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ]
            # fused: one kernel per parameter instead of ~12 ops (benchmarks/README.md, fix 3); DeepSpeed steps
            # its own flattened partitions through this optimizer, so it keeps the reference implementation
            fused = self.cfg.train.strategy != "deepspeed"
            optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, fused=fused)
        max_steps = self.cfg.train.max_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_multiplier(step, o, max_steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
