"""Published GPU training measurements the cost model is calibrated and checked on (every figure read in its source).

Two kinds, each with its source, GPU, precision, batch and counting convention:
- `StepFigure`: training throughput of a whole model from NVIDIA's DeepLearningExamples README tables (GNMT v2 and
  the Transformer, PyTorch). GNMT counts **source + target** tokens per second (`seq2seq/train/trainer.py`:
  `tot_num_toks = num_toks['tgt'] + num_toks['src']`, summed over GPUs); the Transformer counts **target** tokens
  (`fairseq/data/data_utils.py` `collate`: `ntokens = sum(len(s['target']))`, the `tokens/s` of `ddp_trainer.py`).
- `KernelFigure`: Baidu DeepBench's cuDNN LSTM training kernels on a V100 (one layer, `CUDNN_SKIP_INPUT`: the
  recurrent GEMM only, input size = hidden size), milliseconds per forward, backward-data and backward-weights
  pass over `timesteps` steps (`code/nvidia/rnn_bench.cu`), cuDNN 7.6.2, CUDA 10.1, DGX-1.

`split` marks which figures the calibration is fitted on ("fit") and which only check it ("held-out"); the 4- to
16-GPU rows check the multi-GPU projection, whose one all-reduce parameter is fitted on `MULTI_GPU_FIT` alone.
Mean sentence lengths come from the one published figure that gives them (`MEAN_PAIR_TOKENS`).
"""

from __future__ import annotations

from dataclasses import dataclass

DLE = "https://github.com/NVIDIA/DeepLearningExamples/blob/729963dd47e7c8bd462ad10bfac7a7b0b604e6dd/"
GNMT_README = DLE + "PyTorch/Translation/GNMT/README.md"
TRANSFORMER_README = DLE + "PyTorch/Translation/Transformer/README.md"
DEEPBENCH_V100 = (
    "https://github.com/baidu-research/DeepBench/blob/da81ba7820739e2e506dc27f382d15be5479f98f/"
    "results/train/DeepBench_NV_V100.xlsx"
)
GNMT_TOKENS = (
    "source + target tokens/s, summed over GPUs (seq2seq/train/trainer.py: tot_num_toks = tgt + src)"
)
TRANSFORMER_TOKENS = "target tokens/s, summed over GPUs (fairseq collate: ntokens = target tokens incl. EOS)"

# TensorFlow GNMT README (same WMT16 en-de BPE-32k data and script): "training time for epoch 1: 29.37 mins
# (2918.36 sent/sec, 139640.48 tokens/sec)" -> 47.85 source + target tokens per sentence pair.
MEAN_PAIR_TOKENS = 139640.48 / 2918.36
MEAN_PAIR_SOURCE = DLE + "TensorFlow/Translation/GNMT/README.md (training log example)"

GNMT_V2 = {"arch": "residual_lstm", "d_model": 1024, "n_layers": 4, "vocab_size": 32000}
TRANSFORMER_BIG = {"arch": "transformer", "d_model": 1024, "n_layers": 6, "n_heads": 16, "d_ff": 4096,
                   "vocab_size": 33708}  # fmt: skip
# the project's nearest architectures at the sources' sizes (READMEs: GNMT "4-layer LSTM, hidden size 1024",
# "shared vocabulary of 32,000 tokens"; Transformer transformer_wmt_en_de_big_t2t, vocabulary 33708). GNMT's
# bidirectional first encoder layer and its attention feeding every decoder layer are not in `residual_lstm`.


@dataclass(frozen=True)
class StepFigure:
    """One row of a published training-throughput table."""

    model: str  # "gnmt_v2" | "transformer_big"
    accelerator: str  # pipeline.cost.accelerators key
    machine: str  # as the source names it
    gpus: int
    precision: str  # trainer-style precision string
    batch_per_gpu: int  # sentences (GNMT) or max tokens (Transformer)
    tokens_per_s: float
    source: str
    split: str = "held-out"

    @property
    def convention(self) -> str:
        return GNMT_TOKENS if self.model == "gnmt_v2" else TRANSFORMER_TOKENS

    @property
    def key(self) -> str:
        return f"{self.model} {self.gpus}x{self.accelerator} {self.precision} ({self.machine.split(' (')[0]})"


