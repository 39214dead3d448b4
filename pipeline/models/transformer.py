"""Pre-LayerNorm Transformer encoder-decoder (Vaswani et al. 2017 with the pre-LN placement of Xiong et al. 2020).

Written out (not `nn.Transformer`) so attention goes straight to `F.scaled_dot_product_attention` (flash /
memory-efficient kernels on a GPU) and the FLOPs formula can be read off the modules. Positions (`positions`):
"learned" absolute embeddings (as GPT-2/nanoGPT), one table per side, counted as embedding parameters (Kaplan et
al. 2020) at no FLOPs; or "rope", rotary positions in every self-attention (`rotary.py`: no per-position
parameters; cross-attention keys are not rotated). Either way sequences longer than `max_len` are an error.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import Seq2SeqModel
from pipeline.models.configs import TransformerConfig
from pipeline.models.decode_state import DecodeState
from pipeline.models.rotary import Rotary


class Attention(nn.Module):
    """Multi-head attention of `x` over `memory` (self-attention when memory is x)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, rotary: Rotary | None = None) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.rotary = rotary  # self-attention with positions: "rope" (shared by the layers, no parameters)
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.o = nn.Linear(d_model, d_model)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        """mask: Bool[B,S] of attendable keys (True = real) or None."""
        B, T, d = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, -1, self.n_heads, d // self.n_heads).transpose(1, 2)

        k, v = self.kv(memory).chunk(2, dim=-1)
        q, k = heads(self.q(x)), heads(k)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        out = F.scaled_dot_product_attention(
            q,
            k,
            heads(v),
            attn_mask=None if mask is None else mask[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
        )
        return self.o(out.transpose(1, 2).reshape(B, T, d))

    def heads_kv(self, memory: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """memory [B,S,d] at positions offset.. -> keys, values [B,H,S,d/H]: what a decoding cache stores."""
        B, S, d = memory.shape
        k, v = self.kv(memory).view(B, S, 2, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        return (k if self.rotary is None else self.rotary(k, offset)), v

    def attend(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None = None,
        offset: int = 0,
    ) -> torch.Tensor:
        """`forward` over already-projected keys/values [B,H,S,d/H] (a cache), all of them attendable; ``x`` at
        positions offset.. (rotary only)."""
        B, T, d = x.shape
        q = self.q(x).view(B, T, self.n_heads, d // self.n_heads).transpose(1, 2)
        if self.rotary is not None:
            q = self.rotary(q, offset)
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.o(out.transpose(1, 2).reshape(B, T, d))


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model), nn.Dropout(dropout))


class EncoderLayer(nn.Module):
    def __init__(self, c: TransformerConfig, rotary: Rotary | None = None) -> None:
        super().__init__()
        assert c.d_ff is not None
        self.ln1, self.ln2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.attn = Attention(c.d_model, c.n_heads, c.dropout, rotary)
        self.ff = FeedForward(c.d_model, c.d_ff, c.dropout)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.drop(self.attn(h, h, src_mask))
        return x + self.ff(self.ln2(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: TransformerConfig, rotary: Rotary | None = None) -> None:
        super().__init__()
        assert c.d_ff is not None
        cross = c.task == "seq2seq"  # a language model's layer is a GPT block: no cross-attention
        self.ln1 = nn.LayerNorm(c.d_model)
        self.ln2 = nn.LayerNorm(c.d_model) if cross else None
        self.ln3 = nn.LayerNorm(c.d_model)
        self.self_attn = Attention(c.d_model, c.n_heads, c.dropout, rotary)
        self.cross_attn = Attention(c.d_model, c.n_heads, c.dropout) if cross else None
        self.ff = FeedForward(c.d_model, c.d_ff, c.dropout)
        self.drop = nn.Dropout(c.dropout)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor | None, src_mask: torch.Tensor | None
    ) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.drop(self.self_attn(h, h, causal=True))
        if self.cross_attn is not None:
            x = x + self.drop(self.cross_attn(self.ln2(x), memory, src_mask))
        return x + self.ff(self.ln3(x))

    def step(
        self, x: torch.Tensor, cache: dict[str, torch.Tensor], src_mask: torch.Tensor | None, pos: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`forward` for the newest position x [B,1,d] (position ``pos``): its key/value join the cached ones
        (self_k, self_v [B,H,t,d/H]); the memory's (mem_k, mem_v) were projected once. -> output and the grown
        self_k, self_v."""
        k_new, v_new = self.self_attn.heads_kv(h := self.ln1(x), pos)
        k = torch.cat([cache["self_k"], k_new], dim=2)
        v = torch.cat([cache["self_v"], v_new], dim=2)
        x = x + self.drop(self.self_attn.attend(h, k, v, offset=pos))  # cached positions are <= t: no mask
        if self.cross_attn is not None:
            x = x + self.drop(self.cross_attn.attend(self.ln2(x), cache["mem_k"], cache["mem_v"], src_mask))
        return x + self.ff(self.ln3(x)), k, v


class TransformerSeq2Seq(Seq2SeqModel):
    config: TransformerConfig

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config, config.d_model)
        c = config
        lm = c.task == "lm"  # decoder only: no source positions, encoder or cross-attention
        learned = c.positions == "learned"
        self.src_pos = nn.Embedding(c.max_len, c.d_model) if learned and not lm else None
        self.tgt_pos = nn.Embedding(c.max_len, c.d_model) if learned else None
        rotary = None if learned else Rotary(c.d_model // c.n_heads, c.max_len)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = None if lm else nn.ModuleList(EncoderLayer(c, rotary) for _ in range(c.n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c, rotary) for _ in range(c.n_layers))
        self.enc_norm, self.dec_norm = (None if lm else nn.LayerNorm(c.d_model)), nn.LayerNorm(c.d_model)
        if c.init_range is not None:
            self.init_uniform()
        else:
            self.apply(self._gpt2_init)

    @staticmethod
    def _gpt2_init(module: nn.Module) -> None:
        """GPT-2 init: N(0, 0.02) weights and zero biases; PyTorch's N(0, 1) embeddings would swamp the tied logits."""
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def embedding_parameters(self) -> list[nn.Parameter]:
        positions = [p.weight for p in (self.src_pos, self.tgt_pos) if p is not None]
        return [*super().embedding_parameters(), *positions]

    def _embed(
        self, tokens: torch.Tensor, table: nn.Embedding, pos: nn.Embedding | None, name: str, offset: int = 0
    ) -> torch.Tensor:
        n = tokens.size(1)
        if offset + n > self.config.max_len:
            raise ValueError(
                f"{name} length {offset + n} exceeds TransformerConfig.max_len={self.config.max_len}"
            )
        x = table(tokens)
        if pos is not None:  # learned positions; rotary ones are applied in the attention
            x = x + pos(torch.arange(offset, offset + n, device=tokens.device))
        return self.drop(x)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        self.check_source(src, src_mask)
        x = self._embed(src, self.src_embed, self.src_pos, "src")
        for layer in self.encoder:
            x = layer(x, src_mask)
        return self.enc_norm(x)

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        if self.config.task == "lm":
            return self.lm_call(src, src_mask, tgt_in)
        memory = self.encode(src, src_mask)
        x = self._embed(tgt_in, self.tgt_embed, self.tgt_pos, "tgt_in")
        for layer in self.decoder:
            x = layer(x, memory, src_mask)
        return self.out_proj(self.dec_norm(x))

    def lm_hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self._embed(tokens, self.tgt_embed, self.tgt_pos, "tokens")
        for layer in self.decoder:
            x = layer(x, None, None)
        return self.dec_norm(x)

    def start_decoding(self, src: torch.Tensor, src_mask: torch.Tensor) -> DecodeState:
        """Encode once and project the memory's cross-attention keys/values once per layer; the self-attention
        cache of each layer starts empty and grows by one position per `decode_step` (task="lm": src is [B, 0]
        and only that cache is kept)."""
        B, H, d = src.size(0), self.config.n_heads, self.config.d_model
        empty = self.tgt_embed.weight.new_zeros(B, H, 0, d // H)
        lm = self.config.task == "lm"
        memory = None if lm else self.encode(src, src_mask)
        tensors = {} if lm else {"src_mask": src_mask}
        for i, layer in enumerate(self.decoder):
            if memory is not None:
                tensors[f"mem_k.{i}"], tensors[f"mem_v.{i}"] = layer.cross_attn.heads_kv(memory)
            tensors[f"self_k.{i}"], tensors[f"self_v.{i}"] = empty, empty
        return DecodeState(tensors)

    def decode_step(self, tokens: torch.Tensor, state: DecodeState) -> tuple[torch.Tensor, DecodeState]:
        """tokens Long[B] at position `state.step` -> next-token logits [B,V]; cost O(step), not O(step^2)."""
        t, pos, c = state.tensors, state.step, self.config
        if pos >= c.max_len:
            raise ValueError(f"decoding position {pos} is past TransformerConfig.max_len={c.max_len}")
        x = self._embed(tokens[:, None], self.tgt_embed, self.tgt_pos, "decoding position", offset=pos)
        grown = {}
        for i, layer in enumerate(self.decoder):
            names = ("self_k", "self_v", "mem_k", "mem_v")
            x, grown[f"self_k.{i}"], grown[f"self_v.{i}"] = layer.step(
                x, {n: t[f"{n}.{i}"] for n in names if f"{n}.{i}" in t}, t.get("src_mask"), pos
            )
        return self.out_proj(self.dec_norm(x))[:, 0], state.replace(**grown)

    def state_floats(self, seq_len: int, src_len: int = 0) -> int:
        """The KV cache after seq_len target tokens: a key and a value of width d (all heads) per position and
        layer, 2 d seq_len per layer; seq2seq adds the cross-attention keys and values of the source, 2 d src_len
        per layer. What `decode_step` carries."""
        self.check_state_lengths(seq_len, src_len)
        c = self.config
        return c.n_layers * 2 * c.d_model * (seq_len + src_len)

    def flops_per_token(self, src_len: int, tgt_len: int) -> float:
        """3 x forward FLOPs per target token; derivation in docs/flops.md. Attention counts the full
        score matrix (as the math kernel computes it; a causal flash kernel skips about half of T x T).
        task="lm": src_len must be 0 and the decoder has no cross-attention."""
        self.check_lm_src_len(src_len)
        c = self.config
        d, L, S, T = c.d_model, c.n_layers, src_len, tgt_len
        assert c.d_ff is not None
        ffn = 4.0 * d * c.d_ff
        enc_per_src = L * (8.0 * d * d + 4.0 * S * d + ffn) + L * 4.0 * d * d  # + cross-attn K,V of memory
        cross = 0.0 if c.task == "lm" else 4.0 * d * d + 4.0 * S * d  # cross-attn Q, O; scores and context
        dec_per_tgt = L * (8.0 * d * d + 4.0 * T * d + cross + ffn) + 2.0 * d * c.vocab_size
        return 3.0 * (enc_per_src * S / T + dec_per_tgt)
