"""Luong et al. 2015 "global" dot-product attention used by both LSTM models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LuongAttention(nn.Module):
    """score(h_t, h_s) = h_t . h_s over real source states, then h~_t = tanh(W_c [c_t; h_t]).

    Applied to all decoder outputs at once (no input feeding), so training needs no loop over time.
    `scaled_dot_product_attention` with scale=1 is exactly the unscaled dot score + masked softmax + context,
    and picks a fused kernel on a GPU.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.combine = nn.Linear(2 * d_model, d_model, bias=False)

    def forward(self, dec: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """dec [B,T,d], memory [B,S,d], src_mask Bool[B,S] (True = real) -> h~ [B,T,d]."""
        context = F.scaled_dot_product_attention(
            dec, memory, memory, attn_mask=src_mask[:, None, :], scale=1.0
        )
        return torch.tanh(self.combine(torch.cat([context, dec], dim=-1)))

    @staticmethod
    def flops_per_token(d_model: int, src_len: int) -> float:
        """Forward FLOPs per target token: scores + context (2*S*d each) + W_c (2*2d*d)."""
        return 4.0 * src_len * d_model + 4.0 * d_model * d_model
