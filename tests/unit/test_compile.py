"""`train.compile`: compiled training has eager's losses, a model that cannot compile trains eager with one warning.

Tolerance: over 3 AdamW steps of these tiny models the compiled losses differed from eager by at most 4.8e-7
(0 for transformer, lstm, lstm_no_cell_residual and newton; 4.8e-7 for residual_lstm and minlstm; losses ~3-6;
torch 2.13 CPU, inductor). Fused kernels reorder fp32 sums, so equality is not owed; 2e-5 is ~40x the largest
difference seen and still ~1e3x below what a wrong graph gives (a dropped term moves a loss by >1e-2).

Cost: each architecture is one inductor compile of one graph (a single batch shape). Measured on the shared 2-core
machine at load ~5-6: 213 s for the file with a cold inductor cache, 110 s warm (transformer 33 s, minlstm 27,
lstm_no_cell_residual 25, residual_lstm 13, lstm 9, lstm_newton 1: its solver stays eager); most of it is
inductor's fixed start-up and the C++ build, so smaller models would not save much. The models are as small as their configs allow (d_model 8, one layer where allowed) to
keep the graphs short; the six architectures are six distinct programs (attention; nn.LSTM; residual adds
around nn.LSTM; a TorchScript loop in an autograd.Function; a log-space scan; data-dependent Newton iterations).
The memory-task test compiles one more graph (an LSTM's `lm_hidden` and the projection at the answers): 22 s
(`pytest tests/unit/test_compile.py -k memory`, same machine and load).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from pipeline.config import RunConfig
from pipeline.training import compile as compile_mod
from pipeline.training.compile import CompileFallbackWarning, TrainingForward, wants_compile
from pipeline.training.module import Seq2SeqModule

VOCAB = 24
TOLERANCE = 2e-5
MODELS = {
    "transformer": {"arch": "transformer", "d_model": 8, "n_layers": 1, "n_heads": 2, "max_len": 16},
    "lstm": {"arch": "lstm", "d_model": 8, "n_layers": 1, "attention": True},
    "residual_lstm": {"arch": "residual_lstm", "d_model": 8, "n_layers": 2, "residual_from": 1},
    "lstm_no_cell_residual": {
        "arch": "lstm_no_cell_residual",
        "d_model": 8,
        "n_layers": 1,
        "attention": True,
    },
    "minlstm": {"arch": "minlstm", "d_model": 8, "n_layers": 1, "attention": True},
    "lstm_newton": {"arch": "lstm", "d_model": 8, "n_layers": 1, "attention": False, "recurrence": "newton"},
}


def batch(rows: int = 4, src_len: int = 7, tgt_len: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded sources of different lengths (the first row full), random targets."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(
        [src_len] + [int(x) for x in torch.randint(2, src_len + 1, (rows - 1,), generator=gen)]
    )
    mask = torch.arange(src_len)[None, :] < lengths[:, None]
    src = torch.randint(4, VOCAB, (rows, src_len), generator=gen) * mask
    tgt = torch.randint(4, VOCAB, (rows, tgt_len + 1), generator=gen)
    return {"src": src, "src_mask": mask, "tgt_in": tgt[:, :-1], "tgt_out": tgt[:, 1:]}


def module(model: dict, setting: str) -> Seq2SeqModule:
    cfg = RunConfig(model=dict(model))
    cfg.data.vocab_size, cfg.train.compile = VOCAB, setting
    torch.manual_seed(0)
    return Seq2SeqModule(cfg)


def losses(m: Seq2SeqModule, steps: int = 3, batches: list[dict] | None = None) -> list[float]:
    """`steps` training steps through `Seq2SeqModule.training_step` (where train.compile acts), AdamW; on
    `batches` where given (one step each), else on `batch(seed=step)`."""
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    out = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")  # no trainer attached: logging is a no-op
        for k in range(len(batches) if batches else steps):
            loss = m.training_step(batches[k] if batches else batch(seed=k), k)
            loss.backward()
            opt.step()
            opt.zero_grad()
            out.append(loss.item())
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_training_has_eager_losses(name: str) -> None:
    eager, compiled = module(MODELS[name], "none"), module(MODELS[name], "model")
    compiled.load_state_dict(eager.state_dict())  # same weights, whatever the two builds' RNG did
    want = losses(eager)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)  # every architecture must really compile
        got = losses(compiled)
    assert compiled.train_forward.is_compiled and not eager.train_forward.is_compiled
    assert max(abs(a - b) for a, b in zip(want, got, strict=True)) <= TOLERANCE, (name, want, got)
    assert want[0] != want[-1]  # the steps trained (a frozen model would match trivially)


def mqar_module(setting: str) -> Seq2SeqModule:
    cfg = RunConfig(model={"arch": "lstm", "d_model": 8, "n_layers": 1})
    cfg.data.task, cfg.train.compile = "mqar", setting
    cfg.data.mqar.vocab_size, cfg.data.mqar.n_pairs, cfg.data.mqar.seq_len = 32, 2, 16
    torch.manual_seed(0)
    return Seq2SeqModule(cfg)


def mqar_batches(steps: int = 3) -> list[dict[str, torch.Tensor]]:
    """Generated MQAR rows (V 32, N 2, L 16), 8 a batch: answers at the query positions only."""
    from pipeline.data.memory_spec import memory_spec
    from pipeline.data.prepare.memory_shards import generate

    ex = generate(memory_spec("mqar", vocab_size=32, n_pairs=2, seq_len=16, train_examples=8 * steps,
                              valid_examples=8, test_examples=8), "train")  # fmt: skip
    tokens, answers = torch.from_numpy(ex.tokens), torch.from_numpy(ex.targets * ex.mask)
    empty = torch.zeros(8, 0, dtype=torch.long)
    return [{"src": empty, "src_mask": empty.bool(), "tgt_in": tokens[k * 8 : (k + 1) * 8].long(),
             "tgt_out": answers[k * 8 : (k + 1) * 8].long()} for k in range(steps)]  # fmt: skip


def test_a_memory_task_compiles_its_answer_only_forward_with_eager_losses() -> None:
    """The memory tasks' training forward (lm_hidden + the projection at the answers) goes through train.compile
    like every other task's; one architecture, 3 steps (its compile is one inductor graph)."""
    eager, compiled = mqar_module("none"), mqar_module("model")
    compiled.load_state_dict(eager.state_dict())
    batches = mqar_batches()
    want = losses(eager, batches=batches)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        got = losses(compiled, batches=batches)
    assert compiled.train_forward.is_compiled and not eager.train_forward.is_compiled
    assert compiled.train_forward.record() == {"setting": "model", "compiled": True, "fallback": None}
    assert eager.train_forward.record() == {"setting": "none", "compiled": False, "fallback": None}
    assert max(abs(a - b) for a, b in zip(want, got, strict=True)) <= TOLERANCE, (want, got)
    assert want[0] != want[-1]


