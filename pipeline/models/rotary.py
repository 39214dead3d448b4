"""Rotary position embedding (RoPE; Su et al. 2021, "RoFormer"), the Transformer's `positions: rope`.

Why an alternative to learned absolute positions: a learned table gives every position its own parameters, and in
a causal model the embedding of position p reaches only the outputs at positions >= p, so the last positions of
the window get the least training. On a budget of a few passes that shows: the context study's d128 Transformer
(learned positions, 9M tokens) scores 4.09-4.10 nats at positions 128-448 of its validation windows and 4.30 at
496-512, and a truncation evaluation, which puts a context of K tokens at positions 0..K, then reads that position
effect as a loss of context (L(512) 4.35 against L(128) 4.11; results/context-rerun-cpu/README.md). RoPE has no
per-position parameters: queries and keys are rotated by their position, so attention scores depend only on the
offset between query and key, and a context of K tokens is the same problem wherever it sits.

Written by hand (about twenty lines, as in litgpt and gpt-neox) because torch ships no RoPE module. Layout: the
"half" rotation of GPT-NeoX (the head's first and second halves form the rotated pairs), base 10,000. Cost: a few
elementwise ops per query and key element, left out of ``flops_per_token`` (under 1 % of a layer at these widths).
"""

from __future__ import annotations

import torch
from torch import nn

BASE = 10_000.0


class Rotary(nn.Module):
    """Rotates [B, H, T, head_dim] queries or keys by their positions ``offset .. offset + T - 1``."""

    def __init__(self, head_dim: int, max_len: int, base: float = BASE) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary positions need an even head width, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)  # [max_len, head_dim / 2]
        # not saved in checkpoints: a function of the config, rebuilt on load
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        T = x.size(-2)
        if offset + T > self.cos.size(0):
            raise ValueError(f"rotary positions up to {offset + T} exceed max_len={self.cos.size(0)}")
        cos = self.cos[offset : offset + T].to(x.dtype)
        sin = self.sin[offset : offset + T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
