"""Loss and BLEU by source length (Bahdanau et al. 2015, fig. 2: an attention-free encoder-decoder falls apart as
sentences grow), for every translation run of a sweep, drawn in the report.

Loss: from each run's `valid_token_losses.npz` (`loss` per sequence and target position, `src_len` per sequence),
token-weighted mean loss of the validation pairs in each source-length bucket, with a 95 % bootstrap CI over the
pairs of the bucket. BLEU: from the run's `summary.json` (`bleu_by_src_len`, written by the final evaluation when
`train.bleu_samples` > 0). LM runs (no source) and runs without the files are left out and counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.scaling.positions import TOKEN_LOSS_FILE
from pipeline.scaling.records import RunRecord

EDGES = (8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024)  # upper edges of the buckets, in source tokens
N_BOOT = 400
MIN_PAIRS = 10  # buckets with fewer validation pairs get no point


@dataclass
class Bucketed:
    run: str
    arch: str
    attention: bool
    edges: list[tuple[int, int]]  # (low, high] source tokens of each bucket with a point
    loss: list[float]
    ci: list[tuple[float, float]]
    pairs: list[int]
    bleu: list[dict[str, Any]]  # from summary.json, as written


def bucket_losses(loss: np.ndarray, src_len: np.ndarray, seed: int = 0) -> list[tuple[tuple[int, int], float,
                                                                                    tuple[float, float], int]]:  # fmt: skip
    """[((low, high], mean loss, 95 % CI, pairs)] per source-length bucket with >= MIN_PAIRS pairs."""
    real = np.isfinite(loss)
    sums, counts = np.where(real, loss, 0.0).sum(1), real.sum(1)
    rng = np.random.default_rng(seed)
    out, low = [], 0
    for high in (*EDGES, max(int(src_len.max(initial=0)), EDGES[-1])):
        idx = np.flatnonzero((src_len > low) & (src_len <= high) & (counts > 0))
        if idx.size >= MIN_PAIRS:
            mean = sums[idx].sum() / counts[idx].sum()
            draws = rng.integers(0, idx.size, size=(N_BOOT, idx.size))
            boot = sums[idx][draws].sum(1) / counts[idx][draws].sum(1)
            out.append(
                ((low, high), float(mean), tuple(np.percentile(boot, [2.5, 97.5]).tolist()), int(idx.size))
            )
        low = max(low, high)
    return out


def load_bucketed(sweep_dir: Path, record: RunRecord) -> Bucketed | None:
    path = sweep_dir / record.run / TOKEN_LOSS_FILE
    if not path.is_file():
        return None
    with np.load(path) as f:
        if "src_len" not in f.files or not f["src_len"].any():
            return None  # an LM run, or written before src_len was stored
        loss, src_len = f["loss"].astype(float), f["src_len"].astype(int)
    rows = bucket_losses(loss, src_len)
    summary = sweep_dir / record.run / "summary.json"
    bleu = json.loads(summary.read_text()).get("bleu_by_src_len", []) if summary.is_file() else []
    model = record.config.get("model", {})
    # a Transformer always attends to the source; an arm's label (transformer_p128) is not its registry name
    attention = bool(model.get("attention", model.get("arch", record.arch) == "transformer"))
    return Bucketed(record.run, record.arch, attention, [r[0] for r in rows], [r[1] for r in rows],
                    [r[2] for r in rows], [r[3] for r in rows], bleu)  # fmt: skip


def largest_per_arch(records: list[RunRecord]) -> list[RunRecord]:
    """Each architecture's largest-compute run: the one whose length curve the section shows."""
    best: dict[str, RunRecord] = {}
    for r in records:
        if r.arch not in best or r.compute > best[r.arch].compute:
            best[r.arch] = r
    return [best[a] for a in sorted(best)]


def source_length_section(sweep_dir: str | Path, records: list[RunRecord], out_dir: Path) -> list[str]:
    """Markdown lines (and `loss_by_source_length.png/.pdf`); [] when no run has per-pair losses with sources."""
    sweep_dir = Path(sweep_dir)
    found = [b for b in (load_bucketed(sweep_dir, r) for r in largest_per_arch(records)) if b and b.loss]
    if not found:
        return []
    from pipeline.scaling.plots import save, setup_matplotlib

    plt = setup_matplotlib()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for b in found:
        mid = [(lo + hi) / 2 for lo, hi in b.edges]
        lo_ci, hi_ci = zip(*b.ci, strict=True)
        ax.fill_between(mid, lo_ci, hi_ci, alpha=0.2)
        ax.plot(mid, b.loss, marker="o", label=f"{b.arch} ({b.run})")
    ax.set(xscale="log", xlabel="source length (tokens, bucket middle)", ylabel="valid loss per target token")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    png = save(fig, out_dir / "loss_by_source_length.png")
    lines = ["## Loss and BLEU by source length", "",
             "Each architecture's largest-compute run: token-weighted mean validation loss of the pairs whose source "
             f"length falls in each bucket, 95 % bootstrap CI over those pairs (buckets with >= {MIN_PAIRS} pairs). "
             "An encoder-decoder without attention has to carry the whole source through its final state, so its "
             "curve is the one expected to rise with length (Bahdanau et al. 2015).", "",
             f"![loss by source length]({png})", "",
             "| arch | run | attention | source tokens | pairs | loss [95 % CI] | BLEU (test) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for b in found:
        bleu = {tuple(x["src_len"]): x for x in b.bleu}
        for (lo, hi), loss, ci, n in zip(b.edges, b.loss, b.ci, b.pairs, strict=True):
            hit = next((x for (a, z), x in bleu.items() if a <= lo + 1 and z >= hi), None)
            score = f"{hit['bleu']:.2f} ({hit['pairs']})" if hit else "-"
            lines.append(f"| {b.arch} | {b.run} | {b.attention} | {lo + 1}-{hi} | {n} | {loss:.3f} "
                         f"[{ci[0]:.3f}, {ci[1]:.3f}] | {score} |")  # fmt: skip
    return [*lines, ""]