@dataclass(frozen=True)
class KernelFigure:
    """One DeepBench cuDNN LSTM training row: milliseconds per pass over `timesteps` steps."""

    hidden: int
    batch: int
    timesteps: int
    fwd_ms: float
    bwd_inputs_ms: float
    bwd_weights_ms: float
    precision: str  # "16-mixed" (sheet "Results - FP16 ip, Mixed math") or "32-true" (sheet "Results FP32")
    split: str = "held-out"
    accelerator: str = "v100-sxm2"
    source: str = DEEPBENCH_V100
    convention: str = "ms per training pass of one LSTM layer (fwd + bwd wrt inputs + bwd wrt weights)"

    @property
    def total_ms(self) -> float:
        return self.fwd_ms + self.bwd_inputs_ms + self.bwd_weights_ms

    @property
    def key(self) -> str:
        return f"deepbench lstm d{self.hidden} B{self.batch} T{self.timesteps} {self.precision}"


def _step(model: str, acc: str, machine: str, precision: str, batch: int, source: str,
          rows: dict[int, float], fit_gpus: tuple[int, ...] = ()) -> list[StepFigure]:  # fmt: skip
    return [StepFigure(model, acc, machine, n, precision, batch, v, source, "fit" if n in fit_gpus else "held-out")
            for n, v in rows.items()]  # fmt: skip


DGXA100 = "DGX A100 (8x A100 40GB), pytorch-20.06-py3"
DGX1 = "DGX-1 (8x V100 16GB), pytorch-20.06-py3"
DGX2H = "DGX-2H (16x V100 32GB), pytorch-20.06-py3"
STEP_FIGURES: list[StepFigure] = [
    # GNMT v2, README "Training throughput results", batch 128 sentences per GPU
    *_step(
        "gnmt_v2",
        "a100-sxm-40gb",
        DGXA100,
        "tf32",
        128,
        GNMT_README,
        {1: 83214, 4: 278576, 8: 519952},
        fit_gpus=(1,),
    ),  # fmt: skip
    *_step(
        "gnmt_v2",
        "a100-sxm-40gb",
        DGXA100,
        "16-mixed",
        128,
        GNMT_README,
        {1: 140909, 4: 463144, 8: 822024},
        fit_gpus=(1,),
    ),  # fmt: skip
    *_step("gnmt_v2", "v100-sxm2", DGX1, "32-true", 128, GNMT_README, {1: 21860, 4: 80224, 8: 154168}),
    *_step("gnmt_v2", "v100-sxm2", DGX1, "16-mixed", 128, GNMT_README, {1: 76438, 4: 249168, 8: 447832}),
    *_step(
        "gnmt_v2",
        "v100-sxm2",
        DGX2H,
        "32-true",
        128,
        GNMT_README,
        {1: 25583, 4: 91400, 8: 176616, 16: 351792},
    ),  # fmt: skip
    *_step(
        "gnmt_v2",
        "v100-sxm2",
        DGX2H,
        "16-mixed",
        128,
        GNMT_README,
        {1: 87829, 4: 290640, 8: 522008, 16: 1010880},
    ),  # fmt: skip
    # Transformer (big, t2t), README "Training performance results", pytorch-22.06-py3; batch = --max-tokens
    *_step(
        "transformer_big",
        "a100-sxm-40gb",
        "DGX A100 (8x A100 40GB), pytorch-22.06-py3",
        "tf32",
        10240,
        TRANSFORMER_README,
        {1: 51057, 4: 179245, 8: 347936},
        fit_gpus=(1,),
    ),  # fmt: skip
    *_step(
        "transformer_big",
        "a100-sxm-40gb",
        "DGX A100 (8x A100 40GB), pytorch-22.06-py3",
        "16-mixed",
        10240,
        TRANSFORMER_README,
        {1: 82059, 4: 286081, 8: 551599},
        fit_gpus=(1,),
    ),  # fmt: skip
    *_step(
        "transformer_big",
        "v100-sxm2",
        "DGX-1 (8x V100 16GB), pytorch-22.06-py3",
        "32-true",
        2560,
        TRANSFORMER_README,
        {1: 8742, 4: 30204, 8: 59316},
        fit_gpus=(1,),
    ),  # fmt: skip
    *_step(
        "transformer_big",
        "v100-sxm2",
        "DGX-1 (8x V100 16GB), pytorch-22.06-py3",
        "16-mixed",
        5120,
        TRANSFORMER_README,
        {1: 32942, 4: 109726, 8: 214656},
    ),  # fmt: skip
    *_step(
        "transformer_big",
        "v100-sxm2",
        "DGX-2 (16x V100 32GB), pytorch-22.06-py3",
        "32-true",
        5120,
        TRANSFORMER_README,
        {1: 9827, 4: 35216, 8: 68929, 16: 136253},
    ),  # fmt: skip
    *_step(
        "transformer_big",
        "v100-sxm2",
        "DGX-2 (16x V100 32GB), pytorch-22.06-py3",
        "16-mixed",
        10240,
        TRANSFORMER_README,
        {1: 39911, 4: 137703, 8: 267815, 16: 517227},
    ),  # fmt: skip
]
# the one multi-GPU row the all-reduce bandwidth is fitted on; every other multi-GPU row is held out
MULTI_GPU_FIT = "gnmt_v2 4xa100-sxm-40gb 16-mixed (DGX A100)"

