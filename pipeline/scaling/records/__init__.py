"""Records: every file a run directory or a sweep directory holds, named, written and read here (one owner each).

The names and the small files of a run directory (`run_dir`: config.yaml, summary.json, result.json,
valid_token_losses.npz, grad_by_position.jsonl, error.txt), the run's record `result.json` (`run_record`), the
sweep's run list and `plan.json` (`sweep_dir`, which also reads plain run directories), the per-token validation
losses (`token_losses`), the gradient-reach lines (`grad_reach_file`), a per-report cache that reads each run file
at most once (`run_files`), and the one atomic writer, with the process umask (`json_file`). Written by the
trainer and the sweep, read by the fits and the report (docs/interfaces.md, "Run directory and sweep directory
files").

May import: numpy and the standard library only; nothing else of `pipeline.scaling` (the bottom layer).
"""
