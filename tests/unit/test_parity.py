"""llm.c-style parity: one optimisation step through the LightningModule + Lightning Trainer equals a hand-written
PyTorch step (cross-entropy with label smoothing, global-norm clipping, AdamW written out) on the same weights."""

from __future__ import annotations

import copy
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pipeline.data.stream.loader import build_loader
from pipeline.training.module import Seq2SeqModule
from pipeline.training.schedule import lr_multiplier
from tests.conftest import tiny_config


def reference_step(model: torch.nn.Module, batch: dict, cfg) -> tuple[float, dict[str, torch.Tensor]]:
    """Plain PyTorch: forward, smoothed CE over non-pad tokens, backward, clip, one AdamW step by hand."""
    o = cfg.optim
    logits = model(batch["src"], batch["src_mask"], batch["tgt_in"])
    loss = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)),
        batch["tgt_out"].reshape(-1),
        ignore_index=0,
        label_smoothing=o.label_smoothing,
    )
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    total = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values()))
    scale = min(1.0, o.grad_clip / (float(total) + 1e-6))
    lr = o.lr * lr_multiplier(0, o, cfg.train.max_steps)
    b1, b2, eps = o.betas[0], o.betas[1], 1e-8
    with torch.no_grad():
        for name, p in model.named_parameters():
            g = grads[name] * scale
            grads[name] = g
            m, v = (1 - b1) * g, (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1), v / (1 - b2)
            if p.dim() >= 2:
                p.mul_(1 - lr * o.weight_decay)
            p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
    return float(loss), grads


@pytest.mark.parametrize("arch", ["lstm", "residual_lstm", "transformer"])
def test_one_step_matches_hand_written_pytorch(arch: str, tiny_data, tmp_path) -> None:
    cfg = tiny_config(
        arch, tiny_data, tmp_path / "run", "model.dropout=0.0", "optim.grad_clip=0.5", "train.max_steps=1"
    )
    torch.manual_seed(0)
    module = Seq2SeqModule(cfg)
    reference = copy.deepcopy(module.model)
    batch = next(iter(build_loader(tiny_data, "train", batch_tokens=cfg.data.batch_tokens, seed=3)))
    batch = {k: v for k, v in batch.items() if torch.is_tensor(v)}

    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=1, gradient_clip_val=cfg.optim.grad_clip, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader([batch], batch_size=None))
    lightning_loss = float(trainer.callback_metrics["train/loss"])

    ref_loss, ref_grads = reference_step(reference, batch, cfg)
    assert math.isclose(lightning_loss, ref_loss, rel_tol=1e-6), (lightning_loss, ref_loss)
    for (name, p), (_, q) in zip(module.model.named_parameters(), reference.named_parameters(), strict=True):
        torch.testing.assert_close(p.grad, ref_grads[name], rtol=1e-5, atol=1e-7, msg=f"grad {name}")
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=f"weight {name}")
    torch.manual_seed(0)
    initial = Seq2SeqModule(cfg)  # same seed, same init: the step really moved the weights
    assert any(
        not torch.equal(p, q)
        for p, q in zip(module.model.parameters(), initial.model.parameters(), strict=True)
    )
