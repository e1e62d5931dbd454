"""The calls into TensorRT itself (10.x / 11.x Python API); TensorRT is imported only when a build runs.

Not executed on the development machines (TensorRT and pycuda are not installable there); the decisions
these functions follow (:class:`BuildPlan`, profiles, cache paths, calibration batches) are unit-tested in
:mod:`edge_geoloc.export.tensorrt_build` and :mod:`edge_geoloc.export.calibration`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from edge_geoloc.export.calibration import CalibrationStream, batch_feeds, calibration_feeds
from edge_geoloc.export.config import EngineConfig

from edge_geoloc.artifacts import atomic_write_bytes, sha256_file
from edge_geoloc.runtime.backends.tensorrt_backend import pushed_primary_context

logger = logging.getLogger(__name__)


class EngineBuildError(RuntimeError):
    """TensorRT could not parse or build the network; the message lists the parser/builder errors."""


def calibration_cache_path(onnx_path: str | Path, calibration_id: str, trt_version: str) -> Path:
    """Per ONNX, calibration set and TensorRT version: a stale cache is never silently reused."""
    onnx_path = Path(onnx_path)
    key = hashlib.sha256(f"{sha256_file(onnx_path)}|{calibration_id}|{trt_version}".encode()).hexdigest()[:12]
    return onnx_path.with_name(f"{onnx_path.stem}.{key}.calib")


def calibration_batch(profiles: Mapping[str, Any]) -> int:
    """Images per calibration batch: the opt batch of the profile TensorRT calibrates with.

    With explicit batch, TensorRT reads exactly one opt-shaped tensor per ``get_batch`` call; a larger batch
    would leave all but the first opt-batch images unused, a smaller one would be read past its end.
    """
    batches = {opt[0] for _, opt, _ in profiles.values()}
    if len(batches) != 1:
        raise EngineBuildError(f"inputs disagree on the opt batch {sorted(batches)}; calibration needs one")
    return batches.pop()


def check_calibration_shapes(batches: Sequence[Mapping[str, np.ndarray]], profiles: Mapping[str, Any]) -> None:
    """Every calibration batch must have the profile's opt shape: TensorRT reads exactly that many values."""
    for name, (_, opt, _) in profiles.items():
        shapes = {tuple(batch[name].shape) for batch in batches}
        if shapes != {tuple(opt)}:
            raise EngineBuildError(f"calibration batches of {name!r} have shapes {sorted(shapes)}, the profile's opt "
                                   f"shape is {tuple(opt)}: calibrate at the size the sidecar records (leave "
                                   "--opt-hw at its default) or quantise with `edge-geoloc export quantize`")


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as err:
        raise ImportError("building engines needs the `tensorrt` Python package on the target device: on a Jetson "
                          "install JetPack's python3-libnvinfer (use a venv with --system-site-packages); PyPI "
                          "has no Tegra wheels. Export the ONNX anywhere, build the engine on the device.") from err
    return trt


def run_tensorrt_build(onnx_path: Path, sidecar: Mapping[str, Any], cfg: EngineConfig, plan: Any,
                       profiles: Mapping[str, Any]) -> tuple[bytes, str | None]:
    """Parse, configure and build; returns (serialized plan, calibration id or None)."""
    trt = import_tensorrt()
    logger_trt = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger_trt)
    network = _parse_network(trt, builder, logger_trt, onnx_path, plan.strongly_typed)
    config = builder.create_builder_config()
    _configure(trt, builder, config, cfg, plan, profiles)
    timing_cache = _attach_timing_cache(trt, config, cfg.timing_cache)
    calibration_id = None
    if plan.use_calibrator:
        serialized, calibration_id = _build_with_calibrator(trt, builder, network, config, onnx_path, sidecar, cfg,
                                                            profiles)
    else:
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build {onnx_path.name} ({cfg.precision}); see the TensorRT "
                               "log above. `edge-geoloc export check` lists unsupported operators.")
    if timing_cache is not None:
        atomic_write_bytes(cfg.timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized), calibration_id


def _build_with_calibrator(trt: Any, builder: Any, network: Any, config: Any, onnx_path: Path,
                           sidecar: Mapping[str, Any], cfg: EngineConfig,
                           profiles: Mapping[str, Any]) -> tuple[Any, str]:
    """Build with an INT8 calibrator whose device buffers live in the primary CUDA context.

    That context is the one TensorRT (CUDA runtime API) and the TensorRT backend use; ``pycuda.autoinit``
    would create a second one, whose buffer addresses are not valid in TensorRT's.
    """
    import pycuda.driver as cuda

    with pushed_primary_context(cuda):
        calibrator, calibration_id = _make_calibrator(trt, onnx_path, sidecar, cfg, profiles)
        config.int8_calibrator = calibrator  # TensorRT holds a raw pointer: keep the object alive during the build
        try:
            serialized = builder.build_serialized_network(network, config)
        finally:
            calibrator.free()
        logger.info("INT8 calibration read %d batches of %d images", calibrator.stream.served,
                    calibrator.stream.batch_size)
    return serialized, calibration_id


