"""The node's parameters, declared once: :class:`NodeSettings` is the schema.

Each field carries its default, unit, description, range or choices, and (for fusion settings) the dotted
runtime-config key it overrides. The rclpy node declares one ROS parameter per field with a descriptor built
from :func:`descriptor_fields`, validates changes with :func:`validate_parameter`, and builds its settings with
:func:`settings_from_parameters`; ``config/params.yaml`` is rendered by :func:`render_params_yaml` (a test
checks the committed file is identical), so no launch or YAML file restates a default by hand.

Regenerate the YAML with ``python -m edge_geoloc.interop.params > ros2_ws/src/edge_geoloc_ros/config/params.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_geoloc.fusion.config import FusionConfig

_TYPE_NAMES = {bool: "bool", int: "integer", float: "double", str: "string", tuple[str, ...]: "string_array"}


class ParameterError(ValueError):
    """One or more node parameters are invalid; the message lists each problem and how to fix it."""


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: name, type, default and the constraints shown in its descriptor."""

    name: str
    type_name: str  # bool | integer | double | string | string_array
    default: Any
    description: str
    unit: str = ""
    group: str = ""
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] = ()
    config_key: str | None = None  # dotted runtime-config key this parameter overrides
    read_only: bool = True  # takes effect at start-up only


