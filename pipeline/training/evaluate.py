"""Evaluation after training and `pipeline evaluate RUN_DIR`: validation loss/perplexity, greedy decoding of test
pairs (or beam search, `train.beam`) and corpus BLEU / chrF with sacrebleu (on detokenised text, as sacrebleu expects)."""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pipeline.config import ConfigError, RunConfig, check_decode_positions
from pipeline.data.tokenizer import BOS_ID, EOS_ID, PAD_ID


@torch.no_grad()
def translate_and_score(
    model: torch.nn.Module, cfg: RunConfig, max_pairs: int, beam: int | None = None
) -> dict[str, Any]:
    """Decode up to `max_pairs` test pairs on rank 0 (greedy, or beam search of width `beam`, default
    `train.beam`); returns BLEU, chrF, BLEU by source length and a few examples. Prints progress every ~10 s (decoding a few hundred pairs on a CPU takes minutes)."""
    import sacrebleu

    from pipeline.data.stream.loader import build_loader
    from pipeline.data.tokenizer import load_tokenizer
    from pipeline.models.beam import beam_decode
    from pipeline.models.decode import greedy_decode

    tokenizer = load_tokenizer(Path(cfg.data.dir) / "tokenizer.json")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hyps: list[str] = []
    refs: list[str] = []
    srcs: list[str] = []
    src_lens: list[int] = []
    from pipeline.training.run_data import loader_max_len

    if cfg.data.task in ("lm", "mqar", "copy"):
        raise ConfigError(
            f"{cfg.data.dir}: data.task={cfg.data.task} has no translations to score (BLEU/chrF); see valid/loss"
            + (" and the summary's answer_metrics" if cfg.data.task != "lm" else "")
        )
    check_decode_positions(cfg.train.decode_max_len, getattr(model.config, "max_len", None))
    loader = build_loader(
        cfg.data.dir, "test", batch_tokens=cfg.data.batch_tokens, max_len=loader_max_len(cfg.data)
    )
    width = cfg.train.beam if beam is None else beam
    started = shown = time.perf_counter()
    for batch in loader:
        src, mask = batch["src"].to(device), batch["src_mask"].to(device)
        if width > 1:
            out = beam_decode(model, src, mask, BOS_ID, EOS_ID, cfg.train.decode_max_len, width,
                              cfg.train.length_penalty)  # fmt: skip
        else:
            out = greedy_decode(model, src, mask, BOS_ID, EOS_ID, cfg.train.decode_max_len)
        for row in range(src.size(0)):
            hyps.append(tokenizer.decode(_strip(out[row].tolist())))
            refs.append(tokenizer.decode(_strip(batch["tgt_out"][row].tolist())))
            srcs.append(tokenizer.decode(_strip(batch["src"][row].tolist())))
            src_lens.append(int(batch["src_mask"][row].sum()))
        if time.perf_counter() - shown > 10:
            shown = time.perf_counter()
            print(f"decoding: {min(len(hyps), max_pairs)}/{max_pairs} test pairs, {shown - started:.0f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
        if len(hyps) >= max_pairs:
            break
    model.train(was_training)
    hyps, refs, srcs, src_lens = hyps[:max_pairs], refs[:max_pairs], srcs[:max_pairs], src_lens[:max_pairs]
    return {
        "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
        "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
        "decoded_pairs": len(hyps),
        "beam": width,
        "bleu_by_src_len": bleu_by_source_length(hyps, refs, src_lens),
        "examples": [
            {"src": s, "ref": r, "hyp": h} for s, r, h in list(zip(srcs, refs, hyps, strict=True))[:8]
        ],
    }


SRC_LEN_BUCKETS = (16, 32, 64, 128, 256, 512, 1024)  # upper edges, in source tokens


def bleu_by_source_length(hyps: list[str], refs: list[str], src_lens: list[int]) -> list[dict[str, Any]]:
    """Corpus BLEU of the pairs in each source-length bucket (Bahdanau et al. 2015, fig. 2: an attention-free
    encoder-decoder's BLEU falls as sentences grow); buckets without pairs are left out."""
    import sacrebleu

    out, low = [], 0
    for high in (*SRC_LEN_BUCKETS, max(src_lens, default=0)):
        idx = [i for i, n in enumerate(src_lens) if low < n <= high]
        if idx:
            score = sacrebleu.corpus_bleu([hyps[i] for i in idx], [[refs[i] for i in idx]]).score
            out.append({"src_len": [low + 1, high], "pairs": len(idx), "bleu": score})
        low = max(low, high)
    return out


def _strip(ids: list[int]) -> list[int]:
    """Token ids up to the first EOS, without padding or BOS."""
    out = []
    for i in ids:
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            out.append(i)
    return out


def final_evaluation(cfg: RunConfig, trainer: Any, module: Any, throughput: Any) -> dict[str, Any]:
    """Summary of a finished `fit`: sizes, throughput (from the run's `ThroughputCallback`), losses, BLEU/chrF
    (rank 0 only for decoding)."""
    from pipeline.training.throughput import hardware_descriptor

    model = module.model
    if cfg.train.strategy == "deepspeed":
        from pipeline.training.deepspeed_strategy import is_partitioned, unpartitioned_copy

        if is_partitioned(model):  # ZeRO-3: gather the weights into a plain model (collective: all ranks)
            model = unpartitioned_copy(model, materialize=trainer.global_rank == 0)
    metrics = {
        k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) or isinstance(v, float)
    }
    valid_loss = metrics.get("valid/loss")
    summary: dict[str, Any] = {
        "name": cfg.name,
        "arch": cfg.model["arch"],
        "params": model.num_params(),
        "non_embedding_params": model.num_params(non_embedding=True),
        "steps": trainer.global_step,
        "tokens": throughput.total_tokens * trainer.world_size,
        "tokens_per_s": throughput.last_metrics.get("throughput/tokens_per_s"),
        "valid_loss": valid_loss,
        "valid_ppl": math.exp(min(valid_loss, 50.0)) if valid_loss is not None else None,
        "loss_by_position": module.val_loss_by_position,
        "timing": throughput.run_timing(trainer.world_size),
        "hardware": hardware_descriptor(module.device, trainer.world_size, str(trainer.precision))
        | {"compile": module.train_forward.record()},
        "run_dir": str(cfg.resolved_run_dir),
    }
    if getattr(module, "answer_metrics", None):  # data.task=mqar/copy: answer accuracy, buckets, state size
        summary["answer_metrics"] = module.answer_metrics
    # a language model (or a memory task) has no source to translate: loss/perplexity only
    decodes = cfg.data.task not in ("lm", "mqar", "copy")
    if trainer.global_rank == 0 and decodes and cfg.train.bleu_samples > 0 and not trainer.interrupted:
        start = time.perf_counter()
        summary.update(translate_and_score(model, cfg, cfg.train.bleu_samples))
        summary["decode_s"] = round(time.perf_counter() - start, 2)
    return summary


