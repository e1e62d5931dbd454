"""Frozen configs of the export step: ONNX export, parity gate, ORT int8 quantisation, TensorRT engine build."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class ParityConfig:
    """Tolerances of the ONNX-vs-PyTorch gate.

    Element test (Polygraphy's rule, atol scaled by the output's range when that exceeds 1): an element
    fails only if ``|a - b| > atol * max(1, max|b|)`` **and** ``|a - b| > rtol * |b|``.
    Task test: the fraction of samples whose top-1 tile (retrieval: the reference's top-1 within the
    candidate's ``top_k``) or heat-map argmax (localizer: within ``argmax_radius_px``) agrees must reach
    ``min_task_agreement``. With ``excuse_ties`` (fp32), a disagreement the reference itself calls a tie
    (score gap below the measured numerical error) is not counted; the int8 gate counts every flip and
    allows ``top_k`` / ``argmax_radius_px`` slack instead.
    """

    atol: float = 1e-3
    rtol: float = 1e-3
    check_elements: bool = True
    random_samples: int = 2
    real_samples: int = 6
    min_task_agreement: float = 1.0
    top_k: int = 1
    argmax_radius_px: float = 0.0
    excuse_ties: bool = True
    seed: int = 0
    matcher_block_hw: tuple[int, int] = (256, 192)

    def __post_init__(self) -> None:
        if self.real_samples < 3:
            raise ValueError(f"real_samples must be >= 3 (top-1 agreement needs a gallery), got {self.real_samples}")
        if len(self.matcher_block_hw) != 2 or min(self.matcher_block_hw) < 1:
            raise ValueError(f"matcher_block_hw must be two positive ints (H, W), got {self.matcher_block_hw}")


INT8_PARITY = ParityConfig(check_elements=False, real_samples=12, min_task_agreement=0.75, top_k=3,
                           argmax_radius_px=2.0, excuse_ties=False)


@dataclass(frozen=True)
class ExportConfig:
    """``edge-geoloc export``: opset, static or dynamic batch, which outputs, simplification, parity gate."""

    opset: int = 17
    dynamic_batch: bool = False
    finest_only: bool = False
    view: Literal["drone", "satellite"] = "drone"
    simplify: bool = True
    check_tensorrt: bool = True
    parity: ParityConfig = field(default_factory=ParityConfig)

    def __post_init__(self) -> None:
        if self.opset < 17:
            raise ValueError(f"opset must be 17 or newer (the exporter is tested at 17; JetPack 6's TensorRT 10.3 "
                             f"parses up to 20), got {self.opset}")


@dataclass(frozen=True)
class QuantizeConfig:
    """ONNX Runtime static QDQ int8 (never dynamic: ConvInteger is slower than fp32 on CPU).

    ``target="onnxruntime"``: uint8 activations / int8 per-channel weights (fast on x86 CPUs).
    ``target="tensorrt"``: symmetric int8 activations and weights (zero points 0, what TensorRT's Q/DQ
    parser requires), the input of a strongly typed TensorRT 10/11 build.
    """

    target: Literal["onnxruntime", "tensorrt"] = "onnxruntime"
    calibration_images: int = 32
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: bool = True
    exclude_op_types: tuple[str, ...] = ("Softmax", "Sigmoid")
    parity: ParityConfig = field(default_factory=lambda: INT8_PARITY)


@dataclass(frozen=True)
class EngineConfig:
    """``edge-geoloc build-engine``: precision, shapes, memory and caches of a TensorRT build.

    INT8 calibration (TensorRT 10) feeds batches of ``opt_batch`` images: the calibration profile is the
    optimisation profile, whose opt shape is what TensorRT reads from each calibration buffer.
    ``allow_tf32``: fp32 engines clear TensorRT's default-on TF32 flag (10-bit mantissa matmuls/convs on
    Ampere+), so they match ONNX Runtime to ~1e-5; set it for speed when that parity is not needed.
    ``strongly_typed_qdq``: a Q/DQ ONNX on TensorRT 10 is built weakly typed with INT8 + FP16, so layers outside
    the Q/DQ pairs may run in FP16; set it to keep every such layer in the ONNX's fp32.
    ``min_hw`` / ``opt_hw`` / ``max_hw``: the profile of an input whose height and width are dynamic (the map
    matcher): ``opt_hw`` defaults to the size its sidecar records (the camera frame, the per-frame call), ``max_hw``
    bounds the map blocks the engine accepts.
    """

    precision: Literal["fp32", "fp16", "int8", "best"] = "fp16"
    max_batch: int = 1
    opt_batch: int = 1
    workspace_mb: int = 1024
    optimization_level: int = 3
    timing_cache: Path | None = None
    calibration_dir: Path | None = None
    calibration_images: int = 256
    allow_tf32: bool = False
    strongly_typed_qdq: bool = False
    version_compatible: bool = False
    dla_core: int = -1
    force: bool = False
    min_hw: tuple[int, int] = (32, 32)
    opt_hw: tuple[int, int] | None = None
    max_hw: tuple[int, int] = (1024, 1024)

    def __post_init__(self) -> None:
        sizes = [self.min_hw, self.max_hw] + ([self.opt_hw] if self.opt_hw is not None else [])
        if any(len(hw) != 2 or min(hw) < 1 for hw in sizes):
            raise ValueError(f"min_hw, opt_hw and max_hw must be two positive ints (H, W), got {self.min_hw}, "
                             f"{self.opt_hw}, {self.max_hw}")
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ValueError(f"need 1 <= opt_batch <= max_batch, got opt_batch={self.opt_batch}, "
                             f"max_batch={self.max_batch}")
        if not 0 <= self.optimization_level <= 5:
            raise ValueError(f"optimization_level must be 0..5, got {self.optimization_level}")
        if self.workspace_mb <= 0:
            raise ValueError(f"workspace_mb must be positive, got {self.workspace_mb}")
