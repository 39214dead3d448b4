"""A finished run's record, ``<run_dir>/result.json`` (`pipeline.scaling.records.run_record`), written by the
trainer at the end of every finished run (at ``train.max_steps``, or earlier where ``train.stop_at_accuracy``
stopped it: the record's ``early_stop``), whether `pipeline train` or `pipeline sweep` started it: the same file,
so `pipeline scaling report/fit/compare` read either.

The record keeps the tokens actually trained on, FLOPs per token from the model's own estimate at the corpus' mean
lengths (with and without the output projection; with it counted only where it runs, at a memory task's answers), epochs, every validation point, the loss by target position, the
unigram entropy of the validation targets (a run at or above it learned nothing but token frequencies), the seed
and learning rate, the measured time with the hardware it ran on, a memory task's answer metrics, and the
yardsticks (`yardsticks.run_yardsticks`: the train-unigram cross-entropy, an LM run's Kneser-Ney floors and, with
``train.eval_contexts``, its truncation losses).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig, model_vocab_size, to_dict
from pipeline.data.manifest import read_manifest
from pipeline.data.tokenizer import PAD_ID
from pipeline.scaling.analyses.learned_nothing import unigram_entropy
from pipeline.scaling.records.run_dir import RESULT_FILE, clear_error
from pipeline.scaling.records.run_record import RunRecord, save_record
from pipeline.training.logged_metrics import by_steps_trained, read_metric
from pipeline.training.run_model import run_model
from pipeline.training.yardsticks import run_yardsticks

MIN_POSITION_SHARE = 0.1  # loss at a target position reached by fewer validation pairs than this is NaN


# keys the record adds to the run's config (not run-config keys): stripped before the config is parsed again
RECORD_ONLY_CONFIG_KEYS = ("mean_lengths", "task", "output_projection_share", "loss_by_position_min_share")


def write_result(cfg: RunConfig, summary: dict[str, Any], wall_time_s: float) -> RunRecord:
    """Build the run's record from its final `summary` and write ``<run_dir>/result.json`` (and drop an earlier
    attempt's ``error.txt``)."""
    record = build_record(cfg, summary, wall_time_s)
    save_record(cfg.resolved_run_dir / RESULT_FILE, record)
    clear_error(cfg.resolved_run_dir)
    return record


def build_record(cfg: RunConfig, summary: dict[str, Any], wall_time_s: float) -> RunRecord:
    """The record of a run whose final evaluation is `summary` (`evaluate.final_evaluation`)."""
    run_dir = cfg.resolved_run_dir
    train = read_manifest(cfg.data.dir)["splits"]["train"]
    src_len, tgt_len, epoch_tokens = mean_lengths(cfg, train)
    model = run_model(cfg)
    full = float(model.flops_per_token(src_len, tgt_len, **newton_iterations(cfg, run_dir)))
    output, share = model.output_flops_per_token(), projected_share(cfg, train)
    fpt = full - output * (1.0 - share)  # the output projection where it runs: every target, or the answers
    tokens = int(summary["tokens"])
    final = float(summary["valid_loss"])
    history = by_steps_trained(read_metric(run_dir, "valid/loss"))
    counts, token_counts = valid_target_counts(cfg)
    positions = mask_sparse_positions(summary["loss_by_position"], counts)
    steps = max(1, int(summary["steps"]))
    # tokens at a validation step: the run's tokens pro rata (batches are bucketed to a near-constant size)
    curve = [{"step": step, "tokens": round(tokens * step / steps), "loss": loss}
             for step, loss in sorted(history.items())]  # fmt: skip
    record = RunRecord(
        run=cfg.name, arch=cfg.arm or cfg.model["arch"], params=int(summary["params"]),
        non_embedding_params=int(summary["non_embedding_params"]), flops_per_token=fpt,
        flops_per_token_no_output=full - output, tokens=tokens,
        compute=fpt * tokens, epochs=tokens / epoch_tokens, final_valid_loss=final,
        best_valid_loss=min([final, *history.values()]), loss_by_position=positions,
        wall_time_s=round(wall_time_s, 2),
        config={**to_dict(cfg), "mean_lengths": {"src": src_len, "tgt": tgt_len}, "task": cfg.data.task,
                "output_projection_share": share,
                "loss_by_position_min_share": MIN_POSITION_SHARE},
        seed=cfg.seed, lr=cfg.optim.lr, valid_curve=curve, unigram_entropy=unigram_entropy(token_counts),
        timing=summary.get("timing") or {}, hardware=summary.get("hardware") or {},
        answer_metrics=summary.get("answer_metrics") or {}, early_stop=summary.get("early_stop") or {},
        **run_yardsticks(cfg, run_dir, tokens, token_counts),  # unigram_xent, KN floors, truncation
    )  # fmt: skip
    return record


