"""`pipeline scaling compare BASELINE SWEEP`: the points two sweeps share, side by side.

What it is for: a study rerun under new rules (tuned rates, seeds) against the sweep it replaces, so that its README
can say point by point what changed. A point is an (architecture, non-embedding size, token budget); on each side it
is the mean over its seeds at that size's best rate (`analyses.lr_scan.select_best_lr`, the rule the fits use), and two
points match when their architecture and size are equal and their trained tokens agree within `--tolerance` (budgets
become whole steps, so reruns land a few percent apart). Written by hand: a join of two record sets and a
geometric mean, nothing a library offers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.scaling.analyses.lr_scan import select_best_lr
from pipeline.scaling.fits.points import Point, group_points, snap_budgets
from pipeline.scaling.records.run_record import RunRecord


@dataclass
class SharedPoint:
    arch: str
    n: int
    base: Point
    new: Point

    @property
    def ratio(self) -> float:
        return self.new.loss / self.base.loss


def best_points(records: list[RunRecord]) -> list[Point]:
    """Each architecture's points at each size's best rate (seed means)."""
    points = []
    for arch in sorted({r.arch for r in records}):
        kept, _ = select_best_lr(snap_budgets([r for r in records if r.arch == arch]))
        points += group_points(kept)
    return points


def match_shared_points(
    base: list[RunRecord], new: list[RunRecord], tolerance: float = 0.05
) -> list[SharedPoint]:
    """Every point of `new` with a baseline point of the same arch and size whose tokens are within tolerance."""
    matches, by_key = [], {}
    for p in best_points(base):
        by_key.setdefault((p.arch, p.n), []).append(p)
    for p in best_points(new):
        near = [b for b in by_key.get((p.arch, p.n), []) if abs(b.tokens - p.tokens) <= tolerance * p.tokens]
        if near:
            matches.append(SharedPoint(p.arch, p.n, min(near, key=lambda b: abs(b.tokens - p.tokens)), p))
    return matches


def _learned_nothing(p: Point) -> bool:
    return any(r.unigram_entropy is not None and r.final_valid_loss >= r.unigram_entropy for r in p.runs)


def _side(p: Point) -> str:
    lr = "?" if p.lr is None else f"{p.lr:g}"
    flag = " (nothing learned)" if _learned_nothing(p) else ""
    return f"{p.loss:.3f}{flag} | {p.n_seeds} | {lr}"


def shared_points_markdown(matches: list[SharedPoint], base_dir: str, new_dir: str) -> str:
    lines = [f"Shared points of `{base_dir}` (baseline) and `{new_dir}` (new): final validation loss, mean over",
             "seeds at each size's best rate. Ratio = new / baseline; < 1: the new sweep reached a lower loss.", "",
             "| arch | non-emb. params | tokens (new) | baseline loss | seeds | lr | new loss | seeds | lr | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for m in matches:
        lines.append(
            f"| {m.arch} | {m.n:,} | {m.new.tokens:,} | {_side(m.base)} | {_side(m.new)} | {m.ratio:.3f} |"
        )
    lines += ["", "| arch | shared points | geometric mean ratio | new lower at |", "|---|---:|---:|---:|"]
    for arch in sorted({m.arch for m in matches}):
        ratios = [m.ratio for m in matches if m.arch == arch]
        gmean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        lines.append(
            f"| {arch} | {len(ratios)} | {gmean:.3f} | {sum(r < 1 for r in ratios)} of {len(ratios)} |"
        )
    if not matches:
        lines.append("| (none) | 0 | | |")
    return "\n".join(lines) + "\n"
