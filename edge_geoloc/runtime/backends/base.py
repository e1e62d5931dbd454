"""The backend interface: sidecar-driven preprocessing, checked inputs, warm-up and latency statistics.

Every backend (TensorRT, ONNX Runtime, PyTorch) takes ``{input_name: (B, 3, H, W) float32}`` and returns
``{output_name: array}`` with the names of the sidecar; only ``_run`` differs between them.
"""

from __future__ import annotations

import abc
import collections
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from edge_geoloc.export.sidecar import (
    InputPreprocessing,
    TensorSpec,
    describe_io,
    input_preprocessing,
    input_shape,
    tensor_specs,
)

logger = logging.getLogger(__name__)

_CV2_INTERPOLATION = {"bilinear": 1, "nearest": 0, "bicubic": 2, "area": 3}  # cv2.INTER_* values


class BackendInputError(ValueError):
    """The arrays given to ``Backend.run`` do not fit the model's inputs."""


class BackendClosedError(RuntimeError):
    """``run`` was called after ``close``."""


def preprocess_image(image_rgb_uint8: np.ndarray, prep: InputPreprocessing) -> np.ndarray:
    """``(H, W, 3) uint8 RGB`` image -> ``(1, 3, h, w) float32``: resize to ``size_hw``, then
    :func:`normalise_image`."""
    import cv2

    image = _checked_image(image_rgb_uint8)
    h, w = prep.size_hw
    if image.shape[:2] != (h, w):
        image = cv2.resize(image, (w, h), interpolation=_CV2_INTERPOLATION[prep.interpolation])
    return normalise_image(image, prep)


def normalise_image(image_rgb_uint8: np.ndarray, prep: InputPreprocessing) -> np.ndarray:
    """``(H, W, 3) uint8 RGB`` image -> ``(1, 3, H, W) float32`` at its own size: colour order, scale, mean/std
    (for inputs of dynamic size, such as a map matcher's, whose pixels are already at the model's resolution)."""
    image = _checked_image(image_rgb_uint8)
    if prep.color_order == "BGR":
        image = image[..., ::-1]
    x = image.astype(np.float32) * np.float32(prep.scale)
    x = (x - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])  # (1, 3, h, w)


def _checked_image(image_rgb_uint8: np.ndarray) -> np.ndarray:
    image = np.asarray(image_rgb_uint8)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise BackendInputError(
            f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}; convert with "
            "np.asarray(img, dtype=np.uint8) (and cv2.cvtColor(img, cv2.COLOR_BGR2RGB) for OpenCV images)"
        )
    return image


