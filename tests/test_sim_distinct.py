"""The synthetic world is learnable: places are distinctive, and a drone view (with parallax and photometric
changes) is closer to its own satellite tile than to any other, even with a crude hand-made descriptor."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from edge_geoloc.sim import DronePose, PinholeCamera, generate_area, render_drone_view


def _descriptor(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    small = cv2.resize(cv2.GaussianBlur(grey, (0, 0), 1.0), (24, 24), interpolation=cv2.INTER_AREA).ravel()
    small -= small.mean()
    return small / (np.linalg.norm(small) + 1e-6)


@pytest.mark.parametrize("style", ["source", "target"])
def test_drone_views_retrieve_their_own_tile(style):
    area = generate_area(style, seed=7, size_m=360.0, gsd_m=0.5)
    rng = np.random.default_rng(0)
    camera = PinholeCamera(96, 96, 60.0)
    altitude = 110.0
    width_m = 2 * altitude * math.tan(math.radians(30.0))
    grid = np.array([(e, n) for e in (-75.0, -25.0, 25.0, 75.0) for n in (-75.0, -25.0, 25.0, 75.0)])
    drone = np.stack([_descriptor(render_drone_view(area, DronePose(e, n, altitude, 0.0), camera, rng))
                      for e, n in grid])
    tiles = np.stack([_descriptor(area.aerial_patch(e, n, width_m, 96)[0]) for e, n in grid])
    similarity = drone @ tiles.T
    recall_at_1 = np.mean(np.argmax(similarity, axis=1) == np.arange(len(grid)))
    assert recall_at_1 >= 0.8, recall_at_1
    # places do not repeat: two different tiles are much less alike than a view and its own tile
    tile_sim = tiles @ tiles.T
    off_diagonal = tile_sim[~np.eye(len(grid), dtype=bool)]
    assert off_diagonal.max() < np.median(np.diag(similarity))
