"""The loss on a token subset a user names, per run, with cluster-bootstrap intervals (`--tokens-after REGEX`,
`--token-ids 1,2,3`, `--token-mask NAME`).

A planted dependency, a rare word or a memory task's answers show up in the overall loss as a rounding error; the
loss on exactly those tokens does not. Each run's per-token file (format 2: token ids, inputs, scored mask, one
row per validation sequence) is scored on the selected positions: the subset mean, the overall mean and their
gap, all from the same resamples of sequences (`fits.cluster_bootstrap`; the sequence is the cluster), and each
run's subset loss minus the reference architecture's best run's on the same tokens (`paired_difference`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.scaling.fits.cluster_bootstrap import N_BOOT, cluster_bootstrap, paired_difference
from pipeline.scaling.fits.crossing import REFERENCE_ARCH
from pipeline.scaling.fits.intervals import percentile_interval
from pipeline.scaling.records.run_files import RunFiles, run_files_of
from pipeline.scaling.records.run_record import RunRecord
from pipeline.scaling.records.sweep_dir import Source
from pipeline.scaling.records.token_losses import TokenLosses

UNIT = "sequence"  # each validation sequence is one cluster
METHOD = "percentile"


@dataclass(frozen=True)
class TokenSelector:
    """Which target positions to score; exactly one of the three."""

    tokens_after: str | None = (
        None  # regex, matched in full against each decoded input token: the next target
    )
    token_ids: tuple[int, ...] | None = None  # target token ids
    mask: str | None = None  # a boolean array of the per-token file, e.g. "scored" (a memory task's answers)

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.tokens_after, self.token_ids, self.mask)]
        if sum(given) != 1:
            raise ValueError(
                "name one token subset: --tokens-after REGEX, --token-ids IDS or --token-mask NAME"
            )
        if self.tokens_after is not None:
            try:
                re.compile(self.tokens_after)
            except re.error as err:
                raise ValueError(
                    f"--tokens-after {self.tokens_after!r}: not a regular expression ({err})"
                ) from err

    def describe(self) -> str:
        if self.tokens_after is not None:
            return f"the tokens that follow a token matching `{self.tokens_after}`"
        if self.token_ids is not None:
            return f"the target tokens with ids {', '.join(map(str, self.token_ids))}"
        return f"the positions of the per-token file's mask `{self.mask}`"


@dataclass(frozen=True)
class Interval:
    estimate: float
    lo: float
    hi: float


@dataclass(frozen=True)
class SubsetLoss:
    run: str
    arch: str
    n_tokens: int  # selected, scored tokens
    n_seqs: int  # sequences holding at least one
    subset: Interval  # mean loss on the subset (nats per token)
    overall: Interval  # mean loss on every scored token
    gap: Interval  # subset - overall, from the same resamples
    vs_reference: Interval | None = None  # subset loss minus the reference run's on the same tokens, paired


@dataclass(frozen=True)
class TokenSubsetResult:
    selector: TokenSelector
    rows: list[SubsetLoss]
    skipped: list[str]  # "run: why" for runs that could not be scored
    reference: str | None  # the run every `vs_reference` is against
    n_boot: int


def _marker_ids(pattern: str, tokenizer_dir: str, cache: dict[str, set[int]]) -> set[int]:
    """Token ids whose decoded text (stripped) matches `pattern` in full, with the run's tokenizer.json."""
    if tokenizer_dir not in cache:
        from pipeline.data.tokenizer import load_tokenizer

        tok = load_tokenizer(tokenizer_dir)
        rx = re.compile(pattern)
        cache[tokenizer_dir] = {v for v in range(tok.vocab_size) if rx.fullmatch(tok.decode([v]).strip())}
    if not cache[tokenizer_dir]:
        raise ValueError(f"--tokens-after {pattern!r}: no token of {tokenizer_dir}/tokenizer.json matches")
    return cache[tokenizer_dir]


def subset_mask(tl: TokenLosses, selector: TokenSelector, marker_ids: set[int] | None = None) -> np.ndarray:
    """[N_seq, T] True at the selected positions the run scored; a file without token ids raises ValueError."""
    if tl.tokens is None or tl.inputs is None:
        raise ValueError(
            f"{tl.source}: written before token ids were stored (format 1): retrain to select tokens"
        )
    scored = tl.scored if tl.scored is not None else np.isfinite(tl.loss)
    if selector.token_ids is not None:
        return scored & np.isin(tl.tokens, list(selector.token_ids))
    if selector.mask is not None:
        masks = {"scored": scored}
        if selector.mask not in masks:
            raise ValueError(f"{tl.source}: no mask {selector.mask!r} (the file has: {', '.join(masks)})")
        return masks[selector.mask]
    return scored & np.isin(tl.inputs, sorted(marker_ids or ()))


