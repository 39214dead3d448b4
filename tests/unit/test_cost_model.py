"""The cost model (pipeline/cost), its GPU check script in CPU mode, and the report's time axis."""

from __future__ import annotations

import copy
import json
import logging
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline.cost.accelerators import device_model, match_accelerator
from pipeline.cost.precision import check_lstm_precision, cudnn_version, run_recurrence_in
from pipeline.cost.projection import project, shape_from_run_config
from pipeline.cost.step_time import DeviceModel, StepCost, calibrate, fit_error
from pipeline.cost.structure import HEAD_DEPTH, StepShape, step_depth, step_flops
from pipeline.models.registry import build_model
from pipeline.scaling.analyses.time_axis import first_behind, measured_curves, projected_seconds
from pipeline.scaling.records.run_record import RunRecord
from pipeline.scaling.report.time_axis_section import time_axis_section

CFG = {"vocab_size": 100, "d_model": 32, "n_layers": 3}
TF = {**CFG, "n_heads": 4}


# ---------------------------------------------------------------- structure
def test_depth_per_arch():
    L, S, T = 3, 20, 40
    assert step_depth("lstm", CFG, S, T) == 2 * (L * (S + T) + HEAD_DEPTH)
    assert step_depth("residual_lstm", CFG, S, T) == step_depth("lstm", CFG, S, T)
    assert step_depth("transformer", TF, S, T) == 2 * (2 * L + HEAD_DEPTH)
    assert step_depth("transformer", TF, S, 10 * T) == step_depth("transformer", TF, S, T)  # no T in it
    assert step_depth("minlstm", CFG, S, T) == 2 * (L * (5 + 6) + HEAD_DEPTH)  # ceil(log2 20), ceil(log2 40)
    newton = {**CFG, "recurrence": "newton", "newton_iters": 4}
    assert step_depth("lstm", newton, S, T) == 2 * (4 * L * 2 * 11 + HEAD_DEPTH)  # cell + 2 log2 T - 1 levels
    capped = {**CFG, "recurrence": "newton", "newton_max_iters": 7}  # no measured iterations: the cap
    assert step_depth("lstm", capped, S, T) == 2 * (7 * L * 2 * 11 + HEAD_DEPTH)
    with pytest.raises(ValueError, match="recurrence"):
        step_depth("lstm", {**CFG, "recurrence": "sideways"}, S, T)
    with pytest.raises(ValueError, match="unknown model arch"):
        step_depth("gru", CFG, S, T)


def test_step_flops_come_from_the_models_own_formula():
    shape = StepShape(4, 9, 11)
    for arch, cfg in (("lstm", CFG), ("transformer", TF), ("minlstm", CFG)):
        expected = build_model(arch, **cfg).flops_per_token(9, 11) * 4 * 11
        assert step_flops(arch, cfg, shape) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- the model and its calibration
def test_max_form_and_bound():
    m = DeviceModel("d", flops_per_s=1e9, step_latency_s=1e-4, overhead_s=0.01)
    compute_bound = StepCost(flops=1e9, depth=100)  # 1 s compute vs 0.01 s latency
    latency_bound = StepCost(flops=1e6, depth=10_000)  # 1 ms compute vs 1 s latency
    assert m.predict(compute_bound) == pytest.approx(1.0 + 0.01)
    assert m.predict(latency_bound) == pytest.approx(1.0 + 0.01)
    assert (m.bound(compute_bound), m.bound(latency_bound)) == ("compute", "latency")
    s = DeviceModel("d", 1e9, 1e-4, 0.01, form="sum")
    assert s.predict(compute_bound) == pytest.approx(1.0 + 0.01 + 0.01)
    # twice the FLOP/s halves only the compute-bound step
    assert m.scaled(2).predict(compute_bound) == pytest.approx(0.51)
    assert m.scaled(2).predict(latency_bound) == pytest.approx(m.predict(latency_bound))


def _grid_costs() -> list[StepCost]:
    return [StepCost(flops=f, depth=d, params=10_000) for f in np.geomspace(1e7, 1e11, 6)
            for d in (10, 300, 3000, 30_000)]  # fmt: skip


@pytest.mark.parametrize("form", ["max", "sum"])
def test_calibration_recovers_known_parameters(form):
    true = DeviceModel("true", 2e10, 3e-5, 2e-3, bytes_per_s=1e10, form=form)
    costs = _grid_costs()
    rng = np.random.default_rng(0)
    exact = [true.predict(c) for c in costs]
    fit = calibrate(costs, exact, "fit", form=form, bytes_per_s=1e10)
    for key in ("flops_per_s", "step_latency_s", "overhead_s"):
        assert getattr(fit.model, key) == pytest.approx(getattr(true, key), rel=1e-3), key
    assert fit.error["max_rel_error"] < 1e-3
    noisy = [t * math.exp(rng.normal(0, 0.03)) for t in exact]
    fit = calibrate(costs, noisy, "fit", form=form, bytes_per_s=1e10)
    assert fit.model.flops_per_s == pytest.approx(true.flops_per_s, rel=0.1)
    assert fit.model.step_latency_s == pytest.approx(true.step_latency_s, rel=0.1)
    assert 0.005 < fit.error["median_rel_error"] < 0.06


