"""Answer-only loss and accuracy of the known-truth memory tasks, tallied by bucket for the record.

Only answer positions are scored, so only they go through the output projection: the model's `lm_hidden` states
are gathered at the answers and projected there (`answer_logits`; in training `AnswerForward`, which
`train.compile` compiles), which on a small model is most of a step's
work saved (a [B, T, V] logit tensor becomes [answers, V]). The tally keeps, per bucket, answers, correct answers
(argmax == target) and the summed NLL; for copy also strings and exactly copied strings. Buckets: MQAR by query
distance (query position minus its key's position), log2-spaced [2^b, 2^(b+1)); copy by string length. Its
counts are one flat tensor so ranks can sum them with one all-gather, and they are counts (not rates), as the
capacity-law fit resamples answers (`pipeline/scaling/fits/capacity_law.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from pipeline.data.tokenizer import PAD_ID


def answer_positions(tgt_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat indices Long[K] of the K answer positions of `tgt_out` [B, T], row-major, and where Bool[B, T])."""
    where = tgt_out != PAD_ID
    return where.flatten().nonzero().squeeze(1), where


def project_answers(model: torch.nn.Module, tgt_in: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Float[K, V]: the model's `lm_hidden` states at the flat positions `index`, through its output projection."""
    hidden = model.lm_hidden(tgt_in)
    return model.out_proj(hidden.flatten(0, 1).index_select(0, index))


class AnswerForward(torch.nn.Module):
    """The memory tasks' training forward, `(tgt_in, index) -> Float[K, V]` (`project_answers`), as one module so
    that `train.compile` compiles the recurrence or attention and the answer projection together, the way it
    compiles the whole model for the other tasks (pipeline/training/compile.py). The answers' positions come in as
    an index found outside it (`answer_positions`): a boolean mask's data-dependent size would break the graph.
    It holds the model without owning it (the training module keeps the weights and the state dict)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.lm = model
        self.config = getattr(model, "config", None)  # compile.dynamic_shapes reads the model's task

    def forward(self, tgt_in: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return project_answers(self.lm, tgt_in, index)


def answer_logits(
    model: torch.nn.Module, tgt_in: torch.Tensor, tgt_out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits Float[K, V] at the K answer positions, their targets Long[K], where Bool[B, T])."""
    index, where = answer_positions(tgt_out)
    return project_answers(model, tgt_in, index), tgt_out.flatten().index_select(0, index), where


def answer_loss(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch: dict[str, Any],
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The training loss: cross-entropy averaged over the batch's answer tokens (equal to the full-logits loss
    with padding ignored, at a fraction of the projection's cost). `forward`: an `AnswerForward`, or the training
    module's `TrainingForward` around one (compiled or eager)."""
    index, _ = answer_positions(batch["tgt_out"])
    logits = forward(batch["tgt_in"], index)
    targets = batch["tgt_out"].flatten().index_select(0, index)
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)


def n_buckets(task: str, longest: int) -> int:
    """MQAR: log2 buckets of distances up to `longest` (the sequence length); copy: one per length 0..longest."""
    return max(1, int(longest).bit_length()) if task == "mqar" else int(longest) + 1


class AnswerTally:
    """Answers, correct answers and NLL per bucket (and copy's strings), summed over validation batches."""

    def __init__(self, task: str, longest: int, device: torch.device | str = "cpu") -> None:
        self.task, self.longest = task, int(longest)
        self.buckets = n_buckets(task, longest)
        # per bucket: answers, correct answers, summed NLL, strings, exactly copied strings (the last two: copy)
        self.counts = torch.zeros(self.buckets, 5, dtype=torch.float64, device=device)

    def bucket_of(self, meta: dict[str, torch.Tensor]) -> torch.Tensor:
        """Long[B, T] bucket of every answer position (garbage off the answers: the caller masks)."""
        if self.task == "mqar":
            d = meta["distance"].clamp(min=1).double()
            return torch.floor(torch.log2(d)).long().clamp(0, self.buckets - 1)
        return meta["length"].clamp(0, self.buckets - 1)

    def update(self, batch: dict[str, Any], where: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
               nll: torch.Tensor) -> None:  # fmt: skip
        """Add one batch: `where` Bool[B, T] the answers, `logits`/`targets`/`nll` at them (row-major order)."""
        correct = (logits.argmax(-1) == targets).double()
        bucket = self.bucket_of(batch["meta"]).to(where.device)[where]
        counts = self.counts.to(where.device)
        counts[:, 0].index_add_(0, bucket, torch.ones_like(correct))
        counts[:, 1].index_add_(0, bucket, correct)
        counts[:, 2].index_add_(0, bucket, nll.detach().double())
        if self.task == "copy":  # a string is copied when every answer of its row is right
            rows = where.nonzero()[:, 0]
            wrong = torch.zeros(where.size(0), dtype=torch.float64, device=where.device)
            wrong.index_add_(0, rows, 1.0 - correct)
            has = where.any(1)
            length = batch["meta"]["length"].to(where.device).max(1).values.clamp(0, self.buckets - 1)[has]
            counts[:, 3].index_add_(0, length, torch.ones_like(length, dtype=torch.float64))
            counts[:, 4].index_add_(0, length, (wrong[has] == 0).double())
        self.counts = counts

    def flat(self) -> torch.Tensor:
        return self.counts.reshape(-1)

    def summary(self, flat: torch.Tensor | None = None) -> dict[str, Any]:
        """The record's answer metrics from (summed) counts: totals, accuracy, loss and the non-empty buckets."""
        c = (self.counts if flat is None else flat.reshape(self.buckets, 5)).double().cpu()
        answers, correct, nll, strings, exact = (float(x) for x in c.sum(0))
        out: dict[str, Any] = {
            "answers": int(answers),
            "correct": int(correct),
            "accuracy": correct / answers if answers else None,
            "loss": nll / answers if answers else None,
        }
        if self.task == "copy":
            out.update(
                strings=int(strings), exact=int(exact), exact_match=exact / strings if strings else None
            )
        rows = []
        for b, (n, k, s, m, e) in enumerate(c.tolist()):
            if n == 0:
                continue
            row: dict[str, Any] = (
                {"distance": [2**b, 2 ** (b + 1) - 1]} if self.task == "mqar" else {"length": b}
            )
            row.update(answers=int(n), correct=int(k), accuracy=k / n, loss=s / n)
            if self.task == "copy":
                row.update(strings=int(m), exact=int(e), exact_match=e / m if m else None)
            rows.append(row)
        out["by_distance" if self.task == "mqar" else "by_length"] = rows
        return out


def validation_nll(tally: AnswerTally, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """Float[B, T]: each answer's NLL, 0 elsewhere; the answers are added to `tally`."""
    logits, targets, where = answer_logits(model, batch["tgt_in"], batch["tgt_out"])
    nll = F.cross_entropy(logits.float(), targets, reduction="none")
    tally.update(batch, where, logits, targets, nll)
    full = torch.zeros(where.shape, dtype=nll.dtype, device=nll.device)
    full[where] = nll
    return full


def run_facts(data: Any, model: Any) -> dict[str, Any]:
    """What the record says about the task and the model's memory: V, L (the longest sequence), N (MQAR) or the
    length ranges (copy), and the model's own state size at L (`state_floats`, `state_bits`)."""
    from pipeline.config import memory_seq_len, model_vocab_size

    L = memory_seq_len(data)
    out: dict[str, Any] = {"task": data.task, "split": "valid", "V": model_vocab_size(data), "L": L}
    if data.task == "mqar":
        out.update(N=int(data.mqar.n_pairs), filler=data.mqar.filler, power_a=float(data.mqar.power_a))
    else:
        c = data.copy
        out.update(alphabet_size=c.alphabet_size, train_len=[c.min_len, c.max_len],
                   eval_len=[c.eval_min_len, c.eval_max_len])  # fmt: skip
    return {**out, "state_floats": int(model.state_floats(L)), "state_bits": int(model.state_bits(L))}
