"""From node settings to the pipeline: engine/model choice, parameter files, runtime-config precedence."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_geoloc.interop.build import (
    backend_description,
    build_pipeline,
    choose_model_file,
    load_node_params_file,
    runtime_config,
)
from edge_geoloc.interop.params import NodeSettings, ParameterError


def test_without_tensorrt_an_existing_engine_is_used_else_the_model(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("edge_geoloc.interop.build.tensorrt_available", lambda: False)
    engine, model = tmp_path / "loc.engine", tmp_path / "loc.onnx"
    model.write_bytes(b"onnx")
    with caplog.at_level(logging.WARNING):
        assert choose_model_file(str(model), str(engine), False) == str(model)  # engine not built yet
    assert "TensorRT is not installed" in caplog.text
    engine.write_bytes(b"plan")
    assert choose_model_file(str(model), str(engine), False) == str(engine)
    assert choose_model_file(str(model), str(engine), True) == str(model)  # forced: not the old engine
    with pytest.raises(ParameterError, match="model_file_path is empty"):
        choose_model_file("", str(tmp_path / "missing.engine"), False)
    with pytest.raises(ParameterError, match="does not exist"):
        choose_model_file(str(tmp_path / "missing.onnx"), "", False)


def test_with_tensorrt_the_engine_is_built_or_reused_isaac_style(tmp_path):
    model, engine = tmp_path / "loc.onnx", tmp_path / "loc.plan"
    model.write_bytes(b"onnx")
    calls = []

    def fake_build(onnx, cfg, out_path):
        calls.append((onnx, cfg.precision, cfg.force, out_path))
        return Path(out_path)

    assert choose_model_file(str(model), str(engine), True, False, build_engine=fake_build) == str(engine)
    assert calls == [(str(model), "fp32", True, str(engine))]

    def failing_build(onnx, cfg, out_path):
        raise RuntimeError("parser: unsupported op")

    with pytest.raises(ParameterError, match="cannot build engine.*unsupported op.*clear engine_file_path"):
        choose_model_file(str(model), str(engine), False, build_engine=failing_build)


def test_params_file_sections_merge_node_name_last(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    backend: onnxruntime\n    uere_m: 3.0\n"
                    "edge_geoloc:\n  ros__parameters:\n    uere_m: 5.0\n")
    assert load_node_params_file(path) == {"backend": "onnxruntime", "uere_m": 5.0}
    (tmp_path / "bad.yaml").write_text("other_node:\n  ros__parameters:\n    x: 1\n")
    with pytest.raises(ParameterError, match="no ros__parameters"):
        load_node_params_file(tmp_path / "bad.yaml")


def test_runtime_config_precedence(tmp_path):
    yaml_file = tmp_path / "runtime.yaml"
    yaml_file.write_text("fusion:\n  uere_m: 7.0\n  min_visual_sigma_m: 3.0\npipeline:\n  top_k: 9\n")
    cfg = runtime_config(NodeSettings(runtime_config_file=str(yaml_file), backend="onnxruntime"))
    assert (cfg.fusion.uere_m, cfg.pipeline.top_k, cfg.backend.kind) == (7.0, 9, "onnxruntime")  # param at default
    cfg = runtime_config(NodeSettings(runtime_config_file=str(yaml_file), uere_m=2.0,
                                      runtime_overrides=("pipeline.top_k=4",)))
    assert (cfg.fusion.uere_m, cfg.fusion.min_visual_sigma_m, cfg.pipeline.top_k) == (2.0, 3.0, 4)
    with pytest.raises(ParameterError, match="valid keys"):
        runtime_config(NodeSettings(runtime_overrides=("pipeline.topk=4",)))


def test_build_pipeline_lists_what_is_missing():
    with pytest.raises(ParameterError, match="tile_index_path is empty.*model_file_path"):
        build_pipeline(NodeSettings())


def test_backend_description_names_the_loaded_backends():
    pipeline = SimpleNamespace(encoder=SimpleNamespace(backend=SimpleNamespace()), localizer=object())
    described = backend_description(NodeSettings(engine_file_path="/e.plan"), pipeline)
    assert described["retrieval_backend_loaded"] == "SimpleNamespace"
    assert "localizer_backend_loaded" not in described and described["engine_file_path"] == "/e.plan"
