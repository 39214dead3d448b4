"""A run config is parsed and validated once (`load_config`) and passed down as the same object: the
LightningModule and the model builder use it as is; a checkpoint's saved dict is read back once."""

from __future__ import annotations

import pytest

import pipeline.models.configs
from pipeline.config import load_config, model_spec, to_dict
from tests.conftest import ROOT, TINY


@pytest.fixture
def model_config_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call of the model registry's key parser, by architecture."""
    calls: list[str] = []
    real = pipeline.models.configs.model_config

    def counting(arch: str, **kwargs: object) -> object:
        calls.append(arch)
        return real(arch, **kwargs)

    monkeypatch.setattr(pipeline.models.configs, "model_config", counting)
    return calls


def test_the_module_and_the_model_use_the_loaded_config_without_parsing_it_again(
    model_config_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.config.loading as loading
    from pipeline.training.module import Seq2SeqModule

    cfg = load_config([*TINY, ROOT / "configs/tiny/lstm.yaml"])
    assert model_config_calls == ["lstm"]
    merges: list[str] = []
    real_merge = loading._merge_section
    monkeypatch.setattr(
        loading, "_merge_section", lambda *a, **k: merges.append("merge") or real_merge(*a, **k)
    )
    module = Seq2SeqModule(cfg)
    assert module.cfg is cfg
    assert model_config_calls == ["lstm"] and merges == []
    assert module.hparams["config"] == to_dict(cfg)  # what a checkpoint saves


def test_a_checkpoint_s_saved_dict_is_read_back_once(model_config_calls: list[str]) -> None:
    from pipeline.training.module import Seq2SeqModule

    cfg = load_config([*TINY, ROOT / "configs/tiny/transformer.yaml"])
    restored = Seq2SeqModule(to_dict(cfg))  # what load_from_checkpoint passes
    assert to_dict(restored.cfg) == to_dict(cfg)
    assert model_config_calls == ["transformer", "transformer"]  # load_config, then the checkpoint's dict


def test_the_model_spec_follows_an_in_place_edit(model_config_calls: list[str]) -> None:
    cfg = load_config([*TINY, ROOT / "configs/tiny/lstm.yaml"])
    assert model_spec(cfg) is model_spec(cfg) and len(model_config_calls) == 1
    cfg.data.vocab_size = 300
    cfg.model["d_model"] = 24
    spec = model_spec(cfg)
    assert (spec.vocab_size, spec.d_model) == (300, 24) and len(model_config_calls) == 2