def failing_backend(gm: torch.fx.GraphModule, example_inputs: list) -> None:
    raise RuntimeError("no C++ compiler\nsecond line of a long inductor report")


def test_a_model_that_cannot_compile_trains_eager_after_one_warning_line() -> None:
    torch.manual_seed(0)
    eager = module(MODELS["lstm"], "none").model
    model = copy.deepcopy(eager)
    forward = TrainingForward(model, "model", MODELS["lstm"], 10**6, backend=failing_backend)
    b = batch()
    with pytest.warns(CompileFallbackWarning) as caught:
        out = forward(b["src"], b["src_mask"], b["tgt_in"])
    (message,) = [str(w.message) for w in caught if w.category is CompileFallbackWarning]
    assert "lstm cannot be compiled, training eager" in message and "no C++ compiler" in message
    assert "\n" not in message and "second line" not in message
    torch.testing.assert_close(out, eager(b["src"], b["src_mask"], b["tgt_in"]), rtol=0, atol=0)
    assert not forward.is_compiled and forward.fallback_reason
    assert forward.record() == {"setting": "model", "compiled": False, "fallback": forward.fallback_reason}
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)  # once: later steps are silent and eager
        forward(b["src"], b["src_mask"], b["tgt_in"])


def test_newton_is_named_by_its_recurrence_in_the_warning() -> None:
    forward = TrainingForward(
        torch.nn.Linear(2, 2), "model", MODELS["lstm_newton"], 10, backend=failing_backend
    )
    with pytest.warns(CompileFallbackWarning, match=r"lstm \(recurrence=newton\) cannot be compiled"):
        forward(torch.zeros(1, 2))


def test_auto_compiles_only_measured_pairs_on_long_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compile_mod, "AUTO_MIN_STEPS", {("cpu", "transformer"): 5000})
    long_run = 5000
    assert wants_compile("auto", {"arch": "transformer"}, "cpu", long_run)
    # a shorter run cannot win the compile time back
    assert not wants_compile("auto", {"arch": "transformer"}, "cpu", long_run - 1)
    assert not wants_compile("auto", {"arch": "transformer"}, "cuda", long_run)  # measured on CPU only
    assert not wants_compile("auto", {"arch": "lstm"}, "cpu", long_run)
    assert wants_compile("model", {"arch": "lstm"}, "cpu", 1) and not wants_compile("none", {}, "cpu", 10**9)
    with pytest.raises(ValueError, match="train.compile='yes'"):
        wants_compile("yes", {}, "cpu", 1)


def test_auto_with_an_empty_table_trains_eager_on_any_run_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until the roofline has been measured, `train.compile: auto` in the sweeps must change nothing."""
    monkeypatch.setattr(compile_mod, "AUTO_MIN_STEPS", {})

    def no_compiler(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.compile was called")

    monkeypatch.setattr(torch, "compile", no_compiler)
    runs = {}
    for setting in ("auto", "none"):
        cfg = RunConfig(model=dict(MODELS["transformer"]))
        cfg.data.vocab_size, cfg.train.compile, cfg.train.max_steps = VOCAB, setting, 10**9
        torch.manual_seed(0)
        runs[setting] = Seq2SeqModule(cfg)
    assert losses(runs["auto"]) == losses(runs["none"])
    assert runs["auto"].train_forward.decided and not runs["auto"].train_forward.is_compiled


def test_an_input_error_is_raised_as_eager_raises_it_and_compiling_stays_on() -> None:
    forward = TrainingForward(
        module(MODELS["lstm"], "none").model, "model", MODELS["lstm"], 10, failing_backend
    )
    b = batch()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        with pytest.raises(ValueError, match="must have the same shape"):
            forward(b["src"], b["src_mask"][:, :-1], b["tgt_in"])
    assert forward.is_compiled and forward.fallback_reason is None
