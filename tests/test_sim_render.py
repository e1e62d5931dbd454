"""Rendering geometry: projected building corners, nadir footprint, heading conventions, ground views."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from edge_geoloc.sim import (
    Area,
    DronePose,
    PinholeCamera,
    Scene,
    generate_area,
    get_style,
    project_points,
    render_drone_view,
    render_ground_panorama,
    render_ground_pinhole,
)
from edge_geoloc.sim.layout import BUILDING, BUILDING_COLUMNS, GROUND

ROOF = (220, 20, 20)
FACADE = (20, 20, 230)
BOX = dict(east=10.0, north=30.0, half=10.0, height=15.0)


def _box_area() -> Area:
    """A flat grey 200 m area with one 20 x 20 x 15 m box: red roof, blue facades (sun straight above)."""
    gsd, size = 0.5, 200.0
    n = int(size / gsd)
    height = np.zeros((n, n), np.float32)
    classes = np.full((n, n), GROUND, np.uint8)
    ids = np.zeros((n, n), np.int32)
    r0, r1 = int((size / 2 - BOX["north"] - BOX["half"]) / gsd), int((size / 2 - BOX["north"] + BOX["half"]) / gsd)
    c0, c1 = int((size / 2 + BOX["east"] - BOX["half"]) / gsd), int((size / 2 + BOX["east"] + BOX["half"]) / gsd)
    height[r0:r1, c0:c1] = BOX["height"]
    classes[r0:r1, c0:c1] = BUILDING
    ids[r0:r1, c0:c1] = 1
    row = dict(east_m=BOX["east"], north_m=BOX["north"], length_m=20, width_m=20, axis_rad=0, height_m=15,
               ridge_m=15, roof_r=ROOF[0], roof_g=ROOF[1], roof_b=ROOF[2], facade_r=FACADE[0], facade_g=FACADE[1],
               facade_b=FACADE[2])
    buildings = np.array([[row[c] for c in BUILDING_COLUMNS]], np.float32)
    ortho = np.full((n, n, 3), 128, np.uint8)
    ortho[r0:r1, c0:c1] = ROOF
    style = get_style("source")
    scene = Scene(height, classes, ids, buildings, gsd, size)
    return Area(ortho, scene, style, 0, size, gsd, 52.0, 4.36, 0.0, math.pi / 2)


def _box_corners(z: float) -> np.ndarray:
    e, n, h = BOX["east"], BOX["north"], BOX["half"]
    return np.array([[e - h, n + h, z], [e + h, n + h, z], [e + h, n - h, z], [e - h, n - h, z]])


def _polygon_mask(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    pts = np.round((np.stack([cols, rows], -1) - 0.5) * 16).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1, cv2.LINE_8, 4)
    return mask.astype(bool)


def _facade_mask(image: np.ndarray) -> np.ndarray:
    """Blue facade pixels (lit or window); excludes the pale sky."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return (b > r + 30) & (r < 100) & (g < 110)