def _param(default: Any, description: str, unit: str = "", group: str = "", *, min_value: float | None = None,
           max_value: float | None = None, choices: tuple[str, ...] = (), config_key: str | None = None) -> Any:
    meta = {"description": description, "unit": unit, "group": group, "min_value": min_value,
            "max_value": max_value, "choices": choices, "config_key": config_key}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class NodeSettings:
    """Settings of the ``edge_geoloc`` node (one ROS parameter per field, same name)."""

    # -- engine: the names Isaac ROS users know (isaac_ros_tensor_rt) --
    model_file_path: str = _param("", "localizer ONNX model (JSON sidecar next to it) or checkpoint", "path",
                                  "engine")
    engine_file_path: str = _param("", "localizer TensorRT engine; built from model_file_path (ONNX) on this "
                                   "device when missing or stale if TensorRT is installed", "path", "engine")
    retrieval_model_file_path: str = _param("", "retrieval encoder ONNX model or checkpoint", "path", "engine")
    retrieval_engine_file_path: str = _param("", "retrieval encoder TensorRT engine, handled like engine_file_path",
                                             "path", "engine")
    force_engine_update: bool = _param(False, "rebuild the TensorRT engines at start-up even when they match this "
                                       "device and model", "", "engine")
    enable_fp16: bool = _param(True, "build engines in FP16 (else FP32)", "", "engine")
    backend: str = _param("auto", "inference backend; auto = TensorRT engine if present, else ONNX Runtime", "",
                          "engine", choices=("auto", "tensorrt", "onnxruntime", "torch"))
    device: str = _param("auto", "device for ONNX Runtime / PyTorch backends", "", "engine",
                         choices=("auto", "cpu", "cuda"))
    vehicle: str = _param("drone", "drone: retrieval + localizer over the map; car: a ground camera (panorama or "
                          "pinhole), no retrieval, the localizer runs on the patch around the GNSS/fused prior", "",
                          "engine", choices=("drone", "car"))
    # -- map and runtime --
    tile_index_path: str = _param("", "tile index folder made by `edge-geoloc build-index`", "path", "map")
    runtime_config_file: str = _param("", "runtime YAML (configs/runtime*.yaml); empty = built-in defaults",
                                      "path", "runtime")
    runtime_overrides: tuple[str, ...] = _param((), "key=value overrides of the runtime config, e.g. "
                                                "fusion.min_visual_sigma_m=2.0", "", "runtime")
    # -- inputs and rates --
    image_transport: str = _param("raw", "subscribe to `image` (raw) or `image/compressed`", "", "inputs",
                                  choices=("raw", "compressed"))
    image_qos: str = _param("SENSOR_DATA", "QoS of the camera subscription", "", "inputs",
                            choices=("SENSOR_DATA", "DEFAULT"))
    gnss_qos: str = _param("SENSOR_DATA", "QoS of the gnss/fix subscription (best effort receives from reliable "
                           "and best-effort drivers)", "", "inputs", choices=("SENSOR_DATA", "DEFAULT"))
    heading_source: str = _param("none", "optional heading input: `heading` (std_msgs/Float64, rad clockwise "
                                 "from north) or `imu` (sensor_msgs/Imu, ENU)", "", "inputs",
                                 choices=("none", "float64", "imu"))
    gnss_velocity_source: str = _param("none", "optional GNSS velocity over ground on `gnss/vel`: `twist` "
                                       "(geometry_msgs/TwistStamped, nmea_navsat_driver's vel) or "
                                       "`twist_with_covariance` (TwistWithCovarianceStamped, ublox_gps' "
                                       "fix_velocity), ENU m/s; it goes with the fix of its epoch (the filter's "
                                       "Doppler velocity)", "", "inputs",
                                       choices=("none", "twist", "twist_with_covariance"))
    altitude_source: str = _param("none", "optional height-above-ground input: `altitude_agl` (std_msgs/Float64, "
                                  "m); its latest value goes with each frame", "", "inputs",
                                  choices=("none", "float64"))
    camera_altitude_agl_m: float = _param(0.0, "camera height above ground if fixed and known (used until an "
                                          "altitude_agl message arrives); 0 = unknown", "m", "inputs",
                                          min_value=0.0, max_value=10000.0)
    camera_hfov_deg: float = _param(0.0, "camera horizontal field of view (scale-aligned localizers, field-log "
                                    "camera info); 0 = the runtime config's", "deg", "inputs", min_value=0.0,
                                    max_value=179.0, config_key="camera.hfov_deg")
    camera_info_source: str = _param("none", "`camera_info` (sensor_msgs/CameraInfo): the calibrated field of view "
                                     "goes to the runtime (a pinhole ground camera needs it; frames wait for it)",
                                     "", "inputs", choices=("none", "camera_info"))
    max_inference_rate_hz: float = _param(2.0, "frames per second given to the pipeline; 0 = as fast as it runs",
                                          "Hz", "rates", min_value=0.0, max_value=100.0)
    max_image_age_s: float = _param(1.0, "frames older than this when the worker is free are dropped; 0 = never",
                                    "s", "rates", min_value=0.0, max_value=60.0)
    diagnostics_rate_hz: float = _param(1.0, "rate of /diagnostics", "Hz", "rates", min_value=0.1, max_value=10.0)
    latency_warn_ms: float = _param(500.0, "per-frame latency above which diagnostics warn", "ms", "rates",
                                    min_value=1.0, max_value=60000.0)
    # -- fusion (override the runtime config's fusion section when changed from these defaults) --
    gnss_gate_probability: float = _param(FusionConfig.gnss_gate_probability, "chi-square gate on GNSS fixes",
                                          "probability", "fusion", min_value=0.5, max_value=0.999999,
                                          config_key="fusion.gnss_gate_probability")
    visual_gate_probability: float = _param(FusionConfig.visual_gate_probability, "chi-square gate on visual fixes",
                                            "probability", "fusion", min_value=0.5, max_value=0.999999,
                                            config_key="fusion.visual_gate_probability")
    uere_m: float = _param(FusionConfig.uere_m, "GNSS user equivalent range error (sigma_h = HDOP * UERE)", "m",
                           "fusion", min_value=0.01, max_value=100.0, config_key="fusion.uere_m")
    # -- frames (REP-105) --
    map_frame: str = _param("map", "frame of geoloc/pose (local ENU map frame)", "", "frames")
    base_frame: str = _param("base_link", "frame_id of geoloc/fix", "", "frames")
    publish_visual_fix: bool = _param(True, "publish geoloc/visual_fix when the map matching gives a fix", "",
                                      "frames")
    # -- field logging --
    log_dir: str = _param("", "field-log folder (MCAP); empty = field logging disabled", "path", "logging")
    log_on_start: bool = _param(False, "start field logging at start-up (else: the start_logging service)", "",
                                "logging")
    log_min_free_gb: float = _param(2.0, "stop logging below this free disk space", "GB", "logging",
                                    min_value=0.0, max_value=10000.0)

    def __post_init__(self) -> None:
        problems = [p for spec in parameter_specs() if (p := spec_problem(spec, getattr(self, spec.name)))]
        if problems:
            raise ParameterError("; ".join(problems))

    def startup_problems(self) -> list[str]:
        """What prevents the pipeline from starting with these settings (each with how to fix it)."""
        problems = []
        if not self.tile_index_path:
            problems.append("tile_index_path is empty: set it to a folder made by `edge-geoloc build-index`")
        if not (self.model_file_path or self.engine_file_path):
            problems.append("set model_file_path (ONNX) or engine_file_path (TensorRT) for the localizer")
        if self.vehicle == "drone" and not (self.retrieval_model_file_path or self.retrieval_engine_file_path):
            problems.append("set retrieval_model_file_path or retrieval_engine_file_path (or vehicle: car, which "
                            "needs no retrieval)")
        return problems

    def runtime_config_overrides(self) -> list[str]:
        """``key=value`` overrides for the runtime config: changed fusion parameters, then runtime_overrides."""
        changed = [f"{s.config_key}={getattr(self, s.name)!r}" for s in parameter_specs()
                   if s.config_key and getattr(self, s.name) != s.default]
        return changed + list(self.runtime_overrides)


