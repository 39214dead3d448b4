"""Records: the files a sweep leaves, read and validated, one reader (and writer) per format.

`result.json` (`run_record`), the sweep's run list and `plan.json` (`sweep_dir`), the per-token validation losses
`valid_token_losses.npz` (`token_losses`), the gradient-reach lines `grad_by_position.jsonl` (`grad_reach_file`),
`summary.json` and a per-sweep cache that reads each run file at most once (`run_files`), and the atomic JSON
writer (`json_file`).

May import: numpy and the standard library only; nothing else of `pipeline.scaling` (the bottom layer).
"""
