"""A run's truncation losses, ``<run>/valid_truncation.npz``: write, read, validate (one owner).

Written by ``pipeline evaluate RUN --contexts ...`` and by the sweep at the end of an LM run when
``train.eval_contexts`` is set (``training/truncation_run.py``):

- ``loss``: float32 [K, N, T], the loss (nats) of target t of validation window n given only its last
  ``contexts[k]`` tokens (BOS first, not counted); NaN where not scored (before ``min_position``);
- ``contexts``: int [K], increasing;
- ``first_position``: int, the first target whose context is cut to exactly K at every K (``late_start``): L(K)
  is the mean over targets at or after it, the same tokens at every K;
- ``clusters_<unit>``: str [N] per unit (chapter, book, document: ``data/sources/lm_clusters.py``), the whole
  documents a bootstrap resamples; ``unit``: the default unit;
- ``window_key``: str [N], the windows' keys (``w00000000``...), so runs are aligned window by window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.scaling.records.json_file import write_atomic

TRUNCATION_FILE = "valid_truncation.npz"


@dataclass
class TruncationLosses:
    loss: np.ndarray  # [K, N, T]
    contexts: np.ndarray  # [K]
    first_position: int
    clusters: dict[str, np.ndarray]  # unit -> [N] ids
    unit: str  # the default unit
    window_key: np.ndarray  # [N]
    source: str

    def curve(self) -> np.ndarray:
        """L(K): the mean loss of the targets at or after ``first_position``, per context."""
        late = self.loss[:, :, self.first_position :]
        return np.nanmean(late.reshape(len(self.contexts), -1), axis=1)

    def cluster_ids(self, unit: str | None = None) -> np.ndarray:
        unit = unit or self.unit
        if unit not in self.clusters:
            raise ValueError(f"{self.source}: no cluster unit {unit!r} (has {', '.join(self.clusters)})")
        return self.clusters[unit]


def save_truncation(path_or_run: str | Path, loss: Any, contexts: Any, first_position: int,
                    clusters: dict[str, Any], unit: str, window_key: Any) -> Path:  # fmt: skip
    """Write ``RUN/valid_truncation.npz`` atomically, checked by the reader's rules."""
    path = Path(path_or_run)
    path = path / TRUNCATION_FILE if path.suffix != ".npz" else path
    arrays = {
        "loss": np.asarray(loss, dtype=np.float32),
        "contexts": np.asarray(contexts, dtype=np.int64),
        "first_position": np.asarray(int(first_position)),
        "unit": np.asarray(unit),
        "window_key": np.asarray(window_key, dtype=str),
        **{f"clusters_{u}": np.asarray(ids, dtype=str) for u, ids in clusters.items()},
    }
    _check(arrays, str(path))

    def write(f: Any) -> None:
        np.savez_compressed(f, **arrays)

    write_atomic(path, write, binary=True)
    return path


def _check(arrays: dict[str, np.ndarray], source: str) -> None:
    loss, ks = arrays["loss"], arrays["contexts"]
    if loss.ndim != 3 or ks.ndim != 1 or loss.shape[0] != len(ks) or len(ks) == 0:
        raise ValueError(
            f"{source}: loss must be [len(contexts), windows, positions], got {loss.shape}, {ks}"
        )
    if np.any(np.diff(ks) <= 0) or ks.min() < 1:
        raise ValueError(f"{source}: contexts must be positive and increasing, got {ks.tolist()}")
    fp = int(arrays["first_position"])
    if not 0 <= fp < loss.shape[2]:
        raise ValueError(f"{source}: first_position={fp} outside the {loss.shape[2]} target positions")
    units = [k[len("clusters_") :] for k in arrays if k.startswith("clusters_")]
    if str(arrays["unit"]) not in units:
        raise ValueError(f"{source}: default unit {arrays['unit']} has no clusters_ array")
    for key in [f"clusters_{u}" for u in units] + ["window_key"]:
        if arrays[key].shape != (loss.shape[1],):
            raise ValueError(
                f"{source}: {key} must hold one id per window ({loss.shape[1]}), got {arrays[key].shape}"
            )
    finite = loss[np.isfinite(loss)]
    if finite.size == 0 or finite.min() < 0:
        raise ValueError(f"{source}: loss must hold losses >= 0 (nats), got none or a negative one")


def load_truncation(run_dir: str | Path) -> TruncationLosses | None:
    """``run_dir/valid_truncation.npz`` checked, or None when the run has none."""
    path = Path(run_dir) / TRUNCATION_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable {TRUNCATION_FILE} ({err})") from err
    for key in ("loss", "contexts", "first_position", "unit", "window_key"):
        if key not in arrays:
            raise ValueError(f"{path}: missing array {key!r}")
    _check(arrays, str(path))
    clusters = {k[len("clusters_") :]: v for k, v in arrays.items() if k.startswith("clusters_")}
    return TruncationLosses(
        arrays["loss"].astype(float), arrays["contexts"], int(arrays["first_position"]), clusters,
        str(arrays["unit"]), arrays["window_key"], str(path),
    )  # fmt: skip
