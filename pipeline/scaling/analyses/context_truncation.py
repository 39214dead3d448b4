"""The study's context estimate from truncation: L(K), K* and paired differences per arch.

Replaces the band difference (``context_gain.py``: different tokens at each band) wherever runs carry
``valid_truncation.npz``: every validation token scored at each context K (``training/truncation_run.py``), so
L(K) and the differences between architectures are over the same tokens. Per architecture the run used is the
largest size at its largest budget among those with a truncation file (seeds there averaged token by token). Every
interval resamples whole clusters (``fits/cluster_bootstrap.py``; the unit and count are reported), K* is the
calibrated bend test on L(K) (``k_star.py``), with its false-plateau rate measured again at this study's own
design (clusters, windows, positions, contexts) through the same per-token path, and the gain gap D(K) against
the reference says whether two architectures use the context beyond K differently, and how many held-out clusters
would tell (``context_separation.py``).

Count floors: a run's Kneser-Ney trigram loss (``RunRecord.count_floors``) on the same validation tokens. A model
above it has not learned local statistics, so its L(K) says nothing about distant context: ``conclusive`` is True
only for architectures whose run beats the trigram, and a context conclusion is drawn from those alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.scaling.analyses.context_separation import GainGap, gain_gap
from pipeline.scaling.analyses.k_star import FalsePlateauRate, KStar, false_plateau_rate, k_star
from pipeline.scaling.analyses.k_star_coverage import KStarCoverage, k_star_coverage_on_data
from pipeline.scaling.fits.cluster_bootstrap import ClusterInterval, paired_difference
from pipeline.scaling.fits.crossing import REFERENCE_ARCH
from pipeline.scaling.records.run_files import RunFiles, run_files_of
from pipeline.scaling.records.run_record import RunRecord
from pipeline.scaling.records.truncation_file import TruncationLosses, load_truncation

N_BOOT = 999


@dataclass
class RunFloor:
    """One run's loss beside its count floors (nats per validation token)."""

    run: str
    arch: str
    loss: float
    bigram: float | None
    trigram: float | None

    @property
    def beats_trigram(self) -> bool | None:
        return None if self.trigram is None else self.loss < self.trigram


@dataclass
class ArchTruncation:
    arch: str
    runs: list[str]  # the seeds averaged
    non_embedding_params: int
    tokens: int
    k: KStar  # L(K) with its interval and K*
    loss: np.ndarray  # [K, N, T] per-token losses (seeds averaged)
    floor: RunFloor
    learned_positions: bool = False  # a Transformer with a learned position table (model.positions: learned)
    model_arch: str = ""  # the model class the sweep label stands for (`transformer` for `transformer_rope`)

    @property
    def conclusive(self) -> bool:
        return bool(self.floor.beats_trigram)


def has_learned_positions(record: RunRecord) -> bool:
    """A Transformer whose positions are a learned table (the default before ``positions: rope``): its last rows
    train least, and truncation at K puts a context at positions 0..K (``pipeline/models/rotary.py``)."""
    model = (record.config or {}).get("model", {})
    return model.get("arch") == "transformer" and model.get("positions", "learned") == "learned"


@dataclass
class TruncationStudy:
    contexts: list[int]
    unit: str
    n_clusters: int
    n_windows: int
    n_positions: int
    archs: list[ArchTruncation]
    paired: dict[str, ClusterInterval] = field(default_factory=dict)  # arch -> L_arch(K) - L_reference(K)
    reference: str | None = None
    floors: list[RunFloor] = field(default_factory=list)  # every LM run with floors
    null_rate: FalsePlateauRate | None = None
    n_boot: int = N_BOOT
    gaps: dict[str, GainGap] = field(default_factory=dict)  # arch -> D(K) against the reference
    n_tokens: int = 0  # validation tokens scored at every K (the late ones every run scored)
    coverage: dict[str, KStarCoverage] = field(default_factory=dict)  # arch -> its K* interval's check


def choose_reference(archs: Sequence[ArchTruncation]) -> ArchTruncation:
    """The curve the others are paired against: a Transformer, preferring one without a learned position table
    (whose undertrained last rows read as a loss of context, ``has_learned_positions``), then the sweep label
    ``transformer``; with no Transformer, the first architecture."""
    transformers = [a for a in archs if a.model_arch == REFERENCE_ARCH or a.arch == REFERENCE_ARCH]
    ranked = sorted(transformers, key=lambda a: (a.learned_positions, a.arch != REFERENCE_ARCH))
    return ranked[0] if ranked else archs[0]


def run_floor(r: RunRecord) -> RunFloor:
    f = r.count_floors or {}
    get = lambda name: f[name]["loss"] if name in f else None  # noqa: E731
    return RunFloor(r.run, r.arch, r.final_valid_loss, get("bigram"), get("trigram"))