def parameter_specs() -> tuple[ParamSpec, ...]:
    """One :class:`ParamSpec` per :class:`NodeSettings` field, in declaration order."""
    hints = typing.get_type_hints(NodeSettings)
    return tuple(ParamSpec(name=f.name, type_name=_TYPE_NAMES[hints[f.name]], default=f.default, **f.metadata)
                 for f in dataclasses.fields(NodeSettings))


def spec_problem(spec: ParamSpec, value: Any) -> str | None:
    """Why ``value`` is not valid for ``spec`` (None when it is)."""
    expected = {"bool": (bool,), "integer": (int,), "double": (float, int), "string": (str,)}.get(spec.type_name)
    if expected is None:  # string_array
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, expected) and (spec.type_name == "bool" or not isinstance(value, bool))
    if not ok:
        return f"{spec.name} must be a {spec.type_name}, got {value!r}"
    if spec.choices and value not in spec.choices:
        return f"{spec.name} must be one of {list(spec.choices)}, got {value!r}"
    if spec.type_name == "double" and not math.isfinite(value):
        return f"{spec.name} must be finite, got {value!r}"
    low, high = spec.min_value, spec.max_value
    if (low is not None and value < low) or (high is not None and value > high):
        return f"{spec.name} must be in [{low}, {high}] {spec.unit}".rstrip() + f", got {value!r}"
    if spec.name == "runtime_overrides" and (bad := [v for v in value if "=" not in v]):
        return f"runtime_overrides entries must be key=value (e.g. fusion.uere_m=3.0), got {bad}"
    return None


def validate_parameter(name: str, value: Any) -> str | None:
    """Why setting parameter ``name`` to ``value`` is refused (None when it is accepted)."""
    spec = {s.name: s for s in parameter_specs()}.get(name)
    if spec is None:
        return f"unknown parameter {name!r}; known: {', '.join(s.name for s in parameter_specs())}"
    return spec_problem(spec, value)


