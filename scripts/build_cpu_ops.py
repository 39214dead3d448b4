"""Build DeepSpeed's CPU shared-memory collective op once, at `make setup`, instead of inside the first test or run.

Why: on a CPU-only machine DeepSpeed JIT-compiles `deepspeed_shm_comm` with g++ the first time a ZeRO engine starts
(~2 min of CPU here), and caches it under TORCH_EXTENSIONS_DIR (the Makefile points that at .cache/). Building it in
setup keeps that cost out of `make test` and out of the first ZeRO run's step times. On a machine with an
accelerator DeepSpeed picks its own ops and nothing is built here.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()
    if accelerator.device_name() != "cpu":
        print(f"build_cpu_ops: accelerator {accelerator.device_name()!r}: nothing to build")
        return 0
    builder = accelerator.create_op_builder("ShareMemCommBuilder")
    if builder is None or not builder.is_compatible():
        print("build_cpu_ops: DeepSpeed's shared-memory op does not build here; ZeRO falls back to gloo")
        return 0
    try:
        builder.load(verbose=False)
    except Exception as err:  # noqa: BLE001 (no compiler, no headers: setup goes on, ZeRO builds or falls back later)
        print(
            f"build_cpu_ops: warning: {builder.NAME} did not build ({err}); the first ZeRO run will try again"
        )
        return 0
    print(
        f"build_cpu_ops: {builder.NAME} built in {os.environ.get('TORCH_EXTENSIONS_DIR', '~/.cache/torch_extensions')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
