"""One inference interface over TensorRT engines, ONNX Runtime and PyTorch checkpoints.

``load_backend(path)`` picks the implementation from the artifact and what is installed:

- ``*.engine`` / ``*.plan`` -> TensorRT (needs ``tensorrt`` + ``pycuda``; the engine manifest must match this
  machine, else a clear "rebuild with ..." error);
- ``*.onnx`` -> ONNX Runtime (CPU, or CUDA with ``device="cuda"``); with ``kind="auto"`` a matching engine
  next to it (``<stem>.<precision>.engine``) is preferred when TensorRT is importable and ``device`` is CUDA;
- ``*.safetensors`` -> PyTorch reference.

``kind`` overrides the choice (``"tensorrt"``, ``"onnxruntime"``, ``"torch"``).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

from edge_geoloc.runtime.backends.base import (
    Backend,
    BackendClosedError,
    BackendInputError,
    LatencyRecorder,
    preprocess_image,
)

logger = logging.getLogger(__name__)

BACKEND_KINDS = ("auto", "tensorrt", "onnxruntime", "torch")
_SUFFIX_KIND = {".engine": "tensorrt", ".plan": "tensorrt", ".onnx": "onnxruntime", ".safetensors": "torch"}

__all__ = ["BACKEND_KINDS", "Backend", "BackendClosedError", "BackendInputError",
           "LatencyRecorder", "available_backends", "load_backend",
           "preprocess_image", "resolve_device"]


def available_backends() -> list[str]:
    """Backend kinds whose packages are importable here (TensorRT needs pycuda as well)."""
    return [k for k, mods in (("tensorrt", ("tensorrt", "pycuda")), ("onnxruntime", ("onnxruntime",)),
                              ("torch", ("torch",))) if all(_importable(m) for m in mods)]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module object without a spec
        return module in sys.modules


def load_backend(path: str | Path, kind: str = "auto", device: str = "cpu", **options) -> Backend:
    """Load ``path`` (ONNX + sidecar, engine + manifest, or checkpoint) into a :class:`Backend`."""
    path = Path(path)
    if kind not in BACKEND_KINDS:
        raise ValueError(f"kind must be one of {BACKEND_KINDS}, got {kind!r}")
    device = resolve_device(device)
    if kind == "auto":
        kind, path = _auto_kind(path, device)
    logger.info("loading %s with the %s backend on %s", path, kind, device)
    if kind == "tensorrt":
        from edge_geoloc.runtime.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, device=device, **options)
    if kind == "onnxruntime":
        from edge_geoloc.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, device=device, **options)
    from edge_geoloc.runtime.backends.torch_backend import TorchBackend

    return TorchBackend.from_checkpoint(path, device=device, **options)


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a CUDA device is usable (torch or onnxruntime-gpu), else ``"cpu"``."""
    if device != "auto":
        if not (device == "cpu" or device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
        return device
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda"
    except ImportError:
        pass
    try:
        import onnxruntime

        return "cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu"
    except ImportError:
        return "cpu"


def _auto_kind(path: Path, device: str) -> tuple[str, Path]:
    kind = _SUFFIX_KIND.get(path.suffix)
    if kind is None:
        raise ValueError(f"cannot tell the backend for {path.name}: expected one of {sorted(_SUFFIX_KIND)} "
                         "(or pass kind='tensorrt'|'onnxruntime'|'torch')")
    if kind == "onnxruntime" and device.startswith("cuda") and "tensorrt" in available_backends():
        engines = sorted(path.parent.glob(f"{path.stem}.*.engine"))
        if engines:
            logger.info("TensorRT is available and %s exists; using it (kind='onnxruntime' to override)",
                        engines[0].name)
            return "tensorrt", engines[0]
    return kind, path
