"""From node settings to a running pipeline: the one place the node and ``replay-bag`` build it.

Engine files follow the Isaac ROS convention: ``engine_file_path`` is used when it exists (and
``force_engine_update`` is false); otherwise ``model_file_path`` (ONNX + sidecar, or a checkpoint) runs on
ONNX Runtime / PyTorch. Engines are built on the target device with ``edge-geoloc build-engine``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
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


def choose_model_file(model_file_path: str, engine_file_path: str, force_engine_update: bool) -> str:
    """The file to load for one model: the engine if present and not forced to rebuild, else the model."""
    if engine_file_path and Path(engine_file_path).is_file() and not force_engine_update:
        return engine_file_path
    if engine_file_path:
        reason = "force_engine_update is true" if force_engine_update else "it does not exist"
        log.warning("not using engine %s (%s); build it on this device with `edge-geoloc build-engine` -- "
                    "running %s meanwhile", engine_file_path, reason, model_file_path or "nothing")
    if not model_file_path:
        raise ParameterError(f"engine {engine_file_path!r} is unusable and model_file_path is empty: build the "
                             "engine with `edge-geoloc build-engine` or set model_file_path to the ONNX model")
    if not Path(model_file_path).exists():
        raise ParameterError(f"model file {model_file_path!r} does not exist; check the path in params.yaml")
    return model_file_path


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
    """``Pipeline.from_config`` for these settings; raises :class:`ParameterError` with every missing piece."""
    from edge_geoloc.runtime.pipeline import Pipeline

    problems = settings.startup_problems()
    if problems:
        raise ParameterError("cannot start the pipeline: " + "; ".join(problems))
    retrieval = choose_model_file(settings.retrieval_model_file_path, settings.retrieval_engine_file_path,
                                  settings.force_engine_update)
    localizer = choose_model_file(settings.model_file_path, settings.engine_file_path, settings.force_engine_update)
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