def nonempty(text: str) -> str:
    """argparse type of a path: an empty one would silently mean the working directory."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return text


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=nonempty, help="run directory (holds config.yaml and checkpoints/)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint file (default: the newest in the run)")
    parser.add_argument("--pairs", type=int, default=500, help="test pairs to decode for BLEU/chrF")
    parser.add_argument("--beam", type=int, default=None,
                        help="beam width (1 = greedy; default: the run's train.beam)")  # fmt: skip
    parser.add_argument("--contexts", default=None,
                        help="LM runs: score every validation token at these context lengths (e.g. 8,16,32,64), "
                             "write RUN_DIR/valid_truncation.npz and print L(K) (truncation_run.py)")  # fmt: skip
    parser.add_argument("--stride", type=int, default=1,
                        help="with --contexts: score every STRIDE-th validation token, the same ones at every "
                             "context, at 1/STRIDE of the cost (default 1: every token)")  # fmt: skip
    parser.add_argument("--windows", type=int, default=0,
                        help="with --contexts: score this many validation windows, spread evenly over the split "
                             "(default 0: all)")  # fmt: skip


def run_evaluate(args: argparse.Namespace) -> int:
    from pipeline.training.user_errors import report_user_error

    try:
        return _evaluate(
            Path(args.run_dir),
            args.checkpoint,
            args.pairs,
            args.beam,
            args.contexts,
            args.stride,
            args.windows,
        )
    except Exception as err:  # a user's bad file or checkpoint is one line (user_errors.py); a bug re-raises
        status = report_user_error(err, prog="pipeline evaluate: ")
        if status is None:
            raise
        return status


def load_checkpoint_model(ckpt: Path) -> tuple[torch.nn.Module, RunConfig]:
    """The model and run config of a checkpoint file, or of a DeepSpeed ZeRO checkpoint dir (weights gathered)."""
    from pipeline.training.checkpoint_files import ResumeError
    from pipeline.training.module import Seq2SeqModule

    if ckpt.is_dir():  # a DeepSpeed ZeRO checkpoint: reassemble the fp32 weights from its shards
        from pipeline.training.exported_weights import consolidate, model_from_export

        return model_from_export(consolidate(ckpt))
    try:
        module = Seq2SeqModule.load_from_checkpoint(str(ckpt), map_location="cpu")
    except (RuntimeError, EOFError, pickle.UnpicklingError, KeyError) as err:  # a damaged or foreign file
        raise ResumeError(f"{ckpt} is not a readable checkpoint of this pipeline: {err}") from err
    return module.model, module.cfg


def _evaluate(run_dir: Path, checkpoint: str | None, pairs: int, beam: int | None = None,
              contexts: str | None = None, stride: int = 1, windows: int = 0) -> int:  # fmt: skip
    if beam is not None and beam < 1:
        raise ConfigError(f"--beam must be >= 1 (1 = greedy), got {beam}")
    if pairs < 1:
        raise ConfigError(f"--pairs must be >= 1, got {pairs}")
    from pipeline.training.checkpoint_files import checkpoint_to_read

    ckpt = checkpoint_to_read(run_dir, checkpoint, command="pipeline evaluate")
    if ckpt is None:
        return 2
    model, cfg = load_checkpoint_model(ckpt)
    if contexts is not None:
        if cfg.data.task != "lm":
            raise ConfigError(f"--contexts scores language models; {run_dir} has data.task={cfg.data.task}")
        from pipeline.training.truncation_run import evaluate_truncation, format_curve

        curve = evaluate_truncation(
            model, cfg.data.dir, cfg.data.context, contexts, run_dir, stride=stride, max_windows=windows
        )
        print(format_curve(curve))
        print(f"wrote {run_dir / curve['file']}")
        return 0
    if beam is not None and beam > model.config.vocab_size:
        raise ConfigError(f"--beam {beam} is wider than the vocabulary ({model.config.vocab_size} tokens)")
    result = translate_and_score(model, cfg, pairs, beam)
    result["checkpoint"] = str(ckpt)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0