def _chosen(
    records: Sequence[RunRecord], files: RunFiles
) -> dict[str, list[tuple[RunRecord, TruncationLosses]]]:
    """arch -> the runs (seeds) at its largest size and budget that carry a truncation file."""
    have = [(r, t) for r in records if (t := load_truncation(files.sweep_dir / r.run)) is not None]
    out: dict[str, list[tuple[RunRecord, TruncationLosses]]] = {}
    for arch in sorted({r.arch for r, _ in have}):
        mine = [(r, t) for r, t in have if r.arch == arch]
        top = max((r.non_embedding_params, r.tokens) for r, _ in mine)
        out[arch] = [(r, t) for r, t in mine if (r.non_embedding_params, r.tokens) == top]
    return out


def _coverage(a: ArchTruncation, ids: np.ndarray, first_position: int, n_sims: int,
              seed: int) -> KStarCoverage | None:  # fmt: skip
    """``k_star_coverage_on_data`` on this architecture's tokens, planted at its K* with the slopes measured each
    side (None without a K*, or where L(K) does not fall faster before the bend than after)."""
    k = a.k
    before, after = -k.test.slope_before, max(-k.test.slope_after, 0.0)
    if k.k_star is None or not before > after:
        return None
    return k_star_coverage_on_data(a.loss, k.contexts, ids, k.k_star, before, after, first_position, n_sims,
                                   seed=seed)  # fmt: skip


def truncation_study(source: str | Path | RunFiles, records: Sequence[RunRecord], n_boot: int = N_BOOT,
                     seed: int = 0, null_sims: int = 100,
                     all_records: Sequence[RunRecord] | None = None) -> TruncationStudy | None:  # fmt: skip
    """The section's numbers from ``records`` (the fitted runs); None when none carries a truncation file.
    ``null_sims``: null simulations of the false-plateau rate at this design (0: skip); ``all_records``: the runs
    listed against the trigram (default ``records``)."""
    files = run_files_of(source)
    chosen = _chosen(records, files)
    if not chosen:
        return None
    first = next(iter(chosen.values()))[0][1]
    ks, unit = first.contexts.tolist(), first.unit
    ids = first.cluster_ids()
    if len(set(ids.tolist())) < 2:  # one held-out document (a text corpus): windows are the only units left
        ids, unit = first.window_key, "window (one document: windows taken as independent)"
    archs = []
    for runs in chosen.values():
        for _, t in runs:
            if (
                t.contexts.tolist() != ks
                or t.loss.shape != first.loss.shape
                or list(t.window_key) != list(first.window_key)
            ):
                raise ValueError(
                    f"{t.source}: contexts or windows differ from {first.source}: truncation files of one study "
                    "must score the same tokens at the same contexts (rerun `pipeline evaluate --contexts`)"
                )
    # runs scored at different strides (train.eval_stride) are compared on the tokens every one of them scored
    common = np.logical_and.reduce([np.isfinite(t.loss) for runs in chosen.values() for _, t in runs])
    for arch, runs in chosen.items():
        loss = np.where(common, np.mean([t.loss for _, t in runs], axis=0), np.nan)
        fit = k_star(loss, ks, ids, unit, first_position=first.first_position, n_boot=n_boot, seed=seed)
        r0 = runs[0][0]
        floor = run_floor(r0)
        floor.loss = float(np.mean([r.final_valid_loss for r, _ in runs]))
        archs.append(
            ArchTruncation(
                arch,
                [r.run for r, _ in runs],
                r0.non_embedding_params,
                r0.tokens,
                fit,
                loss,
                floor,
                has_learned_positions(r0),
                (r0.config or {}).get("model", {}).get("arch", ""),
            )  # fmt: skip
        )
    ref = choose_reference(archs)
    reference = ref.arch
    paired = {
        a.arch: paired_difference(a.loss, ref.loss, ids, unit, n_boot=n_boot, seed=seed, method="percentile")
        for a in archs
        if a.arch != reference
    }
    gaps = {
        a.arch: gain_gap(
            a.arch, reference, a.loss, ref.loss, ks, ids, unit, first.first_position, n_boot, seed
        )
        for a in archs
        if a.arch != reference
    }
    n_windows = first.loss.shape[1]
    n_positions = int(common[-1, :, first.first_position :].any(axis=0).sum())  # the positions scored
    n_clusters = len(set(ids.tolist()))
    simulate = null_sims > 0 and n_clusters <= n_windows
    null = (
        false_plateau_rate(n_clusters, n_windows, ks, n_positions, n_sims=null_sims, n_boot=199, seed=seed)
        if simulate
        else None
    )
    # each K*'s interval checked where the answer is known: a bend planted at the estimate, the measured slopes
    coverage = {a.arch: c for a in archs
                if simulate and (c := _coverage(a, ids, first.first_position, null_sims, seed))}  # fmt: skip
    floors = [run_floor(r) for r in (records if all_records is None else all_records) if r.count_floors]
    n_tokens = int(common[-1, :, first.first_position :].sum())
    return TruncationStudy(ks, unit, n_clusters, n_windows, n_positions, archs, paired, reference, floors, null,
                           n_boot, gaps, n_tokens, coverage)  # fmt: skip
