"""ONNX Runtime static QDQ int8 quantisation with calibration frames, gated in task terms.

``quant_pre_process`` (shape inference + graph cleanup), then ``quantize_static`` in QDQ format with MinMax
(or entropy / percentile) calibration over the frames, per-channel int8 weights. Dynamic quantisation is not
offered: on a CPU its ConvInteger kernels are several times slower than fp32 (docs/export.md).

The int8 model is compared with the fp32 ONNX model (itself gated against PyTorch) on held-out synthetic
frames: top-1 tile agreement (reference top-1 within the int8 top-k) or heat-map argmax within a few pixels.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from edge_geoloc.export.config import QuantizeConfig
from edge_geoloc.export.parity import ParityError
from edge_geoloc.export.sidecar import read_sidecar, sidecar_path, write_sidecar

from edge_geoloc.artifacts import sha256_file
from edge_geoloc.config import to_dict

logger = logging.getLogger(__name__)


def int8_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.int8.onnx``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.int8.onnx")


class _FeedReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over a list of feed dicts."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._index >= len(self._feeds):
            return None
        self._index += 1
        return self._feeds[self._index - 1]

    def rewind(self) -> None:
        self._index = 0


def _excluded_nodes(onnx_path: Path, op_types: Sequence[str]) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type in op_types and n.name]


def _quantize_static(src: Path, dst: Path, feeds: Sequence[dict[str, np.ndarray]], cfg: QuantizeConfig) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[cfg.method]
    symmetric = cfg.target == "tensorrt"
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), _FeedReader(feeds), quant_format=QuantFormat.QDQ,
                        per_channel=cfg.per_channel, calibrate_method=method, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                        nodes_to_exclude=_excluded_nodes(pre, cfg.exclude_op_types),
                        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True})


def quantize_onnx(onnx_path: str | Path, calibration: Sequence[dict[str, np.ndarray]], cfg: QuantizeConfig,
                  out_path: str | Path | None = None, calibration_id: str = "",
                  holdout: Sequence[dict[str, np.ndarray]] | None = None) -> tuple[Path, dict[str, Any]]:
    """Quantise ``onnx_path`` (fp32, with sidecar) to static QDQ int8; returns (path, sidecar).

    Raises :class:`ParityError` (and removes the int8 file) when the task-level gate fails.
    """
    from edge_geoloc.export.onnx_export import parity_report

    from edge_geoloc.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    src = Path(onnx_path)
    fp32_sidecar = read_sidecar(src)
    if not calibration:
        raise ValueError("no calibration frames: pass a folder of images (or 'synthetic')")
    dst = Path(out_path) if out_path else int8_path(src)
    _quantize_static(src, dst, calibration, cfg)
    sidecar = {k: v for k, v in fp32_sidecar.items() if k not in ("parity", "tensorrt_audit")}
    sidecar["precision"] = "int8-qdq"
    sidecar["sha256"] = {**fp32_sidecar["sha256"], "fp32_onnx": sha256_file(src)}
    sidecar["quantization"] = {**to_dict(cfg), "calibration_frames": len(calibration),
                               "calibration_id": calibration_id, "fp32_model": src.name}
    write_sidecar(dst, sidecar)
    report = _gate(OnnxRuntimeBackend(src, num_threads=2), OnnxRuntimeBackend(dst, num_threads=2), cfg, holdout,
                   parity_report)
    if not report["passed"]:
        dst.unlink(missing_ok=True)
        sidecar_path(dst).unlink(missing_ok=True)
        raise ParityError(f"int8 model of {src.name} failed the task-level gate: {'; '.join(report['failures'])}; "
                          "try more or more representative calibration frames, --method entropy, or keep fp32",
                          report)
    sidecar = read_sidecar(dst)
    sidecar["parity"] = report
    write_sidecar(dst, sidecar)
    logger.info("int8 QDQ model %s (%s target): task agreement %.2f", dst.name, cfg.target,
                report["task"]["agreement"])
    return dst, read_sidecar(dst)


def _gate(reference: Any, candidate: Any, cfg: QuantizeConfig, holdout: Any, parity_report: Any) -> dict[str, Any]:
    if holdout is None:
        return parity_report(reference, candidate, cfg.parity)
    from edge_geoloc.export.parity import run_parity

    return run_parity(reference, candidate, list(holdout), cfg.parity)
