"""Every architecture's config: its keys, defaults and validation, with no torch import.

Kept apart from the modules so that a config is checked (`pipeline train`'s one-line error on a bad key, `pipeline
submit`, a grid's dry run) without importing torch, which takes seconds; the model files import their config from
here. `model_config` builds and validates one by its `model.arch` name.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

ON_FAIL = ("sequential", "error")  # what the Newton solver does past its iteration cap (newton_lstm.py)


def check(ok: bool, config: Any, key: str, must: str) -> None:
    """Raise a ValueError naming the config class, the key, its value and what it must be."""
    if not ok:
        value = getattr(config, key)
        raise ValueError(f"{type(config).__name__}.{key}={value!r}: must be {must}")


TASKS = ("seq2seq", "lm")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(kw_only=True)
class Seq2SeqConfig:
    """Fields every architecture has. Subclasses add their own and extend `validate`."""

    vocab_size: int
    d_model: int
    n_layers: int
    pad_id: int = 0
    dropout: float = 0.0
    tie_embeddings: bool = True  # target embedding shared with the output projection
    init_range: float | None = None  # uniform(-r, r) over every parameter (Sutskever et al. 2014)
    # "lm": decoder only (no source embedding, encoder or attention over a source): next-token prediction
    task: str = "seq2seq"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check(is_int(self.vocab_size) and self.vocab_size > 0, self, "vocab_size", "a positive int")
        check(is_int(self.d_model) and self.d_model > 0, self, "d_model", "a positive int")
        check(is_int(self.n_layers) and self.n_layers > 0, self, "n_layers", "a positive int")
        check(
            is_int(self.pad_id) and 0 <= self.pad_id < self.vocab_size,
            self,
            "pad_id",
            f"an int in [0, vocab_size={self.vocab_size})",
        )
        check(
            isinstance(self.dropout, int | float) and 0.0 <= self.dropout < 1.0, self, "dropout", "in [0, 1)"
        )
        check(isinstance(self.tie_embeddings, bool), self, "tie_embeddings", "a bool")
        check(self.task in TASKS, self, "task", f"one of {TASKS}")
        check(
            self.init_range is None or (isinstance(self.init_range, int | float) and self.init_range > 0),
            self,
            "init_range",
            "None or a positive float",
        )


@dataclass(kw_only=True)
class LSTMConfig(Seq2SeqConfig):
    """Sutskever et al. 2014: n_layers=4, d_model=1000, d_embed=1000, reverse_source=True, attention=False,
    init_range=0.08 (they also used separate, untied softmax weights: tie_embeddings=False)."""

    attention: bool = True  # Luong dot-product global attention over encoder states
    reverse_source: bool = False  # reverse each row's real tokens; padding stays on the right
    d_embed: int | None = None  # None resolves to d_model on construction
    # solver of the same nn.LSTM weights: "newton" = parallel quasi-Newton scans (docs/parallel_lstm.md)
    recurrence: str = "sequential"
    newton_max_iters: int = 100  # scans per layer solve, forward and backward each
    newton_tol: float = 1e-5  # max |F(s) - s| / (1 + |F(s)|) (forward); relative to max |lambda| (backward)
    newton_on_fail: str = "sequential"  # past the cap: exact sequential fallback (counted) or "error"
    newton_capable: ClassVar[bool] = True  # subclasses opt in: their stacks must be nn.LSTMs
    # what `model_config` fills in for task="lm" when the key is not given (a language model has no source)
    lm_defaults: ClassVar[dict[str, Any]] = {"attention": False}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.newton_capable = cls.__dict__.get("newton_capable", False)

    def validate(self) -> None:
        super().validate()
        if self.d_embed is None:
            self.d_embed = self.d_model
        for key in ("attention", "reverse_source"):  # source-side keys: a language model has no source
            check(self.task == "seq2seq" or getattr(self, key) is False, self, key, "False when task='lm'")
        check(self.recurrence in ("sequential", "newton"), self, "recurrence", "'sequential' or 'newton'")
        check(
            self.recurrence == "sequential" or self.newton_capable,
            self,
            "recurrence",
            "'sequential' for this arch (the newton solver covers lstm and residual_lstm)",
        )
        check(
            is_int(self.newton_max_iters) and self.newton_max_iters >= 1,
            self,
            "newton_max_iters",
            "an int >= 1",
        )
        check(
            isinstance(self.newton_tol, int | float) and self.newton_tol > 0,
            self,
            "newton_tol",
            "a float > 0",
        )
        check(self.newton_on_fail in ON_FAIL, self, "newton_on_fail", f"one of {ON_FAIL}")
        check(is_int(self.d_embed) and self.d_embed > 0, self, "d_embed", "None or a positive int")
        check(isinstance(self.attention, bool), self, "attention", "a bool")
        check(isinstance(self.reverse_source, bool), self, "reverse_source", "a bool")
        check(
            not self.tie_embeddings or self.d_embed == self.d_model,
            self,
            "d_embed",
            f"equal to d_model={self.d_model} when tie_embeddings=True",
        )


@dataclass(kw_only=True)
class ResidualLSTMConfig(LSTMConfig):
    residual_from: int = 2  # first 0-based layer with a residual; >= n_layers means a plain stacked LSTM
    newton_capable: ClassVar[bool] = True  # its stacks are nn.LSTMs: recurrence=newton applies

    def validate(self) -> None:
        super().validate()
        check(is_int(self.residual_from) and self.residual_from >= 0, self, "residual_from", "an int >= 0")
        check(
            self.residual_from > 0 or self.d_embed == self.d_model,
            self,
            "residual_from",
            f">= 1 when d_embed={self.d_embed} != d_model={self.d_model} (layer 0 input has another width)",
        )


@dataclass(kw_only=True)
class LSTMNoCellResidualConfig(LSTMConfig):
    """Same keys as `lstm`."""


@dataclass(kw_only=True)
class MinLSTMConfig(LSTMConfig):
    """Same keys as `lstm`."""


POSITIONS = ("learned", "rope")  # TransformerConfig.positions


@dataclass(kw_only=True)
class TransformerConfig(Seq2SeqConfig):
    """`n_layers` is the depth of the encoder and of the decoder each."""

    n_heads: int
    d_ff: int | None = None  # None resolves to 4 * d_model on construction
    max_len: int = 512
    positions: str = "learned"  # "learned" absolute embeddings, or "rope" rotary (pipeline/models/rotary.py)

    def validate(self) -> None:
        super().validate()
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        check(
            is_int(self.n_heads) and self.n_heads > 0 and self.d_model % self.n_heads == 0,
            self,
            "n_heads",
            f"a positive int dividing d_model={self.d_model}",
        )
        check(is_int(self.d_ff) and self.d_ff > 0, self, "d_ff", "None or a positive int")
        check(is_int(self.max_len) and self.max_len > 0, self, "max_len", "a positive int")
        check(self.positions in POSITIONS, self, "positions", " or ".join(map(repr, POSITIONS)))
        if self.positions == "rope":
            check(
                (self.d_model // self.n_heads) % 2 == 0,
                self,
                "positions",
                f"'learned' with an odd head width (rope rotates pairs; d_model/n_heads = {self.d_model // self.n_heads})",
            )


CONFIGS: dict[str, type[Seq2SeqConfig]] = {
    "lstm": LSTMConfig,
    "residual_lstm": ResidualLSTMConfig,
    "transformer": TransformerConfig,
    # ablations (docs/ablations.md): the cell state's residual through time removed; a parallel-scan recurrence
    "lstm_no_cell_residual": LSTMNoCellResidualConfig,
    "minlstm": MinLSTMConfig,
}


def model_config(arch: str, **kwargs: Any) -> Seq2SeqConfig:
    """Build and validate the config of `arch`; every mistake is a ValueError naming the key."""
    if arch not in CONFIGS:
        raise ValueError(f"unknown model arch {arch!r}; known: {sorted(CONFIGS)}")
    config_cls = CONFIGS[arch]
    if kwargs.get("task") == "lm":  # source-side keys default off; set explicitly on, validate names them
        kwargs = {**getattr(config_cls, "lm_defaults", {}), **kwargs}
    valid = {f.name: f for f in fields(config_cls)}
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for model arch {arch!r}; valid keys: {sorted(valid)}")
    missing = sorted(
        n
        for n, f in valid.items()
        if n not in kwargs and f.default is MISSING and f.default_factory is MISSING
    )
    if missing:
        raise ValueError(f"missing required key(s) {missing} for model arch {arch!r}")
    return config_cls(**kwargs)
