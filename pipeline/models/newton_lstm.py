"""The exact LSTM solved for all time steps at once: quasi-Newton (DEER) iterations, each a parallel scan.

DEER (Lim et al., ICLR 2024) and ParaRNN (Apple, 2025) treat s_t = F(s_{t-1}, x_t) for every t as one system and
solve it by Newton's method. Here s_t = (h_t, c_t) and F is `nn.LSTM`'s cell (gate order i, f, g, o; both biases).
Iteration k evaluates F at the current guess for all t in parallel (one [T*B, d] x [d, 4d] matmul), then solves
the linearised system

    s^{k+1}_t = F(s^k_{t-1}) + A_t (s^{k+1}_{t-1} - s^k_{t-1})

by a parallel scan (`parallel_scan.py`). A_t is the *diagonal* part of the Jacobian dF/ds_{t-1}: per hidden unit
the 2x2 block d(h_j, c_j)/d(h_{j,t-1}, c_{j,t-1}) (quasi-DEER; the full Jacobian is 2d x 2d per step and its scan
would cost O(T d^3)). Any A gives the same fixed point, so the answer is the exact LSTM; A only sets the speed.
Causality bounds the iterations by T: after k scans the first k steps are exact.

Backward: the adjoint lambda_t = g_t + J_{t+1}^T lambda_{t+1} (J the full Jacobian, g the output gradients) is a
linear recurrence backward in time, solved by the same splitting: J^T lambda in parallel (one [T*B, 4d] x [4d, d]
matmul), then a reverse scan with A^T. Parameter gradients follow from lambda like BPTT's (dW_hh one matmul).

Convergence: the residual max|F(s) - s| / (1 + |F(s)|) (forward) and max|g + J^T lambda - lambda| / max|lambda|
(backward) must fall to `tol` within `max_iters` scans; otherwise the solve falls back to the sequential loop of
`recurrent_cell.py` (exact; counted in the stats) or, with on_fail="error", raises `NewtonNotConverged`.
Costs and measured iterations: docs/parallel_lstm.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from pipeline.models.parallel_scan import linear_scan_2x2
from pipeline.models.recurrent_cell import _loops


class NewtonNotConverged(RuntimeError):
    """The iterations hit their cap above the tolerance and the config asked for an error, not a fallback."""


@dataclass
class NewtonSettings:
    max_iters: int = 100  # scans per solve (forward and backward each)
    tol: float = 1e-5
    on_fail: str = "sequential"  # "sequential": exact fallback, counted; "error": raise NewtonNotConverged


@dataclass
class SolveRecord:
    """One layer's last solve: iterations (scans), final residual, whether it fell back to the sequential loop."""

    iters: int = 0
    residual: float = 0.0
    fallback: bool = False
    bwd: SolveRecord | None = field(default=None)


@dataclass
class IterationTotals:
    """Scans summed over every training solve of one NewtonLSTM: the mean iterations `flops_per_token` counts."""

    fwd_iters: int = 0
    fwd_solves: int = 0
    bwd_iters: int = 0
    bwd_solves: int = 0

    def means(self) -> tuple[float, float] | None:
        if not self.fwd_solves or not self.bwd_solves:
            return None
        return self.fwd_iters / self.fwd_solves, self.bwd_iters / self.bwd_solves


# ----------------------------------------------------------------------------------------------- the cell, in bulk
def _cell(xg: torch.Tensor, w_hh: torch.Tensor, h_prev: torch.Tensor, c_prev: torch.Tensor):
    """F for all t at once: xg [T,B,4d] (input projection + both biases), previous states [T,B,d] ->
    activations [T,B,4d] (sigmoid i, f, o; tanh g), c_t, h_t."""
    d = h_prev.size(-1)
    z = torch.addmm(xg.flatten(0, 1), h_prev.flatten(0, 1), w_hh.t()).view_as(xg)
    acts = torch.sigmoid(z)
    acts[..., 2 * d : 3 * d] = torch.tanh(z[..., 2 * d : 3 * d])
    i, f, g, o = acts.chunk(4, dim=-1)
    c = f * c_prev + i * g
    return acts, c, o * torch.tanh(c)


