"""The per-view pose side file of a synthetic drone tree (``poses.csv`` at the tree root): written by the
simulator, read by the retrieval protocols in :mod:`edge_geoloc.data.poses`.

Columns: ``path`` (relative to the root, ``/``-separated), ``east_m``, ``north_m``, ``alt_agl_m``, ``heading_rad``,
``pitch_rad`` (truth) and ``measured_heading_rad``, ``measured_alt_agl_m``, ``hfov_deg`` (what the vehicle's sensors
report, with their noise).
"""

from __future__ import annotations

import csv
from dataclasses import astuple, dataclass, fields
from pathlib import Path

POSES_FILE = "poses.csv"


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
