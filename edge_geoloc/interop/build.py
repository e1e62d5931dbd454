"""From node settings to a running pipeline: the one place the node and ``replay-bag`` build it.

Engine files follow the Isaac ROS convention (``isaac_ros_tensor_rt``): where TensorRT is installed and
``model_file_path`` is an ONNX file, the engine at ``engine_file_path`` is built from it on this device when it
is missing, was built for another device/model/precision, or ``force_engine_update`` is true, and reused
otherwise (``edge_geoloc.export.tensorrt_build.build_engine``). Without TensorRT an existing engine file is
used as is (unless forced), else the model runs on ONNX Runtime / PyTorch with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edge_geoloc.config import ConfigError, load_config, read_yaml_mapping
from edge_geoloc.interop.params import NodeSettings, ParameterError

log = logging.getLogger(__name__)


def load_node_params_file(path: str | Path, node_name: str = "edge_geoloc") -> dict[str, Any]:
    """The ``ros__parameters`` of a ROS 2 parameter file, for ``/**`` or ``node_name`` (the latter wins)."""
    data = read_yaml_mapping(path)
    params: dict[str, Any] = {}
    for key in ("/**", node_name, f"/{node_name}"):
        section = data.get(key)
        if isinstance(section, Mapping):
            params.update(section.get("ros__parameters") or {})
    if not params and data:
        raise ParameterError(f"{path}: no ros__parameters under '/**' or '{node_name}' (see config/params.yaml)")
    return params


def tensorrt_available() -> bool:
    """Whether engines can be built here (the ``tensorrt`` package is importable)."""
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def choose_model_file(model_file_path: str, engine_file_path: str, force_engine_update: bool,
                      enable_fp16: bool = True, build_engine: Callable[..., Path] | None = None) -> str:
    """The file to load for one model (see the module doc); ``build_engine`` is injectable for tests."""
    if engine_file_path and model_file_path.endswith(".onnx") and (build_engine or tensorrt_available()):
        _check_exists(model_file_path)
        return str(_build_or_reuse(model_file_path, engine_file_path, force_engine_update, enable_fp16,
                                   build_engine or _export_build_engine))
    if engine_file_path and Path(engine_file_path).is_file() and not force_engine_update:
        return engine_file_path
    if engine_file_path:
        reason = "force_engine_update is true" if force_engine_update else "it does not exist"
        log.warning("not using engine %s (%s) and TensorRT is not installed to build it; running %s instead",
                    engine_file_path, reason, model_file_path or "nothing")
    if not model_file_path:
        raise ParameterError(f"engine {engine_file_path!r} is unusable and model_file_path is empty: build the "
                             "engine with `edge-geoloc build-engine` or set model_file_path to the ONNX model")
    _check_exists(model_file_path)
    return model_file_path


def _check_exists(path: str) -> None:
    if not Path(path).exists():
        raise ParameterError(f"model file {path!r} does not exist; check the path in params.yaml")


def _build_or_reuse(onnx: str, engine: str, force: bool, fp16: bool, build_engine: Callable[..., Path]) -> Path:
    from edge_geoloc.export.config import EngineConfig

    cfg = EngineConfig(precision="fp16" if fp16 else "fp32", force=force)
    try:
        return Path(build_engine(onnx, cfg, out_path=engine))
    except (RuntimeError, ValueError, ImportError) as err:  # EngineBuildError, ArtifactError (bad sidecar)
        raise ParameterError(f"cannot build engine {engine} from {onnx}: {err}; fix the model or clear "
                             "engine_file_path to run the ONNX model with ONNX Runtime") from err


def _export_build_engine(onnx: str, cfg: Any, out_path: str) -> Path:
    from edge_geoloc.export.tensorrt_build import build_engine

    return build_engine(onnx, cfg, out_path)


def runtime_config(settings: NodeSettings) -> Any:
    """The runtime's ``RuntimeConfig``: the YAML file, then backend/device and fusion parameters, then overrides."""
    from edge_geoloc.runtime.config import RuntimeConfig

    overrides = [f"backend.kind={settings.backend}"] if settings.backend != "auto" else []
    overrides += [f"backend.device={settings.device}"] if settings.device != "auto" else []
    try:
        return load_config(RuntimeConfig, settings.runtime_config_file or None,
                           overrides + settings.runtime_config_overrides())
    except ConfigError as err:
        raise ParameterError(f"runtime_config_file / runtime_overrides: {err}") from err


def build_pipeline(settings: NodeSettings) -> Any:
    """``Pipeline.from_config`` for these settings (a car: no retrieval model); raises :class:`ParameterError`
    with every missing piece."""
    from edge_geoloc.runtime.pipeline import Pipeline

    problems = settings.startup_problems()
    if problems:
        raise ParameterError("cannot start the pipeline: " + "; ".join(problems))
    retrieval = None if settings.vehicle == "car" else choose_model_file(
        settings.retrieval_model_file_path, settings.retrieval_engine_file_path, settings.force_engine_update,
        settings.enable_fp16)
    localizer = choose_model_file(settings.model_file_path, settings.engine_file_path, settings.force_engine_update,
                                  settings.enable_fp16)
    return Pipeline.from_config(retrieval, localizer, settings.tile_index_path, runtime_config(settings))


def backend_description(settings: NodeSettings, pipeline: Any = None) -> dict[str, str]:
    """What ``/diagnostics`` says about the inference set-up: the settings, and the backends really loaded."""
    loaded = {f"{name}_backend_loaded": type(backend).__name__ for name, backend in (
        ("retrieval", getattr(getattr(pipeline, "encoder", None), "backend", None)),
        ("localizer", getattr(getattr(pipeline, "localizer", None), "backend", None))) if backend is not None}
    return {**loaded, "backend": settings.backend, "device": settings.device,
            "engine_file_path": settings.engine_file_path, "model_file_path": settings.model_file_path,
            "retrieval_engine_file_path": settings.retrieval_engine_file_path,
            "retrieval_model_file_path": settings.retrieval_model_file_path,
            "tile_index_path": settings.tile_index_path}
