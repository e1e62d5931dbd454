"""TensorRT backend (TensorRT 10 / 11 tensor API, pycuda buffers).

Per input and output: a pinned host buffer (``pagelocked_empty``) and a device buffer (``mem_alloc``), bound
once with ``set_tensor_address``; a call copies inputs host -> device on a private stream, runs
``execute_async_v3(stream.handle)``, copies outputs device -> host and synchronises **after** the copies.
A call whose input shapes differ from the bound ones (another batch size, or another height and width for
a model of dynamic size such as the map matcher) is checked against the engine's optimisation profile and
rebinds buffers of the new shapes. The engine's manifest (its sidecar) must match this machine (TensorRT
version, GPU compute capability, JetPack); otherwise loading fails with the command that rebuilds it.

Not executed on the development machines (no TensorRT, no GPU); tests marked ``tensorrt`` cover it where
TensorRT is importable.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.export.manifest import check_engine_manifest, current_device_info, read_engine_manifest
from edge_geoloc.export.sidecar import input_shape
from edge_geoloc.runtime.backends.base import Backend

logger = logging.getLogger(__name__)


def _import_tensorrt() -> tuple[Any, Any]:
    try:
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as err:
        raise ImportError(f"the TensorRT backend needs `tensorrt` and `pycuda` ({err}). On a Jetson they come "
                          "from JetPack (python3-libnvinfer; a venv with --system-site-packages) and "
                          "`pip install pycuda`; elsewhere load the .onnx file with kind='onnxruntime'") from err
    return trt, cuda


@contextlib.contextmanager
def pushed_primary_context(cuda: Any, device_index: int = 0) -> Iterator[Any]:
    """The device's primary CUDA context, current for the ``with`` block (pushed, then popped and released).

    The primary context is the one the CUDA runtime, TensorRT and torch use; ``pycuda.autoinit`` would make a
    second context whose allocations TensorRT cannot see.
    """
    cuda.init()
    ctx = cuda.Device(device_index).retain_primary_context()
    ctx.push()
    try:
        yield ctx
    finally:
        ctx.pop()
        ctx.detach()


class TensorRTBackend(Backend):
    """A serialized TensorRT engine with its manifest, run with pycuda buffers on one CUDA stream."""

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str = "cuda", verify_hash: bool = True) -> None:
        trt, cuda = _import_tensorrt()
        self.path = Path(path)
        manifest = read_engine_manifest(self.path, verify_hash=verify_hash)
        check_engine_manifest(manifest, current_device_info(), engine=self.path)
        super().__init__(manifest)
        self._trt, self._cuda = trt, cuda
        cuda.init()
        index = int(device.split(":")[1]) if ":" in device else 0
        self._ctx = cuda.Device(index).retain_primary_context()  # shared with torch / other libraries
        self._ctx.push()
        try:
            self._load_engine()
            self._allocate({spec.name: input_shape(self.sidecar, spec) for spec in self.inputs})
        finally:
            self._ctx.pop()

    def _load_engine(self) -> None:
        trt = self._trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if self.sidecar.get("engine", {}).get("version_compatible"):
            self._runtime.engine_host_code_allowed = True
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {self.path}; rebuild it with "
                               f"`edge-geoloc build-engine --force` on this device")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        missing = sorted(set(self.input_names + self.output_names) - set(names))
        if missing:
            raise RuntimeError(f"engine {self.path} lacks tensors {missing} its manifest lists; rebuild it")

    def _allocate(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Pinned host + device buffers for these input shapes, bound to the context by tensor address."""
        trt, cuda = self._trt, self._cuda
        for allocation in getattr(self, "_device", {}).values():  # the previous shapes' buffers
            allocation.free()
        self._stream = cuda.Stream()
        for spec in self.inputs:
            self.context.set_input_shape(spec.name, shapes[spec.name])
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, Any] = {}
        for name in self.input_names + self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            self._host[name] = cuda.pagelocked_empty(shape, dtype)
            self._device[name] = cuda.mem_alloc(self._host[name].nbytes)
            self.context.set_tensor_address(name, int(self._device[name]))
        self._shapes = dict(shapes)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda = self._cuda
        shapes = {name: tuple(value.shape) for name, value in feeds.items()}
        self._ctx.push()
        try:
            if shapes != self._shapes:
                self._check_profile(shapes)
                self._allocate(shapes)
            for name, value in feeds.items():
                np.copyto(self._host[name], value.astype(self._host[name].dtype, copy=False))
                cuda.memcpy_htod_async(self._device[name], self._host[name], self._stream)
            if not self.context.execute_async_v3(self._stream.handle):
                raise RuntimeError(f"TensorRT execute_async_v3 failed for {self.path}")
            for name in self.output_names:
                cuda.memcpy_dtoh_async(self._host[name], self._device[name], self._stream)
            self._stream.synchronize()  # after the device -> host copies
        finally:
            self._ctx.pop()
        return {name: self._host[name].astype(np.float32, copy=True) for name in self.output_names}

    def _release(self) -> None:
        """Free the device buffers and TensorRT objects in the context that made them, then release it."""
        self._ctx.push()
        try:
            for allocation in self._device.values():
                allocation.free()
            self._device, self._host = {}, {}
            self.context = self.engine = self._runtime = None
        finally:
            self._ctx.pop()
            self._ctx.detach()

    def _check_profile(self, shapes: dict[str, tuple[int, ...]]) -> None:
        for spec in self.inputs:
            low, _, high = (tuple(s) for s in self.engine.get_tensor_profile_shape(spec.name, 0))
            shape = shapes[spec.name]
            batch = shape[0]
            if not low[0] <= batch <= high[0]:
                raise ValueError(f"batch {batch} is outside the engine's profile for {spec.name!r} "
                                 f"({low[0]}..{high[0]}); rebuild with `edge-geoloc build-engine --max-batch {batch}`")
            if not all(lo <= d <= hi for lo, d, hi in zip(low[1:], shape[1:], high[1:], strict=True)):
                raise ValueError(f"input {spec.name!r} of shape {list(shape)} is outside the engine's profile "
                                 f"({list(low)}..{list(high)}); rebuild with `edge-geoloc build-engine --min-hw H,W "
                                 "--max-hw H,W` covering it")
