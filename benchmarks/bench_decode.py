"""Decoding tokens/s: incremental (`greedy_decode`) vs the old full re-run of the prefix, LSTM and Transformer.

The old decoder (`greedy_decode_full_rerun`, kept as the reference) runs forward on the whole prefix at every step:
step t costs O(t) for an LSTM and O(t^2) for a Transformer, so decoding T tokens costs O(T^2) resp. O(T^3). The
new one carries the LSTM state / the Transformer's key-value cache: O(1) resp. O(t) per step. Both decode the same
random sources to exactly T tokens (EOS id -1, never emitted) with the same weights in the same process, and the
JSON says whether their tokens agree. The headline is the median ratio new/old of decode tokens/s (B x T tokens
over the time of one whole decode), on process CPU time on a CPU (one intra-op thread; the machine is shared),
on synchronised wall time on a GPU.

    python -m benchmarks.bench_decode                 # T = 64, 256, 1024 -> benchmarks/results/decode_cpu.json
    python -m benchmarks.bench_decode --quick --out /tmp/decode.json    # tiny smoke run
    python -m benchmarks.bench_decode --device cuda   # -> benchmarks/results/decode_cuda.json

`make bench` (benchmarks/run.py, suite `decode`) runs the same `run` and writes the same file into its --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import BenchSettings, machine_info, spread
from benchmarks.seq_len import models as seq_len_models
from pipeline.models.decode import greedy_decode, greedy_decode_full_rerun
from pipeline.models.registry import build_model

RESULTS = Path(__file__).resolve().parent / "results"
VOCAB, BOS = 1000, 1
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"d_model": 32, "n_layers": 2, "n_heads": 2, "batch": 2, "src_len": 8, "lengths": [8, 16],
              "repeats": 1},
    "cpu": {"d_model": 64, "n_layers": 2, "n_heads": 4, "batch": 2, "src_len": 32, "lengths": [64, 256, 1024],
            "repeats": 3},
    "cuda": {"d_model": 512, "n_layers": 4, "n_heads": 8, "batch": 16, "src_len": 64, "lengths": [64, 256, 1024],
             "repeats": 3},
}  # fmt: skip
SLOW_OLD_TOKENS = 512  # above this T the O(T^2)/O(T^3) re-run is timed once, not `repeats` times


def profile_for(settings: BenchSettings) -> dict[str, Any]:
    return PROFILES["quick" if settings.quick else settings.device]


def timed(
    fn: Callable[..., torch.Tensor], args: tuple, device: torch.device
) -> tuple[torch.Tensor, float, float]:
    """-> (fn(*args), process CPU seconds, wall seconds), the device synchronised at both ends."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sync()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    out = fn(*args)
    sync()
    return out, time.process_time() - cpu0, time.perf_counter() - wall0


def run(
    settings: BenchSettings, out_dir: Path | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Time both decoders per arch and length; write `decode_<device>.json` into out_dir if given."""
    p, device = profile_for(settings), settings.torch_device
    machine = machine_info(settings)  # load average at the start, as the other suites record it
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, VOCAB, (p["batch"], p["src_len"]), generator=g).to(device)
    mask = torch.ones_like(src, dtype=torch.bool)
    rows = []
    for arch, cfg in seq_len_models(p).items():
        torch.manual_seed(0)
        model = build_model(**cfg).to(device).eval()
        greedy_decode(
            model, src, mask, BOS, -1, 4
        )  # first-call costs (allocator, oneDNN) hit neither decoder
        greedy_decode_full_rerun(model, src, mask, BOS, -1, 4)
        for T in p["lengths"]:
            samples: dict[str, list[tuple[float, float]]] = {"new": [], "old": []}
            tokens: dict[str, torch.Tensor] = {}
            for r in range(p["repeats"]):
                order = ("new", "old") if r % 2 == 0 else ("old", "new")  # alternate who goes first
                for which in order:
                    if which == "old" and r > 0 and T > SLOW_OLD_TOKENS:
                        continue
                    decode = greedy_decode if which == "new" else greedy_decode_full_rerun
                    tokens[which], cpu_s, wall_s = timed(decode, (model, src, mask, BOS, -1, T), device)
                    samples[which].append((cpu_s, wall_s))
            n = p["batch"] * T
            rate = {k: spread([n / s[settings.clock == "wall"] for s in v]) for k, v in samples.items()}
            wall = {k: spread([n / s[1] for s in v]) for k, v in samples.items()}
            row = {
                "arch": arch,
                "decode_len": T,
                "batch": p["batch"],
                "new_tokens_per_s": rate["new"],
                "old_tokens_per_s": rate["old"],
                "speedup": rate["new"]["median"] / rate["old"]["median"],
                "wall_speedup": wall["new"]["median"] / wall["old"]["median"],
                "same_tokens": bool(torch.equal(tokens["new"], tokens["old"])),
            }
            rows.append(row)
            log(
                f"decode T={T:>5} {arch:>12}: new {rate['new']['median']:.0f} tok/s, "
                f"old {rate['old']['median']:.0f} tok/s, x{row['speedup']:.1f}, same tokens: {row['same_tokens']}"
            )
    result = {
        "what": "greedy decode tokens/s (batch x T tokens / time of one decode): incremental (new) vs full "
        "re-run of the prefix every step (old); speedup = median new / median old on the headline clock",
        "command": "python -m benchmarks.bench_decode" + (" --quick" if settings.quick else ""),
        "clock": "process CPU time (1 intra-op thread; shared machine)"
        if settings.clock == "cpu"
        else "wall",
        "machine": machine,
        "profile": p,
        "models": {
            arch: {**cfg, "params": build_model(**cfg).num_params()}
            for arch, cfg in seq_len_models(p).items()
        },
        "rows": rows,
    }
    if out_dir is not None:
        path = Path(out_dir) / f"decode_{settings.device}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        log(f"wrote {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_decode", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds): a smoke run")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    settings = BenchSettings(device=args.device, threads=args.threads, quick=args.quick)
    run(settings, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
