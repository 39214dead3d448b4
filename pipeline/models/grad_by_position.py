"""How far back does the training signal reach? Gradient norm of the loss by source/target time step.

The vanishing-gradient picture that the LSTM's cell-state residual fixes: score only each row's last target
token, and measure ||dL/dx_t|| at every earlier step t, where x_t is the token embedding fed to the encoder /
decoder at step t (after the embedding, before dropout). For a recurrent decoder, the gradient at a target step
t < last can only arrive through the recurrence; for a recurrent layer, dL/dx_t = W_ih^T dL/d(gates_t), a fixed
linear image of the gradient at layer 0's step-t state. The embedding output is the one place every architecture
(the Transformer included) has, so one function serves all registered models.

Usable from a callback (no Lightning here; it computes gradients with `torch.autograd.grad`, so parameter `.grad`s
are left untouched) and from a script: `python -m pipeline.training.grad_reach --out grads.json` measures untrained
tiny models of every recurrent architecture on random equal-length rows and writes JSON (and a PNG with --plot).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from pipeline.models.base import Seq2SeqModel
from pipeline.models.registry import build_model

RECURRENT_ARCHS = ("lstm", "lstm_no_cell_residual", "residual_lstm", "minlstm")
LOSS_AT = ("last", "all")


def grad_norm_by_position(
    model: Seq2SeqModel, batch: Mapping[str, torch.Tensor], loss_at: str = "last"
) -> dict[str, torch.Tensor]:
    """-> {"src": Float[S], "tgt": Float[T]}: mean over rows (real positions only; NaN where none is real) of
    ||dL/dx_t||_2 at each position t.

    batch: `src`, `src_mask`, `tgt_in`, `tgt_out` as in docs/interfaces.md. loss_at="last": L is the mean NLL of
    each row's last real target token (the reach of a single signal; use equal-length rows for a clean picture);
    "all": the ordinary mean token loss. Runs in eval mode (no dropout) and restores the caller's mode.
    """
    if loss_at not in LOSS_AT:
        raise ValueError(f"loss_at={loss_at!r}: must be one of {LOSS_AT}")
    src, src_mask, tgt_in, tgt_out = (batch[k] for k in ("src", "src_mask", "tgt_in", "tgt_out"))
    pad = model.config.pad_id
    tgt_real = tgt_out != pad
    if not bool(tgt_real.any(dim=1).all()):
        raise ValueError("every target row needs at least one real token in tgt_out")
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        emb.register_forward_hook(lambda _m, _i, out, key=key: captured.__setitem__(key, out))
        for key, emb in (("src", model.src_embed), ("tgt", model.tgt_embed))
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(src, src_mask, tgt_in).float()
            if loss_at == "last":
                last = tgt_real.sum(dim=1) - 1
                rows = torch.arange(src.size(0), device=src.device)
                loss = F.cross_entropy(logits[rows, last], tgt_out[rows, last])
            else:
                loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=pad)
            grads = torch.autograd.grad(loss, [captured["src"], captured["tgt"]])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    out = {}
    for key, grad, real in (("src", grads[0], src_mask), ("tgt", grads[1], tgt_real)):
        norms = grad.float().norm(dim=-1) * real
        out[key] = (norms.sum(0) / real.sum(0)).detach().cpu()  # 0/0 = NaN where no row is real
    return out


def random_batch(
    vocab_size: int, batch_size: int, src_len: int, tgt_len: int, seed: int
) -> dict[str, torch.Tensor]:
    """Equal-length rows of random tokens (ids >= 4: no special tokens), BOS-shifted targets."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab_size, (batch_size, src_len), generator=g)
    tgt_out = torch.randint(4, vocab_size, (batch_size, tgt_len), generator=g)
    tgt_in = torch.cat([torch.ones(batch_size, 1, dtype=torch.long), tgt_out[:, :-1]], dim=1)
    return {
        "src": src,
        "src_mask": torch.ones_like(src, dtype=torch.bool),
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
    }


def measure_archs(
    archs: tuple[str, ...] = RECURRENT_ARCHS,
    d_model: int = 32,
    n_layers: int = 2,
    src_len: int = 32,
    tgt_len: int = 32,
    vocab_size: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    attention: bool = False,
    loss_at: str = "last",
) -> dict[str, dict[str, list[float]]]:
    """Per-position norms of freshly initialised tiny models, same seed and batch for each arch."""
    batch = random_batch(vocab_size, batch_size, src_len, tgt_len, seed)
    results = {}
    for arch in archs:
        torch.manual_seed(seed)
        extra: dict[str, Any] = {"residual_from": 1} if arch == "residual_lstm" else {}
        if arch == "transformer":
            extra = {"n_heads": 2, "max_len": max(src_len, tgt_len)}
        else:
            extra["attention"] = attention
        model = build_model(arch, vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, **extra)
        norms = grad_norm_by_position(model, batch, loss_at=loss_at)
        results[arch] = {k: v.tolist() for k, v in norms.items()}
    return results
