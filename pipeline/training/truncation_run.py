"""A run's truncation evaluation: every validation token scored at each context length K.

``pipeline evaluate RUN --contexts 8,16,...`` and the sweep (``train.eval_contexts``, at the end of an LM run) call
``evaluate_truncation``: it reads the validation windows (key order: the split's stream, cut into disjoint windows),
scores each window token given only its last K tokens of the *stream* (a sliding window: a token early in a window
takes its context from the windows before it, so every token has K real tokens at every K, not only the window's
last few), writes ``valid_truncation.npz`` (``scaling/records/truncation_file.py``) and returns L(K).

Each context starts with BOS, as in training (``stream/loader.py``), and K <= data.context, the most the model saw.
Window 0 has no stream before it: its tokens with fewer than K_max real tokens before them are NaN there (a few
dozen of ~40k tokens). The scorer is ``truncation_losses`` (equal to a naive per-context loop, its tests).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config import ConfigError
from pipeline.data.manifest import read_manifest
from pipeline.data.sources.lm_clusters import DEFAULT_UNIT, UNITS, read_window_clusters
from pipeline.data.stream.lm_windows import lm_windows
from pipeline.data.tokenizer import BOS_ID
from pipeline.scaling.records.truncation_file import save_truncation
from pipeline.training.truncation_eval import truncation_losses


def parse_contexts(text: str | Sequence[int], context: int) -> list[int]:
    """``"8,16,32"`` (or a list) -> sorted distinct ints in 1..data.context; one clear line otherwise."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        ks = sorted({int(x) for x in items})
    except ValueError:
        raise ConfigError(
            f"--contexts {text!r}: expected positive integers joined by ',' (e.g. 8,16,32)"
        ) from None
    if not ks or ks[0] < 1 or ks[-1] > context:
        raise ConfigError(
            f"--contexts {text!r}: each must be in 1..data.context={context} (the longest context the model saw)"
        )
    return ks


def sliding_windows(
    windows: np.ndarray, k_max: int, picks: Sequence[int] | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """[BOS] + the k_max stream tokens before each window + the window: targets from index k_max on are the
    window's tokens. ``picks``: the windows to build (default all; their prefixes still come from the whole
    stream). Returns (Long[n, 1 + k_max + W], bool[n, W] tokens with k_max real tokens before them)."""
    n, width = windows.shape
    picks = list(range(n)) if picks is None else [int(i) for i in picks]
    stream = windows.reshape(-1)
    pad = np.concatenate([np.full(k_max, BOS_ID, dtype=np.int64), stream])  # filler before window 0
    rows = np.stack([pad[i * width : i * width + k_max + width] for i in picks])
    ext = np.concatenate([np.full((len(picks), 1), BOS_ID, dtype=np.int64), rows], axis=1)
    full = np.ones((len(picks), width), dtype=bool)
    full[:, :k_max] = (np.asarray(picks) > 0)[:, None]  # window 0 has no stream before it
    return torch.from_numpy(ext), full


def spread_windows(n: int, max_windows: int) -> list[int]:
    """``max_windows`` window indices spread evenly over ``n`` (all of them when 0 or >= n): a capped
    evaluation still covers the whole split (every held-out document), and every run picks the same ones."""
    if max_windows <= 0 or max_windows >= n:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, max_windows)})


def evaluate_truncation(model: torch.nn.Module, data_dir: str | Path, context: int, contexts: Sequence[int],
                        run_dir: str | Path, max_batch_tokens: int = 1 << 15, stride: int = 1,
                        max_windows: int = 0) -> dict[str, Any]:  # fmt: skip
    """Score the validation windows of ``data_dir`` at ``contexts`` (every ``stride``-th token of each window;
    ``max_windows`` > 0: that many windows spread over the split), write ``run_dir/valid_truncation.npz``, return
    {"contexts", "curve" (L(K), nats), "tokens", "stride", "windows", "unit", "n_clusters", "file"}."""
    ks = parse_contexts(contexts, context)
    if int(stride) < 1:
        raise ConfigError(f"stride {stride}: must be >= 1 (1 = every validation token, s = every s-th)")
    if int(max_windows) < 0:
        raise ConfigError(f"max windows {max_windows}: must be >= 0 (0 = every validation window)")
    valid = lm_windows(data_dir, "valid")
    manifest = read_manifest(data_dir)
    clusters = {u: read_window_clusters(manifest, "valid", u) for u in UNITS}
    picks = spread_windows(len(valid.tokens), int(max_windows))
    clusters = {u: [ids[i] for i in picks] for u, ids in clusters.items()}
    ext, full = sliding_windows(valid.tokens, ks[-1], picks)
    got = truncation_losses(
        model,
        ext,
        ks,
        bos_id=BOS_ID,
        min_position=ks[-1],
        max_batch_tokens=max_batch_tokens,
        stride=int(stride),
        progress=lambda line: print(f"truncation: {line}", file=sys.stderr, flush=True),
    )
    loss = got.loss[:, :, ks[-1] :]  # [K, N, W]: the windows' own tokens
    loss = np.where(full[None], loss, np.nan)
    unit = cluster_unit(manifest)
    path = save_truncation(run_dir, loss, ks, 0, clusters, unit, [valid.keys[i] for i in picks])
    curve = np.nanmean(loss.reshape(len(ks), -1), axis=1)
    return {
        "contexts": ks,
        "curve": [float(x) for x in curve],
        "tokens": int(np.isfinite(loss[0]).sum()),
        "stride": int(stride),
        "windows": len(picks),
        "unit": unit,
        "n_clusters": len(set(clusters[unit])),
        "file": path.name,
    }


def cluster_unit(manifest: dict[str, Any]) -> str:
    """The unit a bootstrap resamples: chapters of the Bible corpus (every translation of one together), else the
    documents (``docs:DIR``: each held-out file; ``text:FILE``: its held-out block, one document)."""
    return DEFAULT_UNIT if str(manifest.get("corpus", "")).startswith("bible:") else "document"


def format_curve(result: dict[str, Any]) -> str:
    """The L(K) table ``pipeline evaluate --contexts`` prints."""
    lines = [
        f"L(K) over {result['tokens']:,} validation tokens"
        + (f" of {result['windows']:,} windows" if "windows" in result else "")
        + f" ({result['n_clusters']} {result['unit']} clusters"
        + (f", 1 token in {result['stride']}" if result.get("stride", 1) > 1 else "")
        + "):"
    ]
    last = result["curve"][-1]
    lines += [
        f"  K={k:>5}  {x:.4f} nats  (+{x - last:.4f})"
        for k, x in zip(result["contexts"], result["curve"], strict=True)
    ]
    return "\n".join(lines)
