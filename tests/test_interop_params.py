"""The node's parameter schema: one declaration, validated, rendered into the committed params.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge_geoloc.fusion.config import FusionConfig
from edge_geoloc.interop.params import (
    NodeSettings,
    ParameterError,
    descriptor_fields,
    parameter_specs,
    render_params_markdown,
    render_params_yaml,
    settings_from_parameters,
    validate_parameter,
)

PACKAGE = Path(__file__).resolve().parents[1] / "ros2_ws" / "src" / "edge_geoloc_ros"


def test_committed_params_yaml_is_the_rendered_schema():
    committed = (PACKAGE / "config" / "params.yaml").read_text(encoding="utf-8")
    assert committed == render_params_yaml(), (
        "config/params.yaml is stale: python -m edge_geoloc.interop.params > "
        "ros2_ws/src/edge_geoloc_ros/config/params.yaml")


def test_params_yaml_values_are_the_defaults_with_ros_types():
    params = yaml.safe_load(render_params_yaml())["/**"]["ros__parameters"]
    for spec in parameter_specs():
        if spec.default == ():
            assert spec.name not in params  # ROS YAML cannot type an empty list
            continue
        assert params[spec.name] == spec.default
        assert type(params[spec.name]) is type(spec.default), spec.name  # 2.0 stays a double for rclpy


def test_isaac_ros_names_and_documented_units():
    names = {s.name for s in parameter_specs()}
    assert {"engine_file_path", "model_file_path", "force_engine_update", "tile_index_path"} <= names
    rates = [s for s in parameter_specs() if s.name.endswith("_hz")]
    assert rates and all(s.unit == "Hz" and s.min_value is not None for s in rates)
    text = render_params_yaml()
    assert all(f"\n    {s.name}: " in text or f"# {s.name}: " in text for s in parameter_specs())


def test_defaults_follow_the_fusion_config():
    settings = NodeSettings()
    assert settings.gnss_gate_probability == FusionConfig().gnss_gate_probability
    assert settings.runtime_config_overrides() == []


def test_changed_fusion_parameters_become_config_overrides():
    settings = settings_from_parameters({"uere_m": 3, "runtime_overrides": ["fusion.min_visual_sigma_m=2.0"]})
    assert settings.uere_m == 3.0  # ROS hands ints for doubles written without a decimal point
    assert settings.runtime_config_overrides() == ["fusion.uere_m=3.0", "fusion.min_visual_sigma_m=2.0"]


@pytest.mark.parametrize("name, value, match", [
    ("max_inference_rate_hz", -1.0, r"in \[0.0, 100.0\] Hz"),
    ("backend", "tensorflow", "one of"),
    ("force_engine_update", 1, "must be a bool"),
    ("runtime_overrides", ["fusion.uere_m"], "key=value"),
    ("no_such_parameter", 1, "unknown parameter"),
])
def test_invalid_values_are_refused_with_the_fix(name, value, match):
    assert validate_parameter(name, value) is not None
    with pytest.raises(ParameterError, match=match):
        settings_from_parameters({name: value})


def test_all_problems_are_reported_together_and_startup_needs_models():
    with pytest.raises(ParameterError) as err:
        settings_from_parameters({"backend": "x", "diagnostics_rate_hz": 0.0})
    assert "backend" in str(err.value) and "diagnostics_rate_hz" in str(err.value)
    problems = NodeSettings().startup_problems()
    assert any("tile_index_path" in p for p in problems) and len(problems) == 3
    ready = NodeSettings(tile_index_path="idx", model_file_path="loc.onnx", retrieval_model_file_path="r.onnx")
    assert ready.startup_problems() == []


def test_descriptors_carry_unit_range_and_choices():
    specs = {s.name: s for s in parameter_specs()}
    rate = descriptor_fields(specs["max_inference_rate_hz"])
    assert rate["floating_point_range"] == (0.0, 100.0) and "[Hz]" in rate["description"]
    assert "default 2.0" in rate["description"] and rate["type_name"] == "double"
    assert descriptor_fields(specs["backend"])["additional_constraints"].startswith("one of: auto")


def test_docs_parameter_table_is_the_rendered_schema():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "ros2.md").read_text(encoding="utf-8")
    begin = docs.index("-->\n", docs.index("<!-- params:begin")) + 4
    assert docs[begin:docs.index("<!-- params:end -->")] == render_params_markdown(), (
        "docs/ros2.md parameter table is stale: regenerate it from render_params_markdown()")