def _diag_jacobian(acts, w_diag, c_prev, c):
    """Per-unit 2x2 blocks (a_hh, a_hc, a_ch, a_cc) of d(h_t, c_t)/d(h_{t-1}, c_{t-1}), diagonal of W_hh only."""
    i, f, g, o = acts.chunk(4, dim=-1)
    tc = torch.tanh(c)
    k = o * (1 - tc * tc)  # dh_t/dc_t
    a_ch = c_prev * f * (1 - f) * w_diag[1] + g * i * (1 - i) * w_diag[0] + i * (1 - g * g) * w_diag[2]
    a_hh = tc * o * (1 - o) * w_diag[3] + k * a_ch
    return a_hh, k * f, a_ch, f


def _w_diag(w_hh: torch.Tensor) -> torch.Tensor:
    """[4, d]: W_hh[q*d + j, j] for each gate q."""
    d = w_hh.size(1)
    return w_hh.view(4, d, d).diagonal(dim1=1, dim2=2)


def _shift_in(first: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """[first, s_0, ..., s_{T-2}]: the previous state of every step."""
    return torch.cat([first[None], s[:-1]])


def _rel(diff: torch.Tensor, scale: torch.Tensor) -> float:
    return float((diff.abs() / (1 + scale.abs())).max())


def newton_forward(xg, w_hh, h0, c0, settings: NewtonSettings):
    """-> (acts, c_prev, c, h) [T,B,*] at the fixed point, and its SolveRecord (converged or not)."""
    w_diag = _w_diag(w_hh)
    h = torch.zeros_like(xg[..., : h0.size(-1)])
    c = torch.zeros_like(h)
    iters = 0
    while True:
        h_prev, c_prev = _shift_in(h0, h), _shift_in(c0, c)
        acts, c_new, h_new = _cell(xg, w_hh, h_prev, c_prev)
        res = max(_rel(h_new - h, h_new), _rel(c_new - c, c_new))
        if res <= settings.tol or iters >= settings.max_iters or not math.isfinite(res):
            return (acts, c_prev, c_new, h_new), SolveRecord(iters, res, fallback=not res <= settings.tol)
        a = _diag_jacobian(acts, w_diag, c_prev, c_new)
        b_h = h_new - (a[0] * h_prev + a[1] * c_prev)
        b_c = c_new - (a[2] * h_prev + a[3] * c_prev)
        b_h[0], b_c[0] = h_new[0], c_new[0]  # step 0 reads the given initial state: exact already
        h, c = linear_scan_2x2(a, (b_h, b_c))
        iters += 1


def _transpose_apply(acts, w_hh, c_prev, c, lam_h, lam_c):
    """J_t^T lambda_t for all t with the full Jacobian -> (to h_{t-1}, to c_{t-1}) and the gate gradients dz_t."""
    d = c.size(-1)
    i, f, g, o = acts.chunk(4, dim=-1)
    tc = torch.tanh(c)
    dc = lam_c + lam_h * o * (1 - tc * tc)
    dz = torch.cat(
        [dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g), lam_h * tc * o * (1 - o)], -1
    )
    to_h = torch.mm(dz.flatten(0, 1), w_hh).view(*dz.shape[:-1], d)
    return to_h, dc * f, dz


def _shift_out(s: torch.Tensor) -> torch.Tensor:
    """[s_1, ..., s_{T-1}, 0]: what step t receives from step t+1."""
    return torch.cat([s[1:], torch.zeros_like(s[:1])])


