"""The report's figures: PNG + PDF per figure, real images, readable log ticks, and the position section that uses
per-token losses where runs saved them and says so where they did not."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.scaling.records.run_record import RunRecord, save_record
from pipeline.scaling.records.token_losses import save_token_losses
from pipeline.scaling.report.write import write_report

T = 48


def _token_losses(rng, scale: float, bend_at: int | None, n_seq: int = 400) -> np.ndarray:
    """Per-token losses on the same 400 validation sequences (the seed fixes difficulty and lengths) for every
    run; ``bend_at``: the run gains less from context than the reference after that position."""
    t = np.arange(T)
    shared = np.random.default_rng(0)
    lengths = shared.integers(T // 3, T + 1, n_seq)
    difficulty = np.exp(shared.normal(0, 0.3, (n_seq, 1)))
    mean = scale * (3.0 + 2.0 / np.sqrt(1 + t))
    if bend_at is not None:
        mean = mean * np.exp(0.2 * np.maximum(0.0, np.log((t + 1) / (bend_at + 1))))
    loss = mean * difficulty * np.exp(0.4 * rng.normal(size=(n_seq, T)) - 0.08)
    loss[t[None, :] >= lengths[:, None]] = np.nan
    return loss


def write_sweep(root: Path) -> None:
    """lstm and transformer runs with per-token losses (the lstm bends at t = 12); residual_lstm without (an old
    record)."""
    rng = np.random.default_rng(1)
    scale = {"lstm": 1.08, "transformer": 1.0, "residual_lstm": 1.04}
    for arch, s in scale.items():
        for n in (2e4, 8e4, 3.2e5):
            for d in (1e5, 4e5):
                loss = s * (1.5 + 80 / n**0.3 + 60 / d**0.28)
                name = f"{arch}-{int(n)}-{int(d)}"
                tokens = _token_losses(rng, loss / 4.5, 12 if arch == "lstm" else None)
                curve = list(np.nanmean(tokens, axis=0))
                save_record(
                    root / name / "result.json",
                    RunRecord(
                        name,
                        arch,
                        int(2 * n),
                        int(n),
                        6 * n,
                        int(d),
                        6 * n * int(d),
                        d / 1e6,
                        loss,
                        loss,
                        curve,
                        1.0,
                        {},
                    ),  # fmt: skip
                )
                if arch != "residual_lstm":
                    save_token_losses(root / name, tokens)


def _is_real_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    img = matplotlib.image.imread(path)
    assert img.shape[0] > 300 and img.shape[1] > 500 and img[..., :3].std() > 0.05  # drawn, not blank


def test_report_writes_png_and_pdf_figures_and_tests_the_plateau_only_with_token_losses(tmp_path: Path):
    sweep, out = tmp_path / "sweep", tmp_path / "report"
    write_sweep(sweep)
    text = write_report(sweep, out, n_boot=10).read_text()
    for name in ("loss_vs_params", "loss_vs_compute", "loss_vs_position", "position_ratio"):
        _is_real_png(out / f"{name}.png")
        assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
        assert f"({name}.png)" in text
    section = text[text.index("## Loss by target position") : text.index("## Caveats")]
    lstm = next(line for line in section.splitlines() if line.startswith("- **lstm**"))
    assert "t* = " in lstm and "95 % CI [" in lstm and "p = " in lstm
    t_star = int(lstm.split("t* = ")[1].split(" ")[0])
    assert 8 <= t_star <= 18  # the bend is at 12
    old = next(line for line in section.splitlines() if line.startswith("- **residual_lstm**"))
    assert "not tested: no valid_token_losses.npz" in old
    assert "paired* bootstrap" in section


def test_log_axis_over_4_to_7_nats_has_several_labelled_ticks():
    from pipeline.scaling.report.figure_style import log_ticks, setup_matplotlib

    plt = setup_matplotlib()
    fig, ax = plt.subplots()
    ax.plot([1, 10], [4.1, 6.8])
    ax.set(yscale="log", ylim=(4.0, 7.0))
    default = [t.get_text() for t in ax.get_yticklabels(which="major") if t.get_text()]
    log_ticks(ax.yaxis, *ax.get_ylim())
    fig.canvas.draw()
    labels = [
        t.get_text() for t in ax.get_yticklabels() if t.get_text() and 4.0 <= t.get_position()[1] <= 7.0
    ]
    plt.close(fig)
    assert labels == ["4", "5", "6", "7"] and len(default) < 3
