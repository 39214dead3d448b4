"""How cuDNN runs an LSTM step on a GPU: one thin GEMM per layer and time step, at a size-dependent efficiency.

cuDNN computes the input projections of a whole sequence as one large GEMM (parallel work, like a Transformer's),
but the recurrent part `h_{t-1} W_hh^T` is one GEMM of shape (batch x 4d x d) per layer and time step, forward and
again (transposed) for the gradient wrt the inputs in backward; the weight gradient is one large GEMM again. A
(batch x 4d x d) GEMM with a batch of 16-128 reads its whole 4d x d weight matrix for few FLOPs (intensity = batch
FLOP per byte in fp16), so it is bound by memory bandwidth at small batch, and by its FLOPs at large batch. Either
way it is thin: with batch <= one tile edge its output is one column of about 4d / tile tiles, too few to fill the
GPU's SMs at small d. So both of its rates grow with width: the weight stream reaches half its wide-cell speed at
`d_half`, the FLOP rate half the peak at `gemm_d_half` (DeepBench's V100 cells run at 6 % of the fp16 peak at d 512
and 55 % at d 4096, batch 128). One "cell" (one layer, one step, one direction of the pass) therefore costs

    cell_s = max(8 B d^2 / peak * (1 + gemm_d_half / w),
                 4 d^2 bytes / (bandwidth * weight_efficiency) * (1 + d_half / d))  +  latency
    w = d * max(1, B / TILE)

A batch above one tile edge adds tile columns, so the FLOP-rate curve reads the width times the columns: an
extrapolation, as every published cell has batch <= 128.

`latency` is the fixed cost of the step's kernels (GEMM launch, the fused pointwise gate kernel). Cells of a chain
run one after another; cuDNN's multi-layer `nn.LSTM` overlaps layer l at step t with layer l+1 at step t-1 (the
"wavefront": Appleyard, Kocisky & Blunsom 2016, arXiv:1604.01946, the network-level optimization of cuDNN 5), which
hides latency but not bandwidth: the chain pays `latency` per wavefront step, the cells pay their throughput term
each. Separate single-layer `nn.LSTM`s (`residual_lstm`, NVIDIA's GNMT) get no wavefront.

The coefficients are fitted on published measurements (`pipeline.cost.gpu_fit`, docs/cost_model.md).
"""

from __future__ import annotations

from dataclasses import dataclass

TILE = 128  # rows of cuBLAS's largest tensor-core tile edge: a batch up to it is one column of output tiles


@dataclass(frozen=True)
class CellModel:
    """Seconds of one recurrent cell of a cuDNN LSTM on one device at one precision."""

    peak_flops_per_s: float  # dense tensor peak at this precision
    memory_bytes_per_s: float  # HBM bandwidth
    bytes_per_weight: float  # 2 in fp16/bf16, 4 in fp32/tf32
    gemm_efficiency: float  # fraction of peak the large weight-gradient GEMM sustains
    weight_efficiency: float  # fraction of bandwidth a wide cell's weight stream reaches
    d_half: float  # width at which a cell's weight stream runs at half its wide-cell speed
    latency_s: float  # per cell on the chain (kernel launches, pointwise gates)
    gemm_d_half: float = 0.0  # width at which a cell's GEMM reaches half the peak FLOP rate

    def cell_gemm_efficiency(self, batch: int, width: int) -> float:
        """Fraction of peak a (batch x 4 width x width) GEMM sustains: w / (w + gemm_d_half), w its width in
        tile columns (`width * max(1, batch / TILE)`)."""
        w = width * max(1.0, batch / TILE)
        return w / (w + self.gemm_d_half)

    def throughput_s(self, batch: int, width: int) -> float:
        """The cell's GEMM time without its latency: compute or weight stream, whichever is slower."""
        compute = cell_flops(batch, width) / (self.peak_flops_per_s * self.cell_gemm_efficiency(batch, width))
        stream = (
            4.0 * width * width * self.bytes_per_weight / (self.memory_bytes_per_s * self.weight_efficiency)
        )
        return max(compute, stream * (1.0 + self.d_half / width))

    def gemm_s(self, flops: float) -> float:
        """The weight-gradient GEMM over the whole sequence, plus one kernel latency (DeepBench's third column)."""
        return flops / (self.peak_flops_per_s * self.gemm_efficiency) + self.latency_s


def cell_flops(batch: int, width: int) -> float:
    """FLOPs of one cell's recurrent GEMM (batch x 4d x d)."""
    return 8.0 * batch * width * width


def cells_and_chain(arch: str, n_layers: int, src_len: int, tgt_len: int) -> tuple[int, int]:
    """(recurrent cells, cells on the critical path) of one training step of an encoder-decoder LSTM: forward plus
    backward wrt inputs, encoder and decoder. `lstm` is one multi-layer nn.LSTM per stack (cuDNN's wavefront:
    S + L - 1 chain steps); `residual_lstm` and `lstm_no_cell_residual` run their layers one after another."""
    cells = 2 * n_layers * (src_len + tgt_len)
    if arch == "lstm":
        return cells, 2 * (src_len + n_layers - 1 + tgt_len + n_layers - 1)
    return cells, cells