class LatencyRecorder:
    """Wall-clock durations of the last ``capacity`` calls, summarised in milliseconds."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._ms: collections.deque[float] = collections.deque(maxlen=capacity)

    def add(self, seconds: float) -> None:
        self._ms.append(seconds * 1e3)

    def reset(self) -> None:
        self._ms.clear()

    def stats(self) -> dict[str, float]:
        """``n``, ``mean_ms``, ``p50_ms``, ``p90_ms``, ``max_ms`` (zeros before the first call)."""
        if not self._ms:
            return {"n": 0, "mean_ms": 0.0, "p50_ms": 0.0, "p90_ms": 0.0, "max_ms": 0.0}
        ms = np.asarray(self._ms, dtype=np.float64)
        return {"n": int(ms.size), "mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
                "p90_ms": float(np.percentile(ms, 90)), "max_ms": float(ms.max())}


class Backend(abc.ABC):
    """One loaded model. ``sidecar`` describes it; ``run`` checks the inputs and times the call.

    ``run`` is serialised by a lock: one backend may be shared by threads (the ROS node's worker, a replay,
    a benchmark), but its buffers (TensorRT's bound device memory, pinned host arrays) serve one call at a
    time. ``close`` (or ``with backend:``) releases device memory and sessions; ``run`` afterwards raises
    :class:`BackendClosedError`.
    """

    name: str = "abstract"

    def __init__(self, sidecar: Mapping[str, Any]) -> None:
        self.sidecar: dict[str, Any] = dict(sidecar)
        self.inputs: tuple[TensorSpec, ...] = tensor_specs(sidecar, "inputs")
        self.outputs: tuple[TensorSpec, ...] = tensor_specs(sidecar, "outputs")
        self._latency = LatencyRecorder()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def kind(self) -> str:
        return str(self.sidecar["kind"])

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def preprocess(self, input_name: str, image_rgb_uint8: np.ndarray) -> np.ndarray:
        """The model input ``(1, 3, H, W) float32`` for one image, built from the sidecar's preprocessing."""
        return preprocess_image(image_rgb_uint8, input_preprocessing(self.sidecar, input_name))

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``{input_name: array}``; returns ``{output_name: array}``."""
        checked = self.check_feeds(feeds)
        with self._lock:
            if self._closed:
                raise BackendClosedError(f"{self!r} is closed; load the model again")
            start = time.perf_counter()
            outputs = self._run(checked)
            self._latency.add(time.perf_counter() - start)
        return outputs

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the model's resources (device buffers, sessions); safe to call twice."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._release()

    def _release(self) -> None:  # noqa: B027  (optional hook: nothing to release by default)
        """Backend-specific clean-up, called once under the lock."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def warmup(self, iterations: int = 3) -> None:
        """Run on zeros ``iterations`` times (first calls allocate and tune), then reset the statistics."""
        feeds = {t.name: np.zeros(input_shape(self.sidecar, t), dtype=t.dtype) for t in self.inputs}
        for _ in range(iterations):
            self.run(feeds)
        self._latency.reset()

    def latency_stats(self) -> dict[str, float]:
        return self._latency.stats()

    def reset_latency(self) -> None:
        self._latency.reset()

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Names, dtypes and shapes must match the sidecar; returns C-contiguous arrays."""
        if not isinstance(feeds, Mapping):
            raise BackendInputError(f"run() takes a dict {{input_name: array}}; inputs: {describe_io(self.inputs)}")
        missing = [n for n in self.input_names if n not in feeds]
        unknown = [n for n in feeds if n not in self.input_names]
        if missing or unknown:
            raise BackendInputError(f"input names {sorted(feeds)} do not match the model's inputs "
                                    f"({describe_io(self.inputs)}); missing {missing}, unknown {unknown}")
        batches = set()
        checked = {}
        for spec in self.inputs:
            checked[spec.name] = _check_array(spec, feeds[spec.name])
            batches.add(checked[spec.name].shape[0])
        if len(batches) > 1:
            raise BackendInputError(f"all inputs must have the same batch size, got {sorted(batches)}")
        return checked

    @abc.abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on checked inputs."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sidecar.get('model', {}).get('name', '?')}, {describe_io(self.inputs)})"


def _check_array(spec: TensorSpec, value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise BackendInputError(f"input {spec.name!r} must be a numpy array, got {type(value).__name__}; "
                                "use Backend.preprocess(name, image) or np.asarray(x, dtype=np.float32)")
    if value.dtype != np.dtype(spec.dtype):
        raise BackendInputError(f"input {spec.name!r} has dtype {value.dtype}, the model expects {spec.dtype}; "
                                f"convert with x.astype(np.{spec.dtype}) or build it with Backend.preprocess")
    if value.ndim != len(spec.shape) or not _dims_match(spec.shape, value.shape):
        raise BackendInputError(f"input {spec.name!r} has shape {list(value.shape)}, the model expects "
                                f"{list(spec.shape)}; resize images with Backend.preprocess (it uses the "
                                "sidecar's size)" + ("" if isinstance(spec.shape[0], str) else
                                                     "; this export has a static batch (re-export with "
                                                     "--dynamic-batch for other batch sizes)"))
    return np.ascontiguousarray(value)


def _dims_match(expected: tuple[int | str, ...], actual: tuple[int, ...]) -> bool:
    return all((isinstance(e, str) and a > 0) or e == a for e, a in zip(expected, actual, strict=True))