def adjoint_backward(gh, gc, acts, w_hh, c_prev, c, settings: NewtonSettings):
    """Output grads gh, gc [T,B,d] -> gate grads dz [T,B,4d], dh0, dc0 [B,d] and the SolveRecord."""
    a = _diag_jacobian(acts, _w_diag(w_hh), c_prev, c)
    a_t = tuple(_shift_out(x) for x in (a[0], a[2], a[1], a[3]))  # A_{t+1}^T, indexed by t
    lam_h, lam_c = torch.zeros_like(gh), torch.zeros_like(gc)
    to_h, to_c = torch.zeros_like(gh), torch.zeros_like(gc)
    dz = None
    iters = 0
    while True:
        if iters > 0:
            to_h, to_c, dz = _transpose_apply(acts, w_hh, c_prev, c, lam_h, lam_c)
            new_h, new_c = gh + _shift_out(to_h), gc + _shift_out(to_c)
            scale = max(float(new_h.abs().max()), float(new_c.abs().max()), 1e-30)
            res = max(float((new_h - lam_h).abs().max()), float((new_c - lam_c).abs().max())) / scale
            if res <= settings.tol or iters >= settings.max_iters or not math.isfinite(res):
                return dz, to_h[0], to_c[0], SolveRecord(iters, res, fallback=not res <= settings.tol)
        # lambda^{k+1}_t = A_{t+1}^T lambda^{k+1}_{t+1} + (g_t + (J - A)_{t+1}^T lambda^k_{t+1})
        off_h = _shift_out(to_h) - (a_t[0] * lam_h.roll(-1, 0) + a_t[1] * lam_c.roll(-1, 0))
        off_c = _shift_out(to_c) - (a_t[2] * lam_h.roll(-1, 0) + a_t[3] * lam_c.roll(-1, 0))
        lam_h, lam_c = linear_scan_2x2(a_t, (gh + off_h, gc + off_c), reverse=True)  # type: ignore[arg-type]
        iters += 1


def _fail(what: str, record: SolveRecord, settings: NewtonSettings) -> None:
    if settings.on_fail == "error":
        raise NewtonNotConverged(
            f"newton LSTM {what}: residual {record.residual:.3g} > model.newton_tol={settings.tol:g} after "
            f"model.newton_max_iters={settings.max_iters} iterations; raise the cap or set "
            "model.newton_on_fail=sequential"
        )


class _NewtonRecurrence(torch.autograd.Function):
    """(xg [T,B,4d], W_hh, h0, c0) -> all h_t, c_t [T,B,d]; forward and backward by quasi-Newton scans."""

    @staticmethod
    def forward(ctx, xg, w_hh, h0, c0, settings, record, totals):  # type: ignore[override]
        (acts, c_prev, c, h), rec = newton_forward(xg, w_hh, h0, c0, settings)
        record.iters, record.residual, record.fallback, record.bwd = (
            rec.iters,
            rec.residual,
            rec.fallback,
            None,
        )
        if totals is not None:
            totals.fwd_iters += rec.iters
            totals.fwd_solves += 1
        if rec.fallback:
            _fail("forward", rec, settings)
            hs, cs, acts = _loops("script")[0](xg, w_hh, h0, c0, True)
            h, c, c_prev = hs[1:], cs[1:], cs[:-1]
        ctx.save_for_backward(w_hh, acts, _shift_in(h0, h), c_prev, c)
        ctx.settings, ctx.record, ctx.totals = settings, record, totals
        return h, c

    @staticmethod
    @once_differentiable
    def backward(ctx, dh, dc):  # type: ignore[override]
        w_hh, acts, h_prev, c_prev, c = ctx.saved_tensors
        dh = torch.zeros_like(c) if dh is None else dh.contiguous()
        dc = torch.zeros_like(c) if dc is None else dc.contiguous()
        dz, dh0, dc0, rec = adjoint_backward(dh, dc, acts, w_hh, c_prev, c, ctx.settings)
        ctx.record.bwd = rec
        if ctx.totals is not None:
            ctx.totals.bwd_iters += rec.iters
            ctx.totals.bwd_solves += 1
        if rec.fallback:
            _fail("backward", rec, ctx.settings)
            cs = torch.cat([c_prev[:1], c])
            dz, dh0, dc0 = _loops("script")[1](dh, dc, acts, cs, w_hh, True)
        dw_hh = dz.flatten(0, 1).t().mm(h_prev.flatten(0, 1))
        return dz, dw_hh, dh0, dc0, None, None, None


def newton_recurrence(xg, w_hh, h0, c0, settings: NewtonSettings, record: SolveRecord, totals=None):
    """Differentiable entry point; runs in at least float32 with autocast off (the residuals need the precision)."""
    dtype = torch.promote_types(xg.dtype, torch.float32)
    with torch.autocast(xg.device.type, enabled=False):
        args = (t.to(dtype) for t in (xg, w_hh, h0, c0))
        return _NewtonRecurrence.apply(*args, settings, record, totals)


