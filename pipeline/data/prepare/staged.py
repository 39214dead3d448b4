"""A streamed preparation whose phases run as separate jobs (``pipeline data prepare --slurm``).

Its temporary dir (``staged_dir``) outlives the submitting process and must be on a file system every job sees:
``plan_staged`` (or, deferred to a job, ``plan_request``) writes the plan there, one ``encode_range`` per range adds
its parts, and ``merge.merge_prepared`` writes shards and manifest and renames it onto the out dir. The phases
themselves are ``plan.py``'s, ``encode.py``'s and ``merge.py``'s; the SLURM side is
``pipeline/slurm/data_prepare.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline.data.prepare.build import checked_args
from pipeline.data.prepare.output import SCRATCH, check_replaceable
from pipeline.data.prepare.plan import is_streamed, plan_streamed, source_fields, source_from_fields
from pipeline.data.sources.corpus import CorpusSource, parse_source

PLAN_REQUEST = "request.json"  # what a deferred plan (a SLURM job) is to do


def staged_dir(out_dir: str | Path) -> Path:
    """The temporary dir of a preparation split across jobs (``--slurm``): it outlives the submitting process."""
    out_dir = Path(out_dir).resolve()
    return out_dir.parent / f".{out_dir.name}.tmp-staged"


def plan_staged(source: str | CorpusSource, out_dir: str | Path, n_ranges: int, vocab_size: int = 8000,
                max_len: int = 128, shard_size: int = 2000, seed: int = 0, limit: int | None = None,
                overlong: str = "drop", force: bool = False, defer: bool = False) -> dict:  # fmt: skip
    """Phase 1 for a preparation whose ranges run elsewhere (SLURM array tasks): the plan in ``staged_dir``.

    Then ``encode_range(staged_dir(out) / SCRATCH, r)`` for every r, then ``merge_prepared(staged_dir(out))``.
    ``defer``: only check the options and write the request; ``plan_request(out)`` (a job of its own) plans.
    """
    source = parse_source(source)
    if not is_streamed(source):
        raise ValueError(f"only parallel files or TSV (--src/--tgt, --tsv) are prepared in ranges; {source.spec} "
                         "is small: prepare it without --slurm")  # fmt: skip
    max_len, args = checked_args(source, vocab_size, max_len, shard_size, seed, limit, overlong, "translation",
                                 None, None)  # fmt: skip
    out_dir = Path(out_dir).resolve()
    check_replaceable(out_dir, force)
    work = staged_dir(out_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    settings = {"out_dir": str(out_dir), "args": args, "corpus": source.spec, "max_len": max_len,
                "shard_size": shard_size, "overlong": overlong, "limit": limit, "task": "translation",
                "force": force}  # fmt: skip
    request = {"source": source_fields(source), "n_ranges": n_ranges, "vocab_size": vocab_size, "seed": seed,
               "limit": limit, "settings": settings}  # fmt: skip
    if defer:
        (work / SCRATCH).mkdir()
        (work / SCRATCH / PLAN_REQUEST).write_text(json.dumps(request) + "\n")
        return request
    return _plan_request(work, request)


def plan_request(out_dir: str | Path) -> dict:
    """Phase 1 from the request ``plan_staged(..., defer=True)`` left in ``staged_dir(out_dir)``."""
    path = staged_dir(out_dir) / SCRATCH / PLAN_REQUEST
    if not path.is_file():
        raise FileNotFoundError(
            f"no preparation request {path}: run `pipeline data prepare ... --slurm` first"
        )
    return _plan_request(staged_dir(out_dir), json.loads(path.read_text()))


def _plan_request(work: Path, request: dict) -> dict:
    return plan_streamed(source_from_fields(request["source"]), work, request["vocab_size"], request["seed"],
                         request["limit"], request["n_ranges"], request["settings"])  # fmt: skip