_MT = "16-mixed"
# DeepBench V100, "Recurrent Layers - LSTM": (hidden, N, timesteps, fwd ms, bwd inputs ms, bwd weights ms)
_MIXED = [
    (512, 16, 25, 0.441, 0.891, 0.079), (512, 32, 25, 0.804, 0.954, 0.070), (512, 64, 25, 0.790, 1.051, 0.115),
    (512, 128, 25, 0.858, 1.119, 0.221), (1024, 16, 25, 1.235, 1.429, 0.151), (1024, 32, 25, 1.279, 1.484, 0.227),
    (1024, 64, 25, 1.391, 1.567, 0.341), (1024, 128, 25, 1.627, 1.700, 0.516),
    (2048, 16, 25, 2.209, 2.151, 0.415), (2048, 32, 25, 2.198, 2.317, 0.562), (2048, 64, 25, 2.302, 2.475, 0.862),
    (2048, 128, 25, 2.644, 2.847, 1.409), (4096, 16, 25, 5.580, 5.038, 1.203), (4096, 32, 25, 5.742, 5.142, 1.671),
    (4096, 64, 25, 6.885, 5.331, 2.665), (4096, 128, 25, 6.643, 5.923, 4.597), (1536, 8, 50, 3.647, 3.249, 0.299),
    (1536, 16, 50, 3.679, 3.444, 0.402), (1536, 32, 50, 3.878, 3.595, 0.576), (256, 16, 150, 4.072, 5.011, 0.082),
    (256, 32, 150, 4.177, 4.703, 0.133), (256, 64, 150, 4.450, 5.429, 0.241),
]  # fmt: skip
_FP32 = [
    (512, 16, 25, 1.095, 0.937, 0.165), (512, 32, 25, 1.144, 1.014, 0.271), (512, 64, 25, 1.341, 1.257, 0.436),
    (512, 128, 25, 1.559, 1.594, 0.703), (1024, 16, 25, 1.923, 1.657, 0.445), (1024, 32, 25, 1.978, 1.746, 0.698),
    (1024, 64, 25, 2.205, 2.044, 1.158), (1024, 128, 25, 3.249, 3.017, 2.107),
    (2048, 16, 25, 3.609, 3.137, 1.254), (2048, 32, 25, 3.684, 3.312, 2.167), (2048, 64, 25, 5.570, 4.871, 4.100),
    (2048, 128, 25, 9.294, 8.450, 7.847), (4096, 16, 25, 10.009, 9.144, 4.326), (4096, 32, 25, 10.512, 9.550, 7.692),
    (4096, 64, 25, 16.598, 15.345, 14.648), (4096, 128, 25, 31.169, 29.969, 28.487),
    (1536, 8, 50, 5.097, 4.571, 0.831), (1536, 16, 50, 5.372, 4.640, 1.327), (1536, 32, 50, 5.574, 4.815, 2.420),
    (256, 16, 150, 4.542, 5.073, 0.221), (256, 32, 150, 4.899, 5.476, 0.404), (256, 64, 150, 6.700, 5.802, 0.605),
]  # fmt: skip
# fitted on: the machine-translation sizes (T=25, d <= 2048) in both precisions; the language-model sizes (d 4096,
# d 1536 at T=50, d 256 at T=150) are held out
KERNEL_FIGURES: list[KernelFigure] = [
    *(KernelFigure(*r, precision=p, split="fit" if r[2] == 25 and r[0] <= 2048 else "held-out")
      for p, rows in ((_MT, _MIXED), ("32-true", _FP32)) for r in rows),
]  # fmt: skip


def fit_subset() -> tuple[list[StepFigure], list[KernelFigure]]:
    """The figures the calibration is fitted on (single-GPU step rows and kernel rows marked "fit")."""
    return [f for f in STEP_FIGURES if f.split == "fit"], [k for k in KERNEL_FIGURES if k.split == "fit"]