def test_calibration_refuses_too_few_points():
    with pytest.raises(ValueError, match=">= 4"):
        calibrate(_grid_costs()[:3], [1.0, 1.0, 1.0], "x")
    with pytest.raises(ValueError, match="form"):
        calibrate(_grid_costs(), [1.0] * 24, "x", form="min")


def test_fit_error_is_relative():
    m = DeviceModel("d", 1e9, 1e-9, 0.0)
    err = fit_error(m, [StepCost(1e9, 1), StepCost(2e9, 1)], [2.0, 2.0])  # predicted 1 s and 2 s
    assert err == {"median_rel_error": 0.25, "max_rel_error": 0.5, "n": 2}


# ---------------------------------------------------------------- projection
def test_projection_sanity_on_h100():
    h100, a100 = device_model("h100-sxm"), device_model("a100-sxm")
    big = {"vocab_size": 1000, "d_model": 256, "n_layers": 2}
    tf = {**big, "n_heads": 8}
    tokens = 16384
    lstm_tps = [
        project("lstm", big, StepShape(tokens // t, t, t), h100).tokens_per_s for t in (64, 256, 1024, 4096)
    ]
    assert lstm_tps == sorted(lstm_tps, reverse=True)  # longer sequences: more dependent steps per token
    long = project("lstm", big, StepShape(4, 4096, 4096), h100)
    assert long.bound == "latency"
    assert project("transformer", tf, StepShape(64, 256, 256), h100).bound == "compute"
    for arch, cfg in (("lstm", big), ("transformer", tf)):
        shape = StepShape(64, 256, 256)
        assert project(arch, cfg, shape, h100).tokens_per_s > project(arch, cfg, shape, a100).tokens_per_s
        wider = {**cfg, "d_model": 512}
        assert project(arch, wider, shape, h100).step_s > project(arch, cfg, shape, h100).step_s
    assert "projection" in long.label


def test_match_accelerator_names():
    assert match_accelerator("NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert match_accelerator("NVIDIA A100-SXM4-80GB") == "a100-sxm"
    assert match_accelerator("NVIDIA H200") == "h200-sxm"
    assert match_accelerator("NVIDIA H100 PCIe") is None
    assert match_accelerator("Tesla T4") is None


# ---------------------------------------------------------------- the cuDNN bf16 trap
def test_cudnn_bf16_check_with_mocked_versions(caplog, monkeypatch):
    with caplog.at_level(logging.WARNING, logger="pipeline.cost.precision"):
        assert check_lstm_precision("lstm", "bf16-mixed", 90100, "cuda") == "float32"
    assert "cuDNN 90100" in caplog.text and "9.13" in caplog.text
    assert check_lstm_precision("lstm", "bf16-mixed", 91300, "cuda") == "bfloat16"
    assert check_lstm_precision("residual_lstm", "bf16-mixed", None, "cuda") == "float32"  # no cuDNN at all
    assert check_lstm_precision("lstm", "bf16-mixed", 90100, "cuda", fallback="float16") == "float16"
    with pytest.raises(ValueError, match=r"cuDNN 90100 .*9\.13"):
        check_lstm_precision("lstm", "bf16-mixed", 90100, "cuda", fallback="error")
    assert check_lstm_precision("minlstm", "bf16-mixed", 90100, "cuda") == "bfloat16"  # no cuDNN RNN in it
    assert check_lstm_precision("lstm", "bf16-mixed", 90100, "cpu") == "bfloat16"
    assert check_lstm_precision("lstm", "32-true", 90100, "cuda") == "float32"
    # the version as torch reports it, mocked
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    assert check_lstm_precision("lstm", "bf16-mixed", cudnn_version(), "cuda") == "float32"
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91300)
    assert check_lstm_precision("lstm", "bf16-mixed", cudnn_version(), "cuda") == "bfloat16"


def test_run_recurrence_in_float32_under_bf16_autocast():
    model = build_model("residual_lstm", vocab_size=50, d_model=16, n_layers=2)
    seen: list[torch.dtype] = []
    for m in model.modules():
        if isinstance(m, torch.nn.LSTM):
            m.register_forward_hook(lambda mod, i, o: seen.append(getattr(o[0], "data", o[0]).dtype))
    src, mask = torch.randint(4, 50, (2, 5)), torch.ones(2, 5, dtype=torch.bool)

    def run() -> set[torch.dtype]:
        seen.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(src, mask, src).float().sum().backward()
        return set(seen)

    try:  # without the wrapper autocast runs the LSTM in bf16, where this CPU's oneDNN has a bf16 LSTM at all
        assert run() == {torch.bfloat16}
    except RuntimeError as err:  # no AVX-512/AMX (e.g. this AMD EPYC): bf16 LSTM does not run; float32 must
        assert "primitive descriptor for the LSTM" in str(err)
    assert run_recurrence_in(model, "float32") == 4
    assert run() == {torch.float32}
    assert run_recurrence_in(model, "float32") == 0  # already wrapped
    model = copy.deepcopy(model)  # the hooks travel with a copy and act on the copy
    for m in model.modules():
        if isinstance(m, torch.nn.LSTM):
            m.register_forward_hook(lambda mod, i, o: seen.append(getattr(o[0], "data", o[0]).dtype))
    assert run() == {torch.float32}
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast is back on after each LSTM: bf16 logits
        assert model(src, mask, src).dtype == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")


# ---------------------------------------------------------------- the time axis
def _record(arch: str, d: int, tokens: int, loss: float, seconds: float, timed: bool) -> RunRecord:
    model = {"arch": arch, "d_model": d, "n_layers": 2, **({"n_heads": 4} if arch == "transformer" else {})}
    params, fpt = 10 * d * d, 6.0 * 10 * d * d
    hw = {"device": "NVIDIA H100 80GB HBM3", "device_type": "h100", "count": 2} if timed else {}
    return RunRecord(
        run=f"{arch}-d{d}-{tokens}", arch=arch, params=params, non_embedding_params=params // 2,
        flops_per_token=fpt, tokens=tokens, compute=fpt * tokens, epochs=0.5, final_valid_loss=loss,
        best_valid_loss=loss, wall_time_s=seconds,
        config={"model": model, "data": {"vocab_size": 100, "batch_tokens": 1024},
                "mean_lengths": {"src": 30, "tgt": 32}, "train": {"accelerator": "cpu", "devices": 1}},
        timing={"train_wall_s": seconds / 4} if timed else {}, hardware=hw,
    )  # fmt: skip


def _records() -> list[RunRecord]:
    out = []
    for i, d in enumerate((32, 64, 96)):
        out.append(_record("lstm", d, 100_000 * (i + 1), 5.0 - 0.1 * i, 10.0 * (i + 1), timed=False))
        out.append(_record("transformer", d, 100_000 * (i + 1), 5.1 - 0.4 * i, 12.0 * (i + 1), timed=False))
        out.append(_record("lstm", d, 100_000, 5.0 - 0.1 * i, 8.0 * (i + 1), timed=True))
    return out


def test_first_behind_on_step_frontiers():
    a = {"x": [1.0, 2.0, 4.0], "loss": [5.0, 4.0, 3.5], "frontier": [0, 1, 2]}
    b = {"x": [1.0, 2.0, 4.0], "loss": [5.5, 3.9, 3.0], "frontier": [0, 1, 2]}
    assert first_behind(a, b) == 2.0  # ahead at 1, behind from 2 on
    assert first_behind(b, a) is None  # b is ahead at the largest budget
    late = {"x": [8.0, 16.0], "loss": [3.0, 2.0], "frontier": [0, 1]}
    assert first_behind(late, b) is None  # no budget both reached: no verdict
    slow, fast = _records()[0], _records()[1]
    section = time_axis_section([slow, fast], "unused", accelerators=(), context_lengths=())[0]
    entry = section["measured_vs_transformer"]["cpu"]["lstm"]  # lstm 10 s, transformer 12 s: no common budget
    assert entry["first_behind"] is None
    assert entry["no_overlap"] == "every transformer run took longer than the longest lstm run"


def test_time_axis_section_on_synthetic_records(tmp_path):
    records = _records()
    measured = measured_curves(records)
    assert set(measured) == {"cpu", "h100"}
    h100 = measured["h100"]["lstm"]
    assert h100["x"] == pytest.approx([8.0 / 4 * 2, 16.0 / 4 * 2, 24.0 / 4 * 2])  # train_wall_s x devices
    assert h100["sources"] == ["timing.train_wall_s"]
    assert measured["cpu"]["lstm"]["sources"] == ["wall_time_s (record without timing)"]
    h100_model = device_model("h100-sxm")
    lstm = records[0]
    own, longer = projected_seconds(lstm, h100_model), projected_seconds(lstm, h100_model, 1024)
    assert longer > own  # same tokens, longer sequences: more dependent steps per token
    assert shape_from_run_config(lstm.config).batch == 1024 // 32
    data, md = time_axis_section(records, tmp_path, accelerators=("h100-sxm",), context_lengths=(None, 1024))
    assert (tmp_path / "time_vs_loss.png").is_file()
    json.dumps(data, allow_nan=True)  # serialisable for fit.json
    cpu = data["measured_vs_transformer"]["cpu"]["lstm"]
    assert cpu["first_behind"] == pytest.approx(24.0)  # the Transformer's frontier is lower from 24 s on
    assert set(data["projected"]["h100-sxm"]) == {"own", "1024"}
    assert "projection" in md and "| cpu | lstm |" in md


def test_time_axis_times_the_lstm_with_the_calibrated_cell_model():
    """A GNMT-sized `residual_lstm` run, projected on NVIDIA's GPU: within 1.3x of NVIDIA's GNMT v2 measurement
    (140,909 source + target tokens/s, 1 x A100 40GB, mixed precision), and >= 1.3x slower than the step without
    its recurrent cells (FLOPs at one efficiency, the max form), which the report used before (1.54x too fast)."""
    from pipeline.cost.structure import flops_per_token, num_params

    cfg = {"d_model": 1024, "n_layers": 4, "vocab_size": 32000}
    fpt, params, tokens = (
        flops_per_token("residual_lstm", cfg, 24, 24),
        num_params("residual_lstm", cfg),
        10**8,
    )
    record = RunRecord(
        run="gnmt-like", arch="residual_lstm", params=params, non_embedding_params=params, flops_per_token=fpt,
        tokens=tokens, compute=fpt * tokens, epochs=1.0, final_valid_loss=3.0, best_valid_loss=3.0,
        wall_time_s=1.0, config={"model": {"arch": "residual_lstm", **cfg}, "data": {"batch_tokens": 128 * 24},
                                 "mean_lengths": {"src": 24, "tgt": 24}},
    )  # fmt: skip
    a100 = device_model("a100-sxm-40gb", "16-mixed")
    seconds = projected_seconds(record, a100)
    assert 1 / 1.3 < 2 * tokens / seconds / 140909 < 1.3  # source + target, as NVIDIA counts
    shape = StepShape(128, 24, 24)
    flat = a100.predict(StepCost(fpt * shape.tokens, step_depth("residual_lstm", cfg, 24, 24), params))
    assert seconds / tokens >= 1.3 * flat / shape.tokens


def test_time_axis_imports_no_torch():
    code = "import sys, pipeline.scaling.analyses.time_axis; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- the GPU check, in its CPU test mode
def test_gpu_check_cpu_quick_mode(tmp_path):
    from benchmarks import gpu_check

    out = tmp_path / "g.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (
        result["device_type"] == "cpu" and result["cuda"] is None and result["accelerator_table_key"] is None
    )
    assert {r["arch"] for r in result["rows"]} == {"lstm", "transformer", "minlstm"}
    assert all(r["mfu"] is None and r["seconds"]["device_wall"]["median"] > 0 for r in result["rows"])
    assert result["projection_check"] == {"skipped": "not a CUDA device"}
    assert result["lstm_recurrence_dtype"] == "float32"
    assert math.isfinite(result["calibration"]["fit_error"]["median_rel_error"])
    assert result["scan_vs_sequential"][0]["speedup"] > 0
    rows = result["rows"][:4]
    model = DeviceModel(**result["calibration"]["model"])
    check = gpu_check.projection_check(rows, model, "self")
    assert check["fit_error"]["n"] == 4 and len(check["points"]) == 4
    assert result["failed_or_skipped"] == []
    assert gpu_check.main(["--device", "cpu", "--quick", "--budget-s", "0", "--out", str(out)]) == 0
    result = json.loads(out.read_text())  # past its time budget it starts no point and says so
    assert result["rows"] == [] and len(result["failed_or_skipped"]) == 6 and result["calibration"] is None


def test_load_calibration_reads_bench_cost_json(tmp_path):
    from pipeline.cost.accelerators import load_calibration

    model = DeviceModel("cpu (1 thread)", 4e10, 1e-5, 0.015, bytes_per_s=1.6e9)
    path = tmp_path / "cost_cpu.json"
    path.write_text(json.dumps({"calibration": {"threads_1": {"model": model.to_dict()}}}))
    assert load_calibration(path) == model
    with pytest.raises(ValueError, match="threads_2"):
        load_calibration(path, key="threads_2")
    with pytest.raises(FileNotFoundError, match="bench_cost"):
        load_calibration(tmp_path / "missing.json")