def mean_lengths(cfg: Any, train: dict[str, Any]) -> tuple[int, int, int]:
    """(mean source tokens, mean target tokens as trained, target tokens in one epoch) from the train manifest.

    Translation and passages: targets are trained with EOS (+1 each). A language model has no source and each
    stored window of context + 1 tokens trains context + 1 next-token targets (the first from BOS)."""
    samples = max(1, int(train["samples"]))
    if cfg.data.task == "lm":
        return 0, int(cfg.data.context) + 1, samples * (int(cfg.data.context) + 1)
    if cfg.data.task in ("mqar", "copy"):  # decoder-only sequences, stored whole (no EOS added)
        return 0, round(train["tgt_tokens"] / samples), int(train["tgt_tokens"])
    src, tgt = round(train["src_tokens"] / samples), round(train["tgt_tokens"] / samples) + 1  # + EOS
    return src, tgt, int(train["tgt_tokens"]) + samples


def projected_share(cfg: Any, train: dict[str, Any]) -> float:
    """The share of the trained tokens at which the output projection runs: 1, or for a memory task (projected at
    its answers only, `answer_metrics.AnswerForward`) the train split's answers over its tokens (N / L for MQAR)."""
    if cfg.data.task not in ("mqar", "copy"):
        return 1.0
    return int(train["answers"]) / max(1, int(train["tgt_tokens"]))


def newton_iterations(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """For `recurrence=newton`: the run's mean (forward, backward) scans per solve, read from its logged
    `newton/iters` and `newton/bwd_iters`, so the record's FLOPs are what the solver did, not the cap."""
    if cfg.model.get("recurrence") != "newton":
        return {}
    fwd, bwd = (list(read_metric(run_dir, f"newton/{k}").values()) for k in ("iters", "bwd_iters"))
    if not fwd or not bwd:
        return {}  # nothing logged: the model's own upper bound
    return {"newton_iters": (sum(fwd) / len(fwd), sum(bwd) / len(bwd))}


def valid_target_counts(cfg: Any) -> tuple[list[int], list[int]]:
    """Over the validation split's targets (EOS included; an LM window's context + 1 targets): real tokens at each
    target position, and how often each token id occurs (for the unigram entropy)."""
    import torch

    from pipeline.data.stream.loader import build_loader
    from pipeline.training.run_data import loader_max_len, target_width

    d = cfg.data
    counts = [0] * target_width(d)
    vocab = model_vocab_size(d)
    ids = torch.zeros(vocab, dtype=torch.long)
    for batch in build_loader(d.dir, "valid", batch_tokens=d.batch_tokens, max_len=loader_max_len(d)):
        real = batch["tgt_out"] != PAD_ID
        for t, n in enumerate(real.sum(0).tolist()[: len(counts)]):
            counts[t] += n
        ids += torch.bincount(batch["tgt_out"][real], minlength=vocab)[:vocab]
    return counts, ids.tolist()


def mask_sparse_positions(losses: list[float], counts: list[int]) -> list[float]:
    """NaN at target positions reached by fewer than MIN_POSITION_SHARE of the validation pairs: there the mean is
    over a handful of (often EOS) tokens and swings by nats, which reads like a real effect on a position plot."""
    least = MIN_POSITION_SHARE * max(counts, default=0)
    return [
        float(x) if t < len(counts) and counts[t] >= max(least, 1) else math.nan for t, x in enumerate(losses)
    ]
