"""The node's car settings without ROS: the parameter schema, the launch example and camera_info reaching the
pipeline (a pinhole ground camera's frames are skipped until it arrives)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_car_runtime import truth_pipeline
from test_pipeline import gnss, world  # noqa: F401 (fixture)

from edge_geoloc.interop.build import load_node_params_file
from edge_geoloc.interop.params import NodeSettings, ParameterError, settings_from_parameters
from edge_geoloc.interop.runner import GeolocRunner
from edge_geoloc.runtime.query_alignment import QueryAlignment
from edge_geoloc.types import CameraFrame

CAR_PARAMS = Path(__file__).resolve().parents[1] / "ros2_ws/src/edge_geoloc_ros/config/car_params.yaml"


def test_a_car_needs_no_retrieval_model_but_a_drone_does():
    car = NodeSettings(vehicle="car", model_file_path="loc.onnx", tile_index_path="index")
    assert car.startup_problems() == []
    drone = NodeSettings(model_file_path="loc.onnx", tile_index_path="index")
    assert any("retrieval" in p for p in drone.startup_problems())
    with pytest.raises(ParameterError, match="vehicle"):
        NodeSettings(vehicle="boat")


def test_the_car_launch_example_is_a_valid_parameter_file():
    settings = settings_from_parameters(load_node_params_file(CAR_PARAMS))
    assert settings.vehicle == "car" and settings.camera_info_source == "camera_info"
    assert settings.heading_source == "imu" and settings.startup_problems() == []
    from edge_geoloc.config import load_config
    from edge_geoloc.demo.config import DemoConfig
    from edge_geoloc.interop.build import runtime_config

    fusion = runtime_config(settings).fusion  # the car benchmark's fusion: particle filter, trusted heat maps,
    assert fusion.mode == "particle" and fusion.min_gnss_sigma_m == 16.0  # GNSS sigmas floored (validation)
    for profile in ("demo_car.yaml", "demo_car_quick.yaml"):  # three copies of one setting: kept equal here
        demo = load_config(DemoConfig, CAR_PARAMS.parents[4] / "configs" / profile).runtime.fusion
        assert fusion == demo, profile  # the ROS example drives with the car demo's fusion


def test_camera_info_reaches_the_pipeline_and_unblocks_pinhole_frames(world):  # noqa: F811
    _, index = world
    pipe, localizer = truth_pipeline(index, QueryAlignment(query_kind="ground_pinhole"), (0.0, 0.0))
    runner = GeolocRunner(pipe)
    image = np.zeros((64, 200, 3), np.uint8)
    runner.on_gnss(gnss(0.0, 0.0, 0.0))
    runner.process(CameraFrame(0.0, image))
    assert pipe.counters.extra["missing_camera_info"] == 1 and localizer.queries == []
    runner.on_camera_info(90.0)
    runner.on_gnss(gnss(0.0, 0.0, 1.0))
    state = runner.process(CameraFrame(1.0, image))
    assert pipe.cfg.camera.hfov_deg == 90.0 and localizer.queries == [(64, 200, 3)]
    assert state.visual_fix is not None and pipe.counters.extra["missing_camera_info"] == 1


def test_the_node_builds_a_car_pipeline_from_a_panorama_artifact_without_retrieval(world, tmp_path):  # noqa: F811
    from edge_geoloc.interop.build import build_pipeline
    from edge_geoloc.models import create_model
    from edge_geoloc.models.checkpoint import save_model

    _, index = world
    ckpt = save_model(create_model("ccvpe_pano_micro"), tmp_path / "ground.safetensors")
    settings = NodeSettings(vehicle="car", model_file_path=str(ckpt), tile_index_path=str(index.root),
                            backend="torch", device="cpu", runtime_overrides=("pipeline.aerial_size_m=64.0",))
    pipe = build_pipeline(settings)
    assert pipe.encoder is None and pipe.alignment.query_kind == "ground_pano" and pipe.alignment.north_up
    pipe.process(CameraFrame(0.0, np.zeros((64, 128, 3), np.uint8), heading_rad=0.5), gnss(0.0, 0.0, 0.0))
    pipe.process(CameraFrame(1.0, np.zeros((64, 64, 3), np.uint8), heading_rad=0.5), gnss(0.0, 0.0, 1.0))
    assert pipe.counters.extra["prior_patches"] == 1 and pipe.counters.extra["bad_panorama_aspect"] == 1