def settings_from_parameters(values: Mapping[str, Any]) -> NodeSettings:
    """:class:`NodeSettings` from parameter values (missing or None = default); all problems in one error."""
    specs = {s.name: s for s in parameter_specs()}
    unknown = sorted(set(values) - set(specs))
    problems = [f"unknown parameter {n!r}" for n in unknown]
    kwargs = {n: _coerce(specs[n], v) for n, v in values.items() if n in specs and v is not None}
    problems += [p for n, v in kwargs.items() if (p := spec_problem(specs[n], v))]
    if problems:
        raise ParameterError("invalid node parameters: " + "; ".join(problems))
    return NodeSettings(**kwargs)


def _coerce(spec: ParamSpec, value: Any) -> Any:
    """ROS gives integers for doubles written without a decimal point, and lists for string arrays."""
    if spec.type_name == "double" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if spec.type_name == "string_array" and isinstance(value, list):
        return tuple(value)
    return value


def descriptor_fields(spec: ParamSpec) -> dict[str, Any]:
    """What the node puts in ``rcl_interfaces/ParameterDescriptor`` for ``spec``."""
    unit = f" [{spec.unit}]" if spec.unit else ""
    fields: dict[str, Any] = {"name": spec.name, "type_name": spec.type_name, "read_only": spec.read_only,
                              "description": f"{spec.description}{unit}; default {_yaml_value(spec.default)}"}
    if spec.choices:
        fields["additional_constraints"] = "one of: " + ", ".join(spec.choices)
    if spec.type_name == "double" and spec.min_value is not None and spec.max_value is not None:
        fields["floating_point_range"] = (float(spec.min_value), float(spec.max_value))
    return fields


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # always with a decimal point, so ROS reads a double
    if isinstance(value, str):
        return '""' if value == "" else (value if value.replace("_", "").isalnum() else f'"{value}"')
    if isinstance(value, tuple):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    return str(value)


def render_params_yaml() -> str:
    """``config/params.yaml``: every parameter with its default, unit, range or choices as a comment."""
    lines = ["# edge_geoloc node parameters. GENERATED from edge_geoloc.interop.params.NodeSettings:",
             "#   python -m edge_geoloc.interop.params > config/params.yaml",
             "# Copy this file and change values; read_only parameters take effect at start-up.",
             "/**:", "  ros__parameters:"]
    group = None
    for spec in parameter_specs():
        if spec.group != group:
            group = spec.group
            lines.append(f"    # --- {group} ---")
        lines.append(f"    # {spec.description}{_constraint_note(spec)}")
        if spec.default == ():  # ROS 2 YAML cannot type an empty list: leave it declared-but-unset
            lines.append(f'    # {spec.name}: ["key=value", ...]   (default: empty)')
        else:
            lines.append(f"    {spec.name}: {_yaml_value(spec.default)}")
    return "\n".join(lines) + "\n"


def _constraint_note(spec: ParamSpec) -> str:
    notes = [f"default: {_yaml_value(spec.default)}"]
    notes += [f"unit: {spec.unit}"] if spec.unit else []
    if spec.choices:
        notes.append("one of: " + ", ".join(spec.choices))
    if spec.min_value is not None:
        notes.append(f"range: [{spec.min_value:g}, {spec.max_value:g}]")
    if spec.config_key:
        notes.append(f"overrides {spec.config_key}")
    return f" ({'; '.join(notes)})"


def render_params_markdown() -> str:
    """The parameter table of docs/ros2.md (a test checks the docs carry exactly this table)."""
    lines = ["| parameter | type | default | unit | description |", "|---|---|---|---|---|"]
    for spec in parameter_specs():
        note = f" One of: {', '.join(spec.choices)}." if spec.choices else ""
        if spec.min_value is not None:
            note += f" Range [{spec.min_value:g}, {spec.max_value:g}]."
        if spec.config_key:
            note += f" Overrides `{spec.config_key}`."
        description = spec.description.replace("|", "/")
        lines.append(f"| `{spec.name}` | {spec.type_name} | `{_yaml_value(spec.default)}` | {spec.unit} | "
                     f"{description}.{note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(render_params_yaml())
