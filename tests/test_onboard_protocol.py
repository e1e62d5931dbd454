"""The on-board retrieval protocol: tiles on build-index's grid, poses for every frame, alignment as the runtime
does it, and clear errors for views without a pose."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from test_retrieval_train import tiny_config

from edge_geoloc.artifacts import read_checkpoint_meta
from edge_geoloc.data.images import list_images, read_image_rgb
from edge_geoloc.data.poses import POSES_FILE, MissingPoseError, OnboardAlignment, read_view_poses
from edge_geoloc.geo import GeoRaster
from edge_geoloc.geo.view_alignment import align_query_north_up, align_query_scale
from edge_geoloc.runtime.config import TileIndexConfig
from edge_geoloc.runtime.tile_build import tile_grid
from edge_geoloc.sim import generate_area
from edge_geoloc.sim.onboard_tree import OnboardTreeConfig, tile_centres, write_onboard_tree
from edge_geoloc.train.retrieval_trainer import RetrievalTrainer

TREE_CFG = OnboardTreeConfig(tile_size_m=120.0, stride_m=60.0, tile_px=32, drone_px=48, views_per_tile=1,
                             queries_per_area=6, photometric=False)


@pytest.fixture(scope="module")
def areas():
    return generate_area("source", seed=5, size_m=300.0, gsd_m=2.0), generate_area("source", seed=6, size_m=300.0,
                                                                                 gsd_m=2.0)


@pytest.fixture(scope="module")
def tree(tmp_path_factory, areas):
    return write_onboard_tree(tmp_path_factory.mktemp("onboard"), [areas[0]], [areas[1]], TREE_CFG)


def test_tiles_lie_on_build_index_grid(tmp_path, areas):
    area = areas[0]
    area.save(tmp_path)
    with GeoRaster(tmp_path / "ortho.tif") as raster:
        grid = tile_grid(raster, TileIndexConfig(tile_size_m=120.0, stride_m=60.0, min_valid_fraction=1.0))
    east0, north0 = area.center_utm
    expected = np.stack([grid.crs_x - east0, grid.crs_y - north0], -1)
    assert np.allclose(tile_centres(area, TREE_CFG), expected, atol=1e-6)


def test_every_frame_has_a_pose_and_test_queries_are_labelled_with_the_nearest_tile(tree):
    poses = read_view_poses(tree)
    drone = [p for sub in ("train/drone", "test/query_drone", "test/gallery_drone") for d in (tree / sub).iterdir()
             for p in list_images(d)]
    assert {p.relative_to(tree).as_posix() for p in drone} == set(poses)
    with (tree / "locations.csv").open() as f:
        centres = {r["id"]: np.array([float(r["east_m"]), float(r["north_m"])]) for r in csv.DictReader(f)}
    test_ids = [r for r in centres if (tree / "test" / "gallery_satellite" / r).is_dir()]
    for rel, pose in poses.items():
        if rel.startswith("test/query_drone"):
            loc = rel.split("/")[2]
            dist = {i: np.abs(centres[i] - [pose.east_m, pose.north_m]).max() for i in test_ids}
            assert dist[loc] == min(dist.values())
        assert abs(np.degrees(pose.pitch_rad) - 90) <= TREE_CFG.max_tilt_deg + 1e-6


def test_alignment_is_the_runtime_alignment_from_the_measured_pose(tree):
    align = OnboardAlignment(tree, 80.0, 40)
    rel, pose = next(iter(read_view_poses(tree).items()))
    image = read_image_rgb(tree / rel)
    expected = align_query_scale(align_query_north_up(image, pose.measured_heading_rad, "drone"),
                                 pose.measured_alt_agl_m, pose.hfov_deg, 80.0, 40)
    assert np.array_equal(align(tree / rel, image), expected)


def test_a_view_without_a_pose_stops_training_with_an_error_naming_it(tree, tmp_path):
    rows = (tree / POSES_FILE).read_text().splitlines()
    dropped = next(r for r in rows if r.startswith("train/drone"))
    (tree / POSES_FILE).write_text("\n".join(r for r in rows if r != dropped) + "\n")
    try:
        cfg = tiny_config(tree, tmp_path, "data.protocol=onboard", "data.augment.rotate_satellite=false",
                          "optim.batch_size=4")
        with pytest.raises(MissingPoseError, match=dropped.split(",")[0].replace("/", ".")):
            RetrievalTrainer(cfg)
    finally:
        (tree / POSES_FILE).write_text("\n".join(rows) + "\n")


def test_onboard_checkpoint_declares_its_alignment(tree, tmp_path):
    cfg = tiny_config(tree, tmp_path, "data.protocol=onboard", "data.augment.rotate_satellite=false",
                      "data.query_ground_size_m=80", "optim.batch_size=4", "optim.max_steps=1")
    RetrievalTrainer(cfg).fit()
    prep = read_checkpoint_meta(tmp_path / "final.safetensors").preprocessing
    assert prep["alignment"] == "north_up" and prep["ground_size_m"] == 80.0
    with pytest.raises(ValueError, match="rotate_satellite"):
        RetrievalTrainer(tiny_config(tree, tmp_path, "data.protocol=onboard", "optim.batch_size=4"))


def test_onboard_protocol_without_a_pose_file_names_it(tmp_path: Path):
    with pytest.raises(MissingPoseError, match=str(tmp_path / POSES_FILE).replace("/", ".")):
        OnboardAlignment(tmp_path, 80.0, 32)