class NewtonLSTM(nn.LSTM):
    """`nn.LSTM` (same parameters, names, init and state dict) whose forward solves the recurrence by Newton scans.

    Accepts what the LSTM models pass: batch-first tensors or a PackedSequence, optional (h0, c0). Dropout between
    layers as nn.LSTM's. `records` holds each layer's last SolveRecord (forward and backward) for `step_stats`.
    """

    def __init__(self, *args, settings: NewtonSettings | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.bidirectional or self.proj_size or not self.bias:
            raise ValueError("NewtonLSTM supports unidirectional LSTMs with biases and no projection only")
        self.settings = settings or NewtonSettings()
        self.records = [SolveRecord() for _ in range(self.num_layers)]
        self.totals = IterationTotals()

    # torch.compile (train.compile) runs the solver eager and compiles around it: its iteration counts depend on the
    # data (convergence checks read tensors), and tracing through them took 254 s for one d_model=8 model on CPU.
    @torch.compiler.disable
    def forward(self, input, hx=None):  # type: ignore[override]
        packed = isinstance(input, PackedSequence)
        if packed:
            x, lengths = pad_packed_sequence(input, batch_first=True)
        else:
            x, lengths = (input if self.batch_first else input.transpose(0, 1)), None
        x = x.transpose(0, 1)  # time-major inside
        B = x.size(1)
        if hx is None:
            zeros = x.new_zeros(self.num_layers, B, self.hidden_size)
            hx = (zeros, zeros)
        rows = torch.arange(B, device=x.device)
        last = x.size(0) - 1 if lengths is None else lengths.to(x.device) - 1
        h_n, c_n = [], []
        for k in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = (
                getattr(self, f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            xg = F.linear(x, w_ih, b_ih + b_hh)  # every step's input projection in one matmul
            totals = self.totals if torch.is_grad_enabled() else None  # training solves only
            hs, cs = newton_recurrence(xg, w_hh, hx[0][k], hx[1][k], self.settings, self.records[k], totals)
            h_n.append(hs[last, rows])
            c_n.append(cs[last, rows])
            x = F.dropout(hs, self.dropout, self.training) if k < self.num_layers - 1 else hs
        state = (torch.stack(h_n), torch.stack(c_n))
        out = x.transpose(0, 1)
        if packed:
            return pack_padded_sequence(out, lengths, batch_first=True, enforce_sorted=False), state
        return (out if self.batch_first else out.transpose(0, 1)), state


def newton_flops_per_token(d_in: int, d: int, iters: tuple[float, float]) -> float:
    """Training matmul FLOPs per token of one layer (house convention, docs/flops.md) for (forward, backward) scans.

    Input projection as the sequential LSTM (8 d_in d forward, 16 backward); the recurrent matmul runs once per
    evaluation: forward iters + 1, backward iters (J^T lambda) + 1 (dW_hh). The sequential LSTM's is 3 x 8 d^2.
    The scans' elementwise work (~60 FLOPs per unit and token per iteration) is not counted, like other
    elementwise math.
    """
    return 24.0 * d_in * d + 8.0 * d * d * (iters[0] + iters[1] + 2)


def measured_iters(model: nn.Module) -> tuple[float, float] | None:
    """Mean (forward, backward) scans per solve over this process's training solves, None before the first."""
    totals = IterationTotals()
    for m in model.modules():
        if isinstance(m, NewtonLSTM):
            for k in ("fwd_iters", "fwd_solves", "bwd_iters", "bwd_solves"):
                setattr(totals, k, getattr(totals, k) + getattr(m.totals, k))
    return totals.means()


def newton_step_stats(model: nn.Module) -> dict[str, float]:
    """Iterations, residuals and fallbacks of the last forward (and its backward, once run) over all NewtonLSTMs."""
    recs = [r for m in model.modules() if isinstance(m, NewtonLSTM) for r in m.records]
    if not recs:
        return {}
    bwd = [r.bwd for r in recs if r.bwd is not None]
    stats = {
        "newton/iters": sum(r.iters for r in recs) / len(recs),
        "newton/iters_max": float(max(r.iters for r in recs)),
        "newton/residual": max(r.residual for r in recs),
        "newton/fallbacks": float(sum(r.fallback for r in recs) + sum(r.fallback for r in bwd)),
    }
    if bwd:
        stats["newton/bwd_iters"] = sum(r.iters for r in bwd) / len(bwd)
        stats["newton/bwd_residual"] = max(r.residual for r in bwd)
    return stats