def _interval(samples: np.ndarray, estimate: float) -> Interval:
    """95 % percentile interval over the resamples that drew any selected token (a rare subset can be absent from
    a resample: that one has no mean and is left out)."""
    drawn = samples[np.isfinite(samples)]
    if len(drawn) < 2:
        return Interval(float(estimate), math.nan, math.nan)
    lo, hi = percentile_interval(drawn[:, None])
    return Interval(float(estimate), float(lo[0]), float(hi[0]))


def _sorted(tl: TokenLosses, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(tl.seq_id)
    return tl.loss[order], mask[order], tl.seq_id[order]


def score_run(record: RunRecord, tl: TokenLosses, mask: np.ndarray, n_boot: int, seed: int) -> SubsetLoss:
    """The run's subset and overall losses and their gap, from the same resamples of sequences."""
    loss = np.where(np.isfinite(tl.loss), tl.loss, np.nan)
    picked = np.where(mask, loss, np.nan)
    real, chosen = np.isfinite(loss), np.isfinite(picked)
    if not chosen.any():
        raise ValueError("no selected token among its scored tokens")
    sums = np.stack([np.nansum(picked, axis=1), np.nansum(loss, axis=1)], axis=1)
    counts = np.stack([chosen.sum(axis=1), real.sum(axis=1)], axis=1).astype(float)
    ci = cluster_bootstrap(sums, tl.seq_id, UNIT, counts, n_boot, seed, METHOD)
    gap = _interval(ci.samples[:, 0] - ci.samples[:, 1], ci.estimate[0] - ci.estimate[1])
    return SubsetLoss(
        record.run, record.arch, int(chosen.sum()), int(chosen.any(axis=1).sum()),
        _interval(ci.samples[:, 0], ci.estimate[0]), _interval(ci.samples[:, 1], ci.estimate[1]), gap,
    )  # fmt: skip


def token_subset_losses(
    source: Source | RunFiles,
    records: Sequence[RunRecord],
    selector: TokenSelector,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> TokenSubsetResult:
    """Every run's loss on the selected tokens (runs without a usable per-token file are listed in `skipped`)."""
    files = run_files_of(source)
    markers: dict[str, set[int]] = {}
    scored: dict[str, tuple[RunRecord, TokenLosses, np.ndarray, SubsetLoss]] = {}
    skipped = []
    for r in sorted(records, key=lambda r: (r.arch == REFERENCE_ARCH, r.arch, r.non_embedding_params, r.run)):
        try:
            tl = files.token_losses(r.run)
            if tl is None:
                raise ValueError("no per-token file")
            ids = None
            if selector.tokens_after is not None:
                ids = _marker_ids(selector.tokens_after, _data_dir(r), markers)
            mask = subset_mask(tl, selector, ids)
            scored[r.run] = (r, tl, mask, score_run(r, tl, mask, n_boot, seed))
        except (ValueError, FileNotFoundError) as err:
            skipped.append(f"{r.run}: {err}")
    refs = [v for v in scored.values() if v[0].arch == REFERENCE_ARCH]
    ref = min(refs, key=lambda v: v[0].final_valid_loss) if refs else None
    rows = []
    for r, tl, mask, row in scored.values():
        if ref is not None and r.run != ref[0].run:
            row = _with_reference(row, tl, mask, ref[1], ref[2], n_boot, seed)
        rows.append(row)
    return TokenSubsetResult(selector, rows, skipped, ref[0].run if ref else None, n_boot)


def _with_reference(row: SubsetLoss, tl: TokenLosses, mask: np.ndarray, ref_tl: TokenLosses,
                    ref_mask: np.ndarray, n_boot: int, seed: int) -> SubsetLoss:  # fmt: skip
    """`row` with its subset loss minus the reference run's, paired on the same sequences and tokens (unchanged
    when the two runs were not validated on the same sequences)."""
    a, ma, ida = _sorted(tl, mask)
    b, mb, idb = _sorted(ref_tl, ref_mask)
    t = min(a.shape[1], b.shape[1])
    if not np.array_equal(ida, idb):
        return row
    both = ma[:, :t] & mb[:, :t]
    diff = paired_difference(np.where(both, a[:, :t], np.nan), np.where(both, b[:, :t], np.nan), ida, UNIT,
                             n_boot, seed, METHOD)  # fmt: skip
    vs = _interval(diff.samples[:, 0], diff.estimate[0])
    return SubsetLoss(**{**row.__dict__, "vs_reference": vs})


def _data_dir(record: RunRecord) -> str:
    data = record.config.get("data") or {}
    if not data.get("dir"):
        raise ValueError("its record names no data.dir (where tokenizer.json is)")
    return str(Path(data["dir"]))
