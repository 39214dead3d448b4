"""Memory tasks through the pipeline: config keys and their errors, shards + manifest, the loader's
decoder-only batches and their resume, answer-only loss and the answer tally, every architecture on a batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.config import ConfigError, config_hash, describe_keys, load_config, to_dict
from pipeline.data.memory_spec import memory_spec
from pipeline.data.memory_tasks import IGNORE
from pipeline.data.prepare.memory_shards import ensure_memory_prepared, generate, prepare_memory
from pipeline.data.stream.loader import build_loader
from pipeline.training.answer_metrics import (
    AnswerForward,
    AnswerTally,
    answer_logits,
    answer_loss,
    validation_nll,
)
from pipeline.training.run_data import prepare_run_data
from pipeline.training.run_model import run_model
from tests.conftest import ROOT, TINY

MQAR = [*TINY, ROOT / "configs/tiny/mqar.yaml"]
COPY = [*TINY, ROOT / "configs/tiny/copy.yaml"]
SMALL = {"train_examples": 300, "valid_examples": 64, "test_examples": 64}


def mqar_spec(**keys: object) -> dict:
    return memory_spec("mqar", **{"vocab_size": 32, "n_pairs": 2, "seq_len": 16, **SMALL, **keys})


def copy_spec(**keys: object) -> dict:
    return memory_spec("copy", **{"alphabet_size": 4, "max_len": 4, "eval_max_len": 6, **SMALL, **keys})


def test_every_task_key_is_in_the_help_table() -> None:
    text = describe_keys()
    for name in ("data.mqar.vocab_size", "data.mqar.n_pairs", "data.mqar.seq_len", "data.mqar.power_a",
                 "data.mqar.filler", "data.copy.alphabet_size", "data.copy.min_len", "data.copy.max_len",
                 "data.copy.eval_min_len", "data.copy.eval_max_len", "data.memory.train_examples",
                 "data.memory.valid_examples", "data.memory.test_examples", "data.memory.seed"):  # fmt: skip
        assert f"\n{name} " in text
    assert "mqar" in text.split("\ndata.task ")[1].splitlines()[0]


@pytest.mark.parametrize(
    ("configs", "overrides", "says"),
    [
        (MQAR, ["data.mqar.n_pairs=20"], "data.mqar.vocab_size=32: must be an int with vocab_size//2 - 1 >= n_pairs=20"),
        (MQAR, ["data.mqar.n_pairs=5"], "data.mqar.seq_len=16: must be an int >= 4 * n_pairs = 20"),
        (MQAR, ["data.mqar.seq_len=32"], "model.max_len=16 is shorter than data.mqar.seq_len=32"),
        (MQAR, ["data.mqar.filler=ones"], "data.mqar.filler='ones' is not one of random, zeros"),
        (MQAR, ["data.mqar.power_a=0"], "data.mqar.power_a=0.0 must be > 0"),
        (MQAR, ["data.memory.valid_examples=0"], "data.memory.valid_examples=0 must be > 0"),
        (COPY, ["data.copy.eval_max_len=7"], "model.max_len=16 is shorter than data.copy max_len/eval_max_len=7"),
        (COPY, ["data.copy.min_len=5"], "data.copy.max_len=4: must be an int >= min_len=5"),
        (COPY, ["data.copy.eval_min_len=7"], "data.copy.eval_max_len=6: must be an int >= eval_min_len=7"),
        ([*COPY, ROOT / "configs/tiny/lstm.yaml"], [], "must be False when task='lm' (data.task=copy"),
        (MQAR, ["train.stop_at_accuracy=1.5"], "train.stop_at_accuracy=1.5 must be in (0, 1]"),
        (MQAR, ["train.stop_at_accuracy=0"], "train.stop_at_accuracy=0.0 must be in (0, 1]"),
        ([*TINY, ROOT / "configs/tiny/transformer.yaml"], ["train.stop_at_accuracy=0.9"],
         "train.stop_at_accuracy=0.9 needs data.task=mqar or copy (it stops on the answer accuracy), but data.task=translation"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_naming_the_key(configs: list, overrides: list[str], says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(configs, overrides)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_model_vocab_and_task_follow_the_memory_task() -> None:
    mqar_model = run_model(load_config(MQAR, ["data.mqar.vocab_size=48"]))
    copy_model = run_model(load_config(COPY, ["data.copy.alphabet_size=7"]))
    assert mqar_model.config.vocab_size == 48 and mqar_model.config.task == "lm"
    assert copy_model.config.vocab_size == 4 + 7 and copy_model.config.task == "lm"


def test_task_keys_enter_the_run_identity_only_for_their_task() -> None:
    base = to_dict(load_config(MQAR))
    other = to_dict(load_config(MQAR, ["data.mqar.n_pairs=3"]))
    assert config_hash(base) != config_hash(other)
    text = to_dict(
        load_config([*TINY, ROOT / "configs/tiny/transformer.yaml"])
    )  # translation: the memory sections do not change its hash
    moved = json.loads(json.dumps(text))
    moved["data"]["mqar"]["n_pairs"] = 3
    assert config_hash(text) == config_hash(moved)


def test_shards_hold_the_generated_examples_and_the_manifest_the_spec(tmp_path: Path) -> None:
    spec = mqar_spec()
    manifest = prepare_memory(tmp_path / "m", spec, shard_size=50)
    assert manifest["memory_task"] == spec and manifest["args"]["memory_task"] == spec
    assert manifest["task"] == "mqar" and manifest["vocab_size"] == 32 and manifest["max_len"] == 16
    assert [manifest["splits"][s]["samples"] for s in ("train", "valid", "test")] == [300, 64, 64]
    assert manifest["splits"]["valid"]["answers"] == 64 * 2
    again = prepare_memory(tmp_path / "again", spec, shard_size=50)
    assert again["dataset_hash"] == manifest["dataset_hash"]  # deterministic from the seed
    other = prepare_memory(tmp_path / "other", mqar_spec(seed=1), shard_size=50)
    assert other["dataset_hash"] != manifest["dataset_hash"]
    # valid is read in order and MQAR rows are all L long: batch rows are the generator's rows
    ex = generate(spec, "valid")
    batches = list(build_loader(tmp_path / "m", "valid", batch_tokens=16 * 64))
    assert len(batches) == 1
    b = batches[0]
    assert b["src"].shape == (64, 0) and b["n_answers"] == 128
    assert torch.equal(b["tgt_in"], torch.from_numpy(ex.tokens))
    assert torch.equal(b["tgt_out"], torch.from_numpy(np.where(ex.mask, ex.targets, 0)))
    assert torch.equal(b["meta"]["distance"], torch.from_numpy(ex.meta["distance"]))
    assert (ex.targets[ex.mask] != 0).all() and (ex.targets[~ex.mask] == IGNORE).all()


def test_a_changed_key_is_detected_not_reused(tmp_path: Path) -> None:
    ensure_memory_prepared(tmp_path / "m", mqar_spec())
    assert ensure_memory_prepared(tmp_path / "m", mqar_spec())["memory_task"] == mqar_spec()
    with pytest.raises(ValueError, match=r"n_pairs: 2 -> 3"):
        ensure_memory_prepared(tmp_path / "m", mqar_spec(n_pairs=3))


def test_copy_samples_are_cut_to_their_string_and_answers_are_the_next_token(tmp_path: Path) -> None:
    prepare_memory(tmp_path / "c", copy_spec(), shard_size=40)
    lengths = set()
    for b in build_loader(tmp_path / "c", "valid", batch_tokens=15 * 8):
        length = b["meta"]["length"].max(1).values
        lengths |= set(length.tolist())
        assert b["tgt_in"].size(1) == int(2 * length.max() + 3)  # no row padded past the batch's longest
        real = b["tgt_out"] != 0
        assert torch.equal(real.sum(1), length + 1)  # the copy and the '.'
        shifted = torch.cat([b["tgt_in"][:, 1:], torch.zeros_like(b["tgt_in"][:, :1])], 1)
        assert torch.equal(b["tgt_out"][real], shifted[real])
    assert lengths == set(range(1, 7))  # valid draws from the eval range, beyond the train range
    train = {n for b in build_loader(tmp_path / "c", "train", batch_tokens=15 * 8) for n in b["meta"]["length"].max(1).values.tolist()}  # fmt: skip
    assert max(train) == 4 and train <= set(
        range(1, 5)
    )  # (few strings of length 1 exist: all may be held out)


@pytest.mark.parametrize("task", ["mqar", "copy"])
def test_loader_resumes_mid_epoch_at_the_same_next_batch(tmp_path: Path, task: str) -> None:
    spec = mqar_spec() if task == "mqar" else copy_spec()
    prepare_memory(tmp_path / task, spec, shard_size=40)

    def loader():
        return build_loader(tmp_path / task, "train", batch_tokens=160, bucket_size=64, seed=3, infinite=True)

    def take(ld, k: int) -> list[dict]:
        out = []
        for batch in ld:
            out.append(batch)
            if len(out) == k:
                break
        return out

    straight = take(loader(), 10)
    first = loader()
    take(first, 5)
    resumed = loader()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for a, b in zip(take(resumed, 5), straight[5:], strict=True):
        for name in ("tgt_in", "tgt_out"):
            assert torch.equal(a[name], b[name])
        assert all(torch.equal(a["meta"][k], b["meta"][k]) for k in a["meta"])


CASES = {
    "lstm": [],
    "lstm_newton": ["model.recurrence=newton"],
    "residual_lstm": [],
    "lstm_no_cell_residual": [],
    "minlstm": [],
    "transformer": [],
}


@pytest.fixture(scope="module")
def mqar_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    data = tmp_path_factory.mktemp("mqar") / "m"
    prepare_run_data(
        load_config(MQAR, [f"data.dir={data}", *[f"data.memory.{k}={v}" for k, v in SMALL.items()]]).data
    )
    return data, next(iter(build_loader(data, "train", batch_tokens=16 * 12, seed=1)))


@pytest.mark.parametrize("case", CASES)
def test_every_architecture_trains_a_step_on_answers_only(case: str, mqar_batch: tuple[Path, dict]) -> None:
    data, batch = mqar_batch
    arch = "lstm" if case == "lstm_newton" else case
    recurrent = [] if arch == "transformer" else ["model.attention=false"] if arch != "residual_lstm" else []
    arch_file = ROOT / f"configs/tiny/{arch}.yaml"
    cfg = load_config([*MQAR, arch_file], [f"data.dir={data}", *recurrent, *CASES[case]])
    torch.manual_seed(0)
    model = run_model(cfg)
    assert model.config.task == "lm"
    full = model.lm_forward(batch["tgt_in"])  # [B, T, V]: the answer-only loss must equal its masked mean
    reference = F.cross_entropy(full.flatten(0, 1), batch["tgt_out"].flatten(), ignore_index=0)
    loss = answer_loss(AnswerForward(model), batch)
    torch.testing.assert_close(loss, reference)
    logits, targets, where = answer_logits(model, batch["tgt_in"], batch["tgt_out"])
    assert logits.shape == (int(where.sum()), cfg.data.mqar.vocab_size) and (targets >= 16).all()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_tally_counts_buckets_and_exact_copies_by_hand() -> None:
    # copy: two rows; row 0 (length 2) copied exactly, row 1 (length 1) wrong at its '.'
    tgt_out = torch.tensor([[0, 0, 5, 6, 3, 0, 0], [0, 7, 3, 0, 0, 0, 0]])
    length = torch.where(tgt_out != 0, torch.tensor([[2], [1]]), torch.tensor(-1))
    batch = {"tgt_out": tgt_out, "meta": {"length": length, "offset": length}}
    where = tgt_out != 0
    targets = tgt_out[where]  # [5, 6, 3, 7, 3]
    logits = F.one_hot(torch.tensor([5, 6, 3, 7, 4]), 8).float()
    tally = AnswerTally("copy", 7)
    tally.update(batch, where, logits, targets, torch.ones(5))
    s = tally.summary()
    assert (s["answers"], s["correct"], s["strings"], s["exact"]) == (5, 4, 2, 1)
    assert s["accuracy"] == 0.8 and s["exact_match"] == 0.5 and s["loss"] == 1.0
    assert [(r["length"], r["answers"], r["correct"], r["exact"]) for r in s["by_length"]] == [
        (1, 2, 1, 0),
        (2, 3, 3, 1),
    ]
    # mqar: distances 2, 3, 4, 9 -> log2 buckets [2, 3], [4, 7], [8, 15]
    dist = torch.tensor([[-1, 2, -1, 3, 4, 9]])
    batch = {"tgt_out": (dist > 0).long() * 20, "meta": {"distance": dist, "pair": dist}}
    where = dist > 0
    tally = AnswerTally("mqar", 16)
    tally.update(
        batch,
        where,
        F.one_hot(torch.tensor([20, 1, 20, 20]), 32).float(),
        torch.full((4,), 20),
        torch.zeros(4),
    )
    rows = tally.summary()["by_distance"]
    assert [(r["distance"], r["answers"], r["correct"]) for r in rows] == [
        ([2, 3], 2, 1),
        ([4, 7], 1, 1),
        ([8, 15], 1, 1),
    ]


def test_validation_nll_is_zero_off_the_answers(mqar_batch: tuple[Path, dict]) -> None:
    _, batch = mqar_batch
    torch.manual_seed(0)
    model = run_model(load_config(MQAR)).eval()
    tally = AnswerTally("mqar", 16)
    nll = validation_nll(tally, model, batch)
    full = F.cross_entropy(model.lm_forward(batch["tgt_in"]).flatten(0, 1), batch["tgt_out"].flatten(),
                           ignore_index=0, reduction="none").view_as(nll)  # fmt: skip
    torch.testing.assert_close(nll, full)
    assert tally.summary()["answers"] == int((batch["tgt_out"] != 0).sum())


def test_data_prepare_command_generates_a_task_and_names_bad_keys(tmp_path: Path, capsys) -> None:
    from pipeline.cli import main

    out = tmp_path / "m"
    flags = ["--set", "vocab_size=32", "--set", "n_pairs=2", "--set", "seq_len=16", "--set", "filler=zeros"]
    assert main(["data", "prepare", "--task", "mqar", "--out", str(out), *flags]) == 0
    assert json.loads((out / "manifest.json").read_text())["memory_task"] == mqar_spec(
        filler="zeros", train_examples=10000, valid_examples=1000, test_examples=1000
    )
    assert "prepared mqar:" in capsys.readouterr().out
    assert (
        main(["data", "prepare", "--task", "mqar", "--out", str(tmp_path / "bad"), "--set", "n_pair=2"]) == 2
    )
    err = capsys.readouterr().err
    assert "unknown key 'n_pair'" in err and err.count("\n") == 1
    assert (
        main(["data", "prepare", "--task", "copy", "--out", str(tmp_path / "bad"), "--set", "max_len=0"]) == 2
    )
    assert "copy.max_len=0" in capsys.readouterr().err


def test_a_memory_section_the_task_does_not_read_is_a_warning() -> None:
    from pipeline.config import ConfigWarning

    with pytest.warns(ConfigWarning, match=r"data\.mqar\.\* does nothing with data\.task=translation"):
        load_config([*TINY, ROOT / "configs/tiny/transformer.yaml"], ["data.mqar.n_pairs=3"])
    with pytest.warns(ConfigWarning, match=r"data\.copy\.\* does nothing with data\.task=mqar"):
        load_config(MQAR, ["data.copy.max_len=3"])


def test_flop_count_of_an_answer_only_step_is_the_projection_at_the_answers(
    mqar_batch: tuple[Path, dict],
) -> None:
    """FlopCounterMode on one answer-only training step (forward + backward) of the Transformer (every matmul
    visible to it) equals the model's FLOPs with the output projection counted at the answers only: what the
    record's `flops_per_token` counts (pipeline/training/run_result.py, docs/flops.md)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    _, batch = mqar_batch
    torch.manual_seed(0)
    model = run_model(load_config(MQAR))
    rows, length = batch["tgt_in"].shape
    answers = int((batch["tgt_out"] != 0).sum())
    assert answers == rows * 2  # N = 2 queries a row
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        answer_loss(AnswerForward(model), batch).backward()
    full, output = model.flops_per_token(0, length), model.output_flops_per_token()
    assert output == 6 * 32 * 32  # 3 x 2 d V
    counted = (full - output * (1 - answers / (rows * length))) * rows * length
    assert counter.get_total_flops() == pytest.approx(counted, rel=1e-12)
    from pipeline.training.throughput import batch_flops_per_token  # the run's logged FLOP/s count the same

    assert batch_flops_per_token(model, batch) * int(batch["n_tokens"]) == pytest.approx(counted, rel=1e-12)
    # the projection at every position (what flops_per_token alone counts) is not what ran
    assert full * rows * length - counter.get_total_flops() == pytest.approx(
        output * (rows * length - answers)
    )
