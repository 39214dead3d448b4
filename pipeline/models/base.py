"""The size/FLOPs-reporting base class of all seq2seq models (their shared config: `configs.Seq2SeqConfig`)."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.configs import Seq2SeqConfig, is_int
from pipeline.models.decode_state import DecodeState


class Seq2SeqModel(nn.Module):
    """Base of the three models: token embeddings, (tied) output projection and size reporting.

    Source and target get separate embedding matrices even though the vocabulary is joint, so the three
    architectures count embeddings the same way; `tie_embeddings` ties only the target side to the output.
    """

    config: Seq2SeqConfig

    def __init__(self, config: Seq2SeqConfig, d_embed: int) -> None:
        super().__init__()
        self.config = config
        self.src_embed = nn.Embedding(config.vocab_size, d_embed) if config.task == "seq2seq" else None
        self.tgt_embed = nn.Embedding(config.vocab_size, d_embed)
        self.out_proj = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.out_proj.weight = self.tgt_embed.weight

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def lm_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """task="lm": tokens Long[B,T] -> next-token logits Float[B,T,V]; logit t depends on tokens[:, :t+1] only."""
        return self.out_proj(self.lm_hidden(tokens))

    def lm_hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """task="lm": tokens Long[B,T] -> the states Float[B,T,d] the output projection reads (`lm_forward` is
        `out_proj(lm_hidden)`), so a loss scored at a few positions projects only those."""
        raise NotImplementedError

    def lm_call(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """`forward` of a language model: the batch's source must be empty (width 0); the logits are lm_forward's."""
        if src.size(1) != 0 or src_mask.size(1) != 0:
            raise ValueError(
                f"{type(self.config).__name__}.task='lm' takes an empty source, got src {tuple(src.shape)}"
            )
        return self.lm_forward(tgt_in)

    def check_lm_src_len(self, src_len: int) -> None:
        if self.config.task == "lm" and src_len != 0:
            raise ValueError(f"flops_per_token(src_len={src_len}): a task='lm' model has no source, pass 0")

    def start_decoding(self, src: torch.Tensor, src_mask: torch.Tensor) -> DecodeState:
        """Encode the source once -> the state `decode_step` carries (docs/interfaces.md, incremental decoding)."""
        raise NotImplementedError

    def decode_step(self, tokens: torch.Tensor, state: DecodeState) -> tuple[torch.Tensor, DecodeState]:
        """Feed tokens Long[B] at position `state.step` -> (next-token logits Float[B,V], the advanced state);
        equal to forward(src, src_mask, tgt_in)[:, step] for the same prefix, at O(1) (recurrent) or O(step)
        (attention) cost instead of re-running the prefix."""
        raise NotImplementedError

    def embedding_parameters(self) -> list[nn.Parameter]:
        """Token/position embedding matrices and an untied output projection (excluded from Kaplan's N)."""
        params = [e.weight for e in (self.src_embed, self.tgt_embed) if e is not None]  # lm: no source side
        if not self.config.tie_embeddings:
            params.append(self.out_proj.weight)
        return params

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count; tied weights count once (`parameters()` deduplicates them)."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= sum(p.numel() for p in {id(p): p for p in self.embedding_parameters()}.values())
        return total

    def step_stats(self) -> dict[str, float]:
        """Solver statistics of the last forward/backward for the trainer to log per step (e.g. Newton iterations
        of `recurrence=newton`); {} for models with nothing to report."""
        return {}

    def flops_per_token(self, src_len: int, tgt_len: int) -> float:
        """Training FLOPs (forward + backward = 3 x forward) per target token; see docs/flops.md."""
        raise NotImplementedError

    def output_flops_per_token(self) -> float:
        """The output projection's share of `flops_per_token`: 3 x 2 d V per position it runs at. A loss scored at a
        few positions (the memory tasks' answers) runs it there only, so the trainer's record counts it at those
        positions (pipeline/training/run_result.py, docs/flops.md)."""
        return 6.0 * self.out_proj.in_features * self.out_proj.out_features

    def state_floats(self, seq_len: int, src_len: int = 0) -> int:
        """Floats the model carries from one position to the next after reading `src_len` source and `seq_len`
        target tokens: what bounds how much context it can recall (Arora et al. 2024, Thm 3.1). The
        recurrent state of every layer for the LSTM family (independent of seq_len), the KV cache for attention."""
        raise NotImplementedError

    def state_bits(self, seq_len: int, src_len: int = 0, bits_per_float: int | None = None) -> int:
        """`state_floats` x the bits of one float: by default the parameters' dtype (32 for fp32 training)."""
        if bits_per_float is None:
            bits_per_float = torch.finfo(next(self.parameters()).dtype).bits
        return self.state_floats(seq_len, src_len) * bits_per_float

    def check_state_lengths(self, seq_len: int, src_len: int) -> None:
        if not (is_int(seq_len) and seq_len >= 0 and is_int(src_len) and src_len >= 0):
            raise ValueError(
                f"state_floats(seq_len={seq_len!r}, src_len={src_len!r}): lengths must be ints >= 0"
            )
        self.check_lm_src_len(src_len)

    def init_uniform(self) -> None:
        """Sutskever et al. 2014 init: every parameter uniform in [-init_range, init_range]."""
        r = self.config.init_range
        assert r is not None
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-r, r)

    def check_source(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """Validate shapes and return the real-token count per row (padding is on the right)."""
        if src.shape != src_mask.shape or src_mask.dtype != torch.bool:
            raise ValueError(
                f"src {tuple(src.shape)} and src_mask {tuple(src_mask.shape)} {src_mask.dtype} "
                "must have the same shape and src_mask must be bool"
            )
        return src_mask.sum(dim=1)