def _parse_network(trt: Any, builder: Any, logger_trt: Any, onnx_path: Path, strongly_typed: bool) -> Any:
    flags = 0
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)  # explicit batch is the only mode in TensorRT 10+
    parser = trt.OnnxParser(network, logger_trt)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path.name}:\n  " + "\n  ".join(errors))
    return network


def _configure(trt: Any, builder: Any, config: Any, cfg: EngineConfig, plan: Any,
               profiles: Mapping[str, Any]) -> None:
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mb << 20)
    config.builder_optimization_level = cfg.optimization_level
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    _clear_flags(trt, config, plan.cleared_flags)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in profiles.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    if plan.use_calibrator and not config.set_calibration_profile(profile):
        # required for dynamic shapes (TensorRT 10 docs); TensorRT reads the opt shape from each calibration batch
        raise EngineBuildError("TensorRT refused the calibration profile (the optimisation profile's opt shapes)")
    if cfg.dla_core >= 0:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = cfg.dla_core


def _clear_flags(trt: Any, config: Any, flags: Sequence[str]) -> None:
    """Turn off default-on builder flags (TF32 for fp32 builds); say so where this TensorRT has no such flag."""
    for flag in flags:
        if hasattr(trt.BuilderFlag, flag):
            config.clear_flag(getattr(trt.BuilderFlag, flag))
        else:
            logger.warning("TensorRT %s has no BuilderFlag.%s to clear; fp32 parity may need a looser tolerance",
                           trt.__version__, flag)


def _attach_timing_cache(trt: Any, config: Any, path: Path | None) -> Any:
    """Load the timing cache (or start an empty one) so tactic timings are reused across builds.

    The file name carries the TensorRT version and compute capability (``timing_cache_for``); a cache TensorRT
    still refuses (``create_timing_cache`` -> None, or ``set_timing_cache`` -> False: corrupt, or made by
    another device) is replaced by a new one, logged, never silently half-used.
    """
    if path is None:
        return None
    path = Path(path)
    previous = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(previous) if previous else None
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        logger.info("timing cache %s reused", path)
        return cache
    if previous:
        logger.warning("timing cache %s was refused by TensorRT %s (corrupt or from another device); starting a "
                       "new one", path, trt.__version__)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise EngineBuildError("TensorRT could not attach an empty timing cache; build without --timing-cache")
    return cache


def _make_calibrator(trt: Any, onnx_path: Path, sidecar: Mapping[str, Any], cfg: EngineConfig,
                     profiles: Mapping[str, Any]) -> tuple[Any, str]:
    """A TensorRT 10 ``IInt8MinMaxCalibrator`` over the calibration frames, with a cache next to the ONNX.

    Batches hold the profile's opt batch of images: exactly what TensorRT reads from each buffer.
    """
    feeds, calibration_id = calibration_feeds(sidecar, cfg.calibration_dir, cfg.calibration_images)
    batches = batch_feeds(feeds, calibration_batch(profiles), drop_last=True)
    check_calibration_shapes(batches, profiles)
    stream = CalibrationStream(batches)
    cache = calibration_cache_path(onnx_path, calibration_id, trt.__version__)
    return _calibrator_class(trt)(stream, cache), calibration_id


def _calibrator_class(trt: Any) -> type:
    import pycuda.driver as cuda  # the caller has pushed the primary context (no pycuda.autoinit)

    class MinMaxCalibrator(trt.IInt8MinMaxCalibrator):
        """MinMax (not entropy): the calibrator ultralytics moved to after INT8 accuracy complaints."""

        def __init__(self, stream: CalibrationStream, cache: Path) -> None:
            trt.IInt8MinMaxCalibrator.__init__(self)
            self.stream, self.cache = stream, cache
            self.device: dict[str, Any] = {}

        def get_batch_size(self) -> int:
            return self.stream.batch_size

        def get_batch(self, names: Sequence[str]) -> list[int] | None:
            arrays = self.stream.next_batch(names)
            if arrays is None:
                return None
            for name, array in zip(names, arrays, strict=True):
                if name not in self.device:
                    self.device[name] = cuda.mem_alloc(array.nbytes)
                cuda.memcpy_htod(self.device[name], np.ascontiguousarray(array))
            return [int(self.device[n]) for n in names]

        def free(self) -> None:
            """Release the device buffers (the context is still current)."""
            for allocation in self.device.values():
                allocation.free()
            self.device.clear()

        def read_calibration_cache(self) -> bytes | None:
            return self.cache.read_bytes() if self.cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            atomic_write_bytes(self.cache, bytes(data))

    return MinMaxCalibrator
