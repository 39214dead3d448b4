"""The loss on a token subset a user names, per run, with CIs: a planted marker whose next token one run learned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main as cli
from pipeline.data.tokenizer import BOS_ID, train_tokenizer
from pipeline.scaling.analyses.token_subset import TokenSelector, token_subset_losses
from pipeline.scaling.records.run_record import save_record
from pipeline.scaling.records.token_losses import key_ids, load_token_losses, save_token_losses
from tests.unit.test_scaling_seeds_lr import rec

N_SEQ, T = 80, 16


def _planted(tmp_path: Path) -> tuple[list[Path], int, int]:
    """Two runs on the same 80 sequences, each holding the marker '#' once; the lstm run learned the token after
    it (0.3 nats there, 4 elsewhere), the transformer run did not (4 nats everywhere)."""
    data = tmp_path / "data"
    data.mkdir()
    tok = train_tokenizer(["a # b c d e f g h i j k l m n o p q r s t u v w x y z " * 20], 300)
    tok.save(data / "tokenizer.json")
    (marker,) = tok.encode("#")
    rng = np.random.default_rng(0)
    tokens = rng.integers(100, 250, size=(N_SEQ, T)).astype(np.int32)
    tokens[tokens == marker] = 101
    at = rng.integers(0, T - 1, size=N_SEQ)
    tokens[np.arange(N_SEQ), at] = marker
    inputs = np.concatenate([np.full((N_SEQ, 1), BOS_ID, np.int32), tokens[:, :-1]], axis=1)
    after = inputs == marker
    keys = [f"doc{i // 4}-w{i % 4}" for i in range(N_SEQ)]
    runs = []
    for arch, planted_loss in (("lstm", 0.3), ("transformer", 4.0)):
        loss = 4.0 + rng.normal(0, 0.3, size=(N_SEQ, T))
        loss[after] = planted_loss + rng.normal(0, 0.05, size=after.sum())
        run = tmp_path / f"{arch}-run"
        order = rng.permutation(N_SEQ)  # validated in another order: rows are paired by their keys
        save_token_losses(run, loss[order], seq_key=[keys[i] for i in order], tokens=tokens[order],
                          inputs=inputs[order], scored=np.ones((N_SEQ, T), bool))  # fmt: skip
        mean = float(loss.mean())
        save_record(run / "result.json", rec(f"tiny-{arch}", arch=arch, loss=mean, loss_by_position=[mean] * T,
                                             config={"data": {"dir": str(data)}}))  # fmt: skip
        runs.append(run)
    return runs, int(marker), int(tokens[np.arange(N_SEQ), at + 1][0])


def test_the_tokens_after_a_marker_are_scored_per_run_with_cis(tmp_path: Path) -> None:
    runs, _, _ = _planted(tmp_path)
    result = token_subset_losses([str(r) for r in runs], [], TokenSelector(tokens_after="#"), n_boot=299)
    assert result.rows == []  # no records given: nothing scored
    from pipeline.scaling.records.sweep_dir import load_sweep

    records = load_sweep([str(r) for r in runs]).records
    result = token_subset_losses([str(r) for r in runs], records, TokenSelector(tokens_after="#"), n_boot=299)
    by_arch = {r.arch: r for r in result.rows}
    lstm, ref = by_arch["lstm"], by_arch["transformer"]
    assert lstm.n_tokens == N_SEQ and lstm.n_seqs == N_SEQ  # one planted marker per sequence
    assert lstm.subset.estimate == pytest.approx(0.3, abs=0.05) and lstm.subset.hi < 0.4
    assert lstm.overall.lo < lstm.overall.estimate < lstm.overall.hi and lstm.overall.estimate > 3.5
    assert lstm.gap.hi < -3  # the subset differs from the overall loss, CI and all
    assert ref.subset.lo < 4.0 < ref.subset.hi and ref.gap.lo < 0 < ref.gap.hi  # nothing learned there
    assert result.reference == "tiny-transformer"
    assert lstm.vs_reference is not None and lstm.vs_reference.hi < -3  # paired on the same tokens
    assert lstm.vs_reference.lo < lstm.vs_reference.estimate < lstm.vs_reference.hi

    out = tmp_path / "report"
    args = ["scaling", "report", *map(str, runs), "--out", str(out), "--n-boot", "10", "--tokens-after", "#"]
    assert cli(args) == 0
    text = (out / "report.md").read_text()
    assert "## Loss on a token subset" in text and "the tokens that follow a token matching `#`" in text
    assert f"| tiny-lstm | lstm | {N_SEQ} ({N_SEQ}) | {lstm.subset.estimate:.4f} [" in text


def test_token_ids_and_masks_select_and_bad_selections_say_why(tmp_path: Path, capsys) -> None:
    runs, _, target = _planted(tmp_path)
    from pipeline.scaling.records.sweep_dir import load_sweep

    records = load_sweep([str(r) for r in runs]).records
    by_ids = token_subset_losses(runs[0], records[:1], TokenSelector(token_ids=(target,)), n_boot=50)
    assert by_ids.rows[0].n_tokens == int((load_token_losses(runs[0]).tokens == target).sum())
    everything = token_subset_losses(runs[0], records[:1], TokenSelector(mask="scored"), n_boot=50).rows[0]
    assert everything.subset.estimate == pytest.approx(everything.overall.estimate)
    nothing = token_subset_losses(runs[0], records[:1], TokenSelector(tokens_after="zzzq"), n_boot=50)
    assert nothing.rows == [] and "no token of" in nothing.skipped[0]
    with pytest.raises(ValueError, match="name one token subset"):
        TokenSelector(tokens_after="#", token_ids=(1,))
    assert cli(["scaling", "report", str(runs[0]), "--token-ids", "1,x"]) == 2
    assert "--token-ids '1,x': expected integers separated by commas" in capsys.readouterr().err


def test_old_per_token_files_load_and_newer_ones_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "valid_token_losses.npz", loss=np.ones((3, 4), np.float32))  # format 1
    old = load_token_losses(tmp_path)
    assert old.tokens is None and list(old.seq_id) == [0, 1, 2]
    selector = TokenSelector(token_ids=(5,))
    with pytest.raises(ValueError, match="format 1"):
        from pipeline.scaling.analyses.token_subset import subset_mask

        subset_mask(old, selector)
    np.savez(
        tmp_path / "valid_token_losses.npz", loss=np.ones((3, 4), np.float32), format_version=np.int64(3)
    )
    with pytest.raises(ValueError, match="format_version 3 is newer than this pipeline reads"):
        load_token_losses(tmp_path)
    assert len(set(key_ids(["a", "b", "a"]))) == 2 and key_ids(["a"])[0] == key_ids(["a"])[0] >= 0
