"""The report's "Context (truncation)" section from truncation files: L(K) with clustered CIs, K* per arch, the
cluster unit and count, the Kneser-Ney floors, and which runs beat the trigram."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.scaling.analyses.context_truncation import truncation_study
from pipeline.scaling.analyses.k_star import simulate_truncation
from pipeline.scaling.records.run_record import RunRecord
from pipeline.scaling.records.truncation_file import load_truncation, save_truncation
from pipeline.scaling.report.truncation_section import FIGURE, truncation_lines

KS = (8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256)
CLUSTERS, WINDOWS, POSITIONS = 12, 36, 64


def _run(sweep: Path, name: str, arch: str, loss: float, plateau_at: int | None, seed: int) -> RunRecord:
    rng = np.random.default_rng(seed)
    per_token, ids = simulate_truncation(
        rng, CLUSTERS, WINDOWS, KS, POSITIONS, gain=0.08, plateau_at=plateau_at
    )
    per_token = np.maximum(per_token + 5.0, 0.0)  # losses in nats are >= 0
    names = np.array([f"b{i:02d}c001" for i in ids])
    save_truncation(sweep / name, per_token, KS, 0, {"chapter": names, "book": names}, "chapter",
                    [f"w{i:08d}" for i in range(WINDOWS)])  # fmt: skip
    floors = {"bigram": {"loss": 4.6, "by_position": []}, "trigram": {"loss": 4.35, "by_position": []}}
    return RunRecord(name, arch, 1000, 900, 1.0, 100, 100.0, 1.0, loss, loss, count_floors=floors)


def test_the_section_names_clusters_floors_k_star_and_who_beats_the_trigram(tmp_path: Path) -> None:
    records = [
        _run(tmp_path, "transformer-d32", "transformer", 4.20, None, 1),  # keeps gaining, beats the trigram
        _run(tmp_path, "lstm-d32", "lstm", 4.50, 32, 2),  # plateaus at 32, above the trigram
    ]
    got = load_truncation(tmp_path / "lstm-d32")
    assert got.loss.shape == (len(KS), WINDOWS, POSITIONS) and got.unit == "chapter"
    study = truncation_study(tmp_path, records, n_boot=199, null_sims=5)
    assert study.n_clusters == CLUSTERS and study.unit == "chapter" and study.reference == "transformer"
    by = {a.arch: a for a in study.archs}
    assert by["transformer"].conclusive and not by["lstm"].conclusive
    assert by["lstm"].k.k_star is not None and 16 <= by["lstm"].k.k_star <= 64
    diff = study.paired["lstm"]  # lstm - transformer on the same tokens, per K
    assert diff.estimate.shape == (len(KS),) and diff.n_clusters == CLUSTERS
    text = "\n".join(truncation_lines(study, tmp_path))
    assert "## Context (truncation)" in text and f"**{CLUSTERS} chapters**" in text
    assert "a context conclusion is drawn only from transformer**; lstm is above the trigram" in text
    assert "| lstm | `lstm-d32` | 900 | 100 | 4.500 | 4.600 | 4.350 | no |" in text
    assert "**1 of 2 runs beat the trigram**: `transformer-d32` (4.200 < 4.350)" in text
    assert "Level of the K* test at this design: false-plateau rate" in text
    cover = study.coverage["lstm"]  # its K* interval checked on studies with a bend planted at its estimate
    assert list(study.coverage) == ["lstm"] and cover.planted == by["lstm"].k.k_star and cover.n_sims == 5
    assert f"- lstm: planted K* = {cover.planted}" in text and "the study's own tokens as noise" in text
    assert "the gain gap D(K)" in text and "| K | lstm: D(K) | lstm: to separate |" in text
    gap = study.gaps["lstm"]  # the lstm plateaus at 32, the transformer keeps gaining: D(128) < 0, resolved
    assert gap.reference == "transformer" and gap.interval.hi[gap.contexts.index(128)] < 0
    assert "| 128 | -0.0" in text and "separated" in text
    assert (tmp_path / FIGURE).is_file() and (tmp_path / FIGURE).with_suffix(".pdf").is_file()
    assert truncation_lines(None, tmp_path) == []


def test_truncation_files_of_one_study_must_score_the_same_tokens(tmp_path: Path) -> None:
    records = [_run(tmp_path, "a", "transformer", 4.2, None, 1), _run(tmp_path, "b", "lstm", 4.2, None, 2)]
    save_truncation(tmp_path / "b", np.ones((2, 3, 4)), (8, 16), 0, {"chapter": ["x", "y", "z"]}, "chapter",
                    ["w0", "w1", "w2"])  # fmt: skip
    with pytest.raises(ValueError, match="contexts or windows differ"):
        truncation_study(tmp_path, records, n_boot=99, null_sims=0)
    with pytest.raises(ValueError, match="contexts must be positive and increasing"):
        save_truncation(
            tmp_path / "c", np.ones((2, 3, 4)), (16, 8), 0, {"chapter": ["x"] * 3}, "chapter", ["w"] * 3
        )


def test_runs_scored_at_different_strides_are_compared_on_the_tokens_both_scored(tmp_path: Path) -> None:
    records = [_run(tmp_path, "a", "transformer", 4.2, None, 1), _run(tmp_path, "b", "lstm", 4.2, 32, 2)]
    every = load_truncation(tmp_path / "b")
    strided = every.loss.copy()
    strided[:, :, 1::2] = np.nan  # train.eval_stride=2
    names = every.cluster_ids()
    save_truncation(tmp_path / "b", strided, KS, 0, {"chapter": names, "book": names}, "chapter",
                    every.window_key)  # fmt: skip
    study = truncation_study(tmp_path, records, n_boot=99, null_sims=0)
    assert study.n_positions == POSITIONS // 2
    by = {a.arch: a for a in study.archs}
    full = load_truncation(tmp_path / "a").loss  # the stride-1 run, cut to the stride-2 tokens
    assert np.isnan(by["transformer"].loss[:, :, 1::2]).all()
    np.testing.assert_allclose(by["transformer"].loss[:, :, ::2], full[:, :, ::2])
    want = np.nanmean((strided - full)[:, :, ::2].reshape(len(KS), -1), axis=1)
    np.testing.assert_allclose(study.paired["lstm"].estimate, want, atol=1e-9)


@pytest.mark.parametrize("positions, warned", [(None, True), ("learned", True), ("rope", False)])
def test_a_learned_position_table_is_flagged_beside_its_k_star(tmp_path: Path, positions, warned) -> None:
    import dataclasses

    model = {"arch": "transformer"} | ({} if positions is None else {"positions": positions})
    records = [
        dataclasses.replace(_run(tmp_path, "tf", "transformer", 4.2, None, 1), config={"model": model}),
        _run(tmp_path, "lstm", "lstm", 4.2, 32, 2),
    ]
    study = truncation_study(tmp_path, records, n_boot=99, null_sims=0)
    text = "\n".join(truncation_lines(study, tmp_path))
    assert ("**transformer: learned position table.**" in text) == warned
    assert "lstm: learned position" not in text


def test_the_reference_is_the_transformer_without_a_learned_position_table(tmp_path: Path) -> None:
    import dataclasses

    def transformer(name: str, positions: str) -> RunRecord:
        run = _run(tmp_path, name, name, 4.2, None, len(name))
        return dataclasses.replace(run, config={"model": {"arch": "transformer", "positions": positions}})

    lstm = _run(tmp_path, "lstm", "lstm", 4.2, 32, 2)
    records = [transformer("transformer", "learned"), transformer("transformer_rope", "rope"), lstm]
    study = truncation_study(tmp_path, records, n_boot=99, null_sims=0)
    assert study.reference == "transformer_rope" and set(study.paired) == {"transformer", "lstm"}
    assert study.gaps["lstm"].reference == "transformer_rope"
    # with only the learned table it is still the reference; with no Transformer, the first architecture
    assert truncation_study(tmp_path, records[:1] + [lstm], n_boot=99, null_sims=0).reference == "transformer"
    assert truncation_study(tmp_path, [lstm], n_boot=99, null_sims=0).reference == "lstm"
