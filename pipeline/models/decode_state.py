"""What a model carries from one decoding step to the next (its recurrent state or its key/value cache).

One small container for every architecture, so greedy and beam search never look inside it: they only ask it to
pick rows (`select`), which is how beam search expands each source into `beam` rows and follows the surviving
hypotheses after every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class DecodeState:
    """`tensors`: named tensors, each with the batch row on dim 0 (the models keep this convention, so a
    state can be reordered without knowing what it holds). `step`: tokens consumed so far (the next position)."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    step: int = 0

    def select(self, index: torch.Tensor) -> DecodeState:
        """The state of rows `index` (Long[R], repeats allowed): beam expansion and beam reordering."""
        return DecodeState({k: v.index_select(0, index) for k, v in self.tensors.items()}, self.step)

    def replace(self, **tensors: torch.Tensor) -> DecodeState:
        """A copy with some tensors replaced and `step` advanced by one (what every `decode_step` returns)."""
        return DecodeState({**self.tensors, **tensors}, self.step + 1)
