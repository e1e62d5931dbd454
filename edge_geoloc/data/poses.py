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

import csv
import math
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np

from edge_geoloc.geo.view_alignment import align_query_north_up, align_query_scale

POSES_FILE = "poses.csv"
PROTOCOLS = ("paper", "onboard")


class MissingPoseError(ValueError):
    """A drone view lacks the pose its protocol needs."""


@dataclass(frozen=True)
class ViewPose:
    east_m: float
    north_m: float
    alt_agl_m: float
    heading_rad: float
    pitch_rad: float
    measured_heading_rad: float
    measured_alt_agl_m: float
    hfov_deg: float


POSE_COLUMNS = ("path", *(f.name for f in fields(ViewPose)))


def write_view_poses(root: str | Path, poses: dict[str, ViewPose]) -> Path:
    """Write ``root/poses.csv`` (keys: paths relative to ``root``)."""
    path = Path(root) / POSES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(POSE_COLUMNS)
        for rel, pose in sorted(poses.items()):
            writer.writerow([rel, *(f"{v:.6f}" for v in astuple(pose))])
    return path


def read_view_poses(root: str | Path) -> dict[str, ViewPose]:
    """``{relative path: ViewPose}`` from ``root/poses.csv``; a missing file or column is a clear error."""
    path = Path(root) / POSES_FILE
    if not path.is_file():
        raise MissingPoseError(f"{path} not found: the on-board protocol needs the pose (heading, height above "
                               "ground, FOV) of every drone view; write the tree with edge_geoloc.sim or use "
                               "data.protocol=paper")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in POSE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise MissingPoseError(f"{path} lacks column(s) {missing}; expected {list(POSE_COLUMNS)}")
        return {row["path"]: ViewPose(*(float(row[c]) for c in POSE_COLUMNS[1:])) for row in reader}


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