def _roof_mask(image: np.ndarray) -> np.ndarray:
    """Red roof pixels, including edge pixels whose colour is blended with the grey ground."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return (r > g + 40) & (r > b + 40)


@pytest.mark.parametrize("heading_deg,pitch_deg", [(0.0, 45.0), (35.0, 60.0), (200.0, 90.0)])
def test_roof_lands_on_projected_corners(heading_deg, pitch_deg):
    area = _box_area()
    camera = PinholeCamera(320, 240, 70.0)
    heading, pitch = math.radians(heading_deg), math.radians(pitch_deg)
    back = 60.0 / math.tan(pitch) if pitch_deg < 90 else 0.0
    pose = DronePose(BOX["east"] - back * math.sin(heading), BOX["north"] - back * math.cos(heading), 75.0,
                     heading, pitch)
    image = render_drone_view(area, pose, camera)
    rows, cols, depth = project_points(_box_corners(BOX["height"]), pose.position,
                                       pose.rotation_world_from_camera(), camera)
    assert np.all(depth > 0)
    expected = _polygon_mask(rows, cols, image.shape[:2])
    roof = _roof_mask(image)
    iou = (roof & expected).sum() / (roof | expected).sum()
    assert iou > 0.93, iou
    for r, c in zip(rows, cols, strict=True):  # every projected corner has roof pixels right next to it
        near = roof[max(0, int(r) - 2):int(r) + 3, max(0, int(c) - 2):int(c) + 3]
        assert near.any(), (r, c)


def test_oblique_view_shows_facade_where_walls_project():
    area = _box_area()
    camera = PinholeCamera(320, 240, 70.0)
    pose = DronePose(BOX["east"], BOX["north"] - 80.0, 60.0, 0.0, math.radians(35.0))
    image = render_drone_view(area, pose, camera)
    south_wall = np.concatenate([_box_corners(0.0)[[3, 2]], _box_corners(BOX["height"])[[2, 3]]])
    rows, cols, _ = project_points(south_wall, pose.position, pose.rotation_world_from_camera(), camera)
    expected = _polygon_mask(rows, cols, image.shape[:2])
    facade = _facade_mask(image)
    iou = (facade & expected).sum() / (facade | expected).sum()
    assert iou > 0.85, iou
    # parallax: the roof is displaced upwards in the image relative to the footprint (not a flat homography)
    top_rows, _, _ = project_points(_box_corners(BOX["height"]), pose.position, pose.rotation_world_from_camera(),
                                    camera)
    base_rows, _, _ = project_points(_box_corners(0.0), pose.position, pose.rotation_world_from_camera(), camera)
    assert np.all(top_rows < base_rows - 10)


@pytest.fixture(scope="module")
def flat_area():
    area = generate_area("target", seed=5, size_m=400.0, gsd_m=0.5)
    area.scene.height_m[:] = 0.0  # no parallax: a nadir view must then be an exact ortho crop
    return area


@pytest.mark.parametrize("altitude", [60.0, 150.0])
def test_nadir_view_covers_expected_metres(flat_area, altitude):
    camera = PinholeCamera(128, 128, 60.0)
    image = render_drone_view(flat_area, DronePose(12.0, -7.0, altitude, 0.0), camera).astype(float)
    width_m = 2 * altitude * math.tan(math.radians(30.0))
    errors = {}
    for factor in (0.9, 1.0, 1.1):
        patch, _ = flat_area.aerial_patch(12.0, -7.0, width_m * factor, 128)
        errors[factor] = np.abs(patch.astype(float) - image).mean()
    assert errors[1.0] < 6.0
    assert errors[1.0] < 0.6 * min(errors[0.9], errors[1.1])


def test_image_up_points_along_heading(flat_area):
    camera = PinholeCamera(96, 96, 50.0)
    north_up = render_drone_view(flat_area, DronePose(0.0, 0.0, 80.0, 0.0), camera).astype(float)
    east_up = render_drone_view(flat_area, DronePose(0.0, 0.0, 80.0, math.pi / 2), camera).astype(float)
    assert np.abs(np.rot90(north_up, 1) - east_up).mean() < 3.0
    assert np.abs(np.rot90(north_up, -1) - east_up).mean() > 10.0


def test_photometric_changes_are_random_but_seeded(flat_area):
    camera, pose = PinholeCamera(64, 64, 60.0), DronePose(0.0, 0.0, 80.0, 0.0)
    clean = render_drone_view(flat_area, pose, camera)
    a = render_drone_view(flat_area, pose, camera, np.random.default_rng(1))
    b = render_drone_view(flat_area, pose, camera, np.random.default_rng(1))
    assert np.array_equal(a, b) and not np.array_equal(a, clean)


def test_panorama_heading_and_building_elevation():
    area = _box_area()
    width = 720
    pano0 = render_ground_panorama(area, BOX["east"], 0.0, 0.0, width_px=width, height_px=360)
    pano90 = render_ground_panorama(area, BOX["east"], 0.0, math.pi / 2, width_px=width, height_px=360)
    assert np.abs(np.roll(pano0, -width // 4, axis=1).astype(int) - pano90.astype(int)).mean() < 1.0
    # the box is due north, 20 m away: the centre column of pano0 shows its facade up to atan(13.3 / 20)
    facade = _facade_mask(pano0)
    column = facade[:, width // 2]
    top_row = np.argmax(column)
    expected = (0.5 - math.atan((BOX["height"] - 1.7) / 20.0) / math.pi) * 360
    assert column.any() and abs(top_row - expected) < 2.5
    south = facade[:, 0]  # column 0 looks south: no building there
    assert not south.any()


def test_ground_pinhole_matches_panorama_centre():
    area = _box_area()
    camera = PinholeCamera(64, 64, 90.0)
    view = render_ground_pinhole(area, BOX["east"], 0.0, 0.0, camera)
    facade = _facade_mask(view)
    rows = np.nonzero(facade[:, 32])[0]
    f = camera.focal_px
    top = 32 - f * (BOX["height"] - 1.7) / 20.0
    assert abs(rows.min() - top) < 1.5
    horizon = 32 - f * (0.0 - 1.7) / 20.0  # wall base
    assert abs(rows.max() + 1 - horizon) < 1.5


def test_bad_camera_parameters_name_the_parameter():
    with pytest.raises(ValueError, match="alt_agl_m"):
        DronePose(0.0, 0.0, -5.0, 0.0)
    with pytest.raises(ValueError, match="hfov_deg"):
        PinholeCamera(64, 64, 185.0)
    with pytest.raises(ValueError, match="pitch_rad"):
        DronePose(0.0, 0.0, 50.0, 0.0, pitch_rad=-0.2)
    with pytest.raises(ValueError, match="height_m"):
        render_ground_panorama(_box_area(), 0.0, 0.0, 0.0, height_m=-1.0)


def test_low_drone_sees_facade_above_its_horizon():
    area = _box_area()
    camera = PinholeCamera(96, 96, 60.0)
    pitch = math.radians(3.0)
    pose = DronePose(BOX["east"], BOX["north"] - BOX["half"] - 30.0, 8.0, 0.0, pitch)  # 30 m from the south wall
    facade = _facade_mask(render_drone_view(area, pose, camera))
    f = camera.focal_px
    horizon_row = 48 - f * math.tan(pitch)
    top_row = 48 - f * math.tan(math.atan((BOX["height"] - 8.0) / 30.0) + pitch)  # rising rays hit the wall top
    column = facade[:, 48]
    assert column[: int(horizon_row) - 2].any()  # the wall continues above the horizon
    assert abs(np.argmax(column) - top_row) < 2.0
