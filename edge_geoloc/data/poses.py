"""Per-view poses of a drone dataset (``poses.csv`` at the tree root) and the on-board protocol's alignment.

Two retrieval protocols are kept apart:

- **paper** (University-1652 / SUES-200): oblique views at unknown heading, used as they are; a pose side file
  is optional (the synthetic tree writes one so alignment can be studied).
- **onboard** (what the runtime does): every drone view is rotated north-up by the *measured* heading and cut to
  ``ground_size_m`` of ground around the nadir point from the *measured* height above ground and the camera's
  horizontal FOV, with the same functions the runtime applies (:mod:`edge_geoloc.geo.view_alignment`). The
  gallery holds north-up map tiles. A view without a pose stops with an error naming the file.

``poses.csv`` columns: ``path`` (relative to the root, ``/``-separated), ``east_m``, ``north_m``, ``alt_agl_m``,
``heading_rad``, ``pitch_rad`` (truth) and ``measured_heading_rad``, ``measured_alt_agl_m``, ``hfov_deg`` (what the
vehicle's sensors report, with their noise).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edge_geoloc.geo.view_alignment import align_query_north_up, align_query_scale
from edge_geoloc.sim.poses import (  # noqa: F401  (the pose file's format is the simulator's; re-exported for readers)
    POSE_COLUMNS,
    POSES_FILE,
    MissingPoseError,
    ViewPose,
    read_view_poses,
    write_view_poses,
)

PROTOCOLS = ("paper", "onboard")


class OnboardAlignment:
    """Prepare a drone view as the runtime does: north-up by the measured heading, then ``ground_size_m`` of
    ground around the image centre at ``out_px`` (``align_query_north_up`` + ``align_query_scale``)."""

    def __init__(self, root: str | Path, ground_size_m: float, out_px: int) -> None:
        if not ground_size_m > 0 or out_px < 8:
            raise ValueError(f"on-board alignment needs ground_size_m > 0 and out_px >= 8, got {ground_size_m}, "
                             f"{out_px}")
        self.root, self.ground_size_m, self.out_px = Path(root), float(ground_size_m), int(out_px)
        self.poses = read_view_poses(self.root)

    def pose_of(self, path: Path) -> ViewPose:
        try:
            rel = Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            rel = Path(path).as_posix()
        pose = self.poses.get(rel)
        if pose is None or not (math.isfinite(pose.measured_heading_rad) and pose.measured_alt_agl_m > 0):
            raise MissingPoseError(f"{path}: no usable pose in {self.root / POSES_FILE}; the on-board protocol "
                                   "needs the measured heading and height above ground of every drone view")
        return pose

    def __call__(self, path: Path, image: np.ndarray) -> np.ndarray:
        pose = self.pose_of(path)
        north_up = align_query_north_up(image, pose.measured_heading_rad, "drone")
        return align_query_scale(north_up, pose.measured_alt_agl_m, pose.hfov_deg, self.ground_size_m, self.out_px)

    def check_all(self, paths: list[Path]) -> None:
        """Fail before training if any view lacks a pose (the error names the first one)."""
        for path in paths:
            self.pose_of(path)
