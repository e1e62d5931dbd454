"""KITTI with the Shi & Li (CVPR 2022, "HighlyAccurate") satellite images, for metric localization.

Layout::

    ROOT/raw_data/<date>/<drive>/image_02/data/<frame>.png     left colour camera
    ROOT/raw_data/<date>/<drive>/oxts/data/<frame>.txt         lat lon alt roll pitch yaw ...
    ROOT/satmap/<date>/<drive>/<frame>.png                     512x512 north-up, centred on the GPS fix
    ROOT/train_files.txt, test1_files.txt (same area), test2_files.txt (cross area)   (or under ROOT/dataLoader/)

Lines are ``<date>/<drive>/<frame>.png`` (train) or that plus ``shift_x shift_y theta`` in [-1, 1] (tests).
Satellite images are 0.1958 m/px (zoom 18, scale 2, at KITTI's latitude). The ground-truth pixel is the
image centre moved by the camera-to-GPS offset; the aerial patch is then translated so that the truth lies at
``centre + shift`` with shifts up to +-``shift_range_m`` along the vehicle's lateral (x) and longitudinal (y)
axes: fixed by the file for tests, random per access for training. The heading (clockwise from north) comes
from oxts ``yaw`` (ENU, from east, counter-clockwise): ``heading = pi/2 - yaw``; ``theta`` of the test files
is kept as the orientation-prior noise (``rotation_range_deg * theta``) in :attr:`prior_noise_rad`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from edge_geoloc.data.images import read_image_rgb

log = logging.getLogger(__name__)

KITTI_M_PER_PX = 0.1958  # 156543.03392 * cos(49.015 deg) / 2**18 / 2
SAT_PX = 512
SPLIT_FILES = {"train": "train_files.txt", "test1": "test1_files.txt", "test2": "test2_files.txt"}
CAMERA_GPS_OFFSET_M = (1.08, 0.26)  # (forward, left) of the camera from the GPS antenna, as in HighlyAccurate


class KittiError(ValueError):
    """The KITTI tree is missing files or a split line is malformed."""


@dataclass(frozen=True)
class KittiSample:
    image: Path
    satellite: Path
    oxts: Path
    shift_x: float | None = None  # lateral, in [-1, 1] (tests)
    shift_y: float | None = None  # longitudinal, in [-1, 1]
    theta: float | None = None


def _split_file(root: Path, split: str) -> Path:
    if split not in SPLIT_FILES:
        raise KittiError(f"KITTI split must be one of {list(SPLIT_FILES)}, got {split!r}")
    for folder in (root, root / "dataLoader"):
        if (folder / SPLIT_FILES[split]).is_file():
            return folder / SPLIT_FILES[split]
    raise KittiError(f"{SPLIT_FILES[split]} not found in {root} or {root}/dataLoader")


def _parse_line(root: Path, line: str) -> KittiSample:
    parts = line.split()
    if len(parts) not in (1, 4):
        raise KittiError(f"expected 'path' or 'path shift_x shift_y theta', got {len(parts)} fields")
    rel = Path(parts[0])
    if len(rel.parts) < 3:
        raise KittiError(f"path {parts[0]!r} is not <date>/<drive>/<frame>.png")
    date, drive, frame = rel.parts[-3], rel.parts[-2], rel.stem
    raw = root / "raw_data" / date / drive
    shifts = [float(v) for v in parts[1:]] or [None, None, None]
    return KittiSample(raw / "image_02" / "data" / f"{frame}.png", root / "satmap" / date / drive / f"{frame}.png",
                       raw / "oxts" / "data" / f"{frame}.txt", *shifts)


def read_kitti(root: str | Path, split: str = "train") -> list[KittiSample]:
    """Samples of one split; malformed lines are logged and counted."""
    root = Path(root)
    path = _split_file(root, split)
    samples, rejected = [], 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            samples.append(_parse_line(root, line))
        except (KittiError, ValueError) as err:
            rejected += 1
            log.warning("%s:%d rejected: %s", path, number, err)
    if rejected:
        log.warning("KITTI %s: %d line(s) rejected", split, rejected)
    return samples


def read_heading_rad(oxts_path: Path) -> float:
    """Heading clockwise from north from an oxts line (``yaw`` is field 6, ENU from east)."""
    fields = oxts_path.read_text(encoding="utf-8").split()
    if len(fields) < 6:
        raise KittiError(f"{oxts_path}: expected at least 6 oxts fields, got {len(fields)}")
    return math.remainder(math.pi / 2 - float(fields[5]), 2 * math.pi)


def camera_pixel(heading_rad: float, size_px: int = SAT_PX, m_per_px: float = KITTI_M_PER_PX) -> np.ndarray:
    """(row, col) of the camera in a north-up satellite image centred on the GPS fix."""
    fwd, left = CAMERA_GPS_OFFSET_M
    east = fwd * math.sin(heading_rad) - left * math.cos(heading_rad)
    north = fwd * math.cos(heading_rad) + left * math.sin(heading_rad)
    return np.array([size_px / 2 - north / m_per_px, size_px / 2 + east / m_per_px])


class KittiDataset(torch.utils.data.Dataset):
    """KITTI samples with the same item layout as :class:`edge_geoloc.data.pairs.PairDataset`."""

    def __init__(self, root: str | Path, split: str, query_size: tuple[int, int], aerial_size: int,
                 mean: tuple[float, ...], std: tuple[float, ...], shift_range_m: float = 20.0,
                 rotation_range_deg: float = 10.0, seed: int = 17) -> None:
        self.samples = read_kitti(root, split)
        if not self.samples:
            raise KittiError(f"KITTI {split}: no samples")
        self.train = split == "train"
        self.query_size, self.aerial_size = tuple(query_size), int(aerial_size)
        self.mean = np.asarray(mean, np.float32) * 255.0
        self.std = np.asarray(std, np.float32) * 255.0
        self.shift_range_m, self.rotation_range_deg = shift_range_m, rotation_range_deg
        self._rng = np.random.default_rng(seed)
        self.read_ground_truth = True

    def __len__(self) -> int:
        return len(self.samples)

    def _shift(self, s: KittiSample) -> tuple[float, float]:
        if s.shift_x is None or self.train:
            return tuple(self._rng.uniform(-1, 1, 2))
        return s.shift_x, s.shift_y

    def _tensor(self, image: np.ndarray, size_hw: tuple[int, int]) -> torch.Tensor:
        image = cv2.resize(image, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(((image.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1).copy())

    def target(self, i: int, heading: float) -> tuple[np.ndarray, np.ndarray]:
        """(gt pixel after the shift, translation applied to the satellite image) at 512 px."""
        s = self.samples[i]
        sx, sy = self._shift(s)
        lateral, longitudinal = sx * self.shift_range_m, sy * self.shift_range_m
        east = longitudinal * math.sin(heading) + lateral * math.cos(heading)
        north = longitudinal * math.cos(heading) - lateral * math.sin(heading)
        move = np.array([-north, east]) / KITTI_M_PER_PX  # (d_row, d_col)
        return camera_pixel(heading) + move, move

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.samples[i]
        heading = read_heading_rad(s.oxts)
        rowcol, move = self.target(i, heading)
        sat = read_image_rgb(s.satellite)
        matrix = np.float32([[1, 0, move[1]], [0, 1, move[0]]]) * np.float32([[1, 1, sat.shape[1] / SAT_PX]] * 2)
        sat = cv2.warpAffine(sat, matrix, (sat.shape[1], sat.shape[0]), borderMode=cv2.BORDER_CONSTANT)
        scale = self.aerial_size / SAT_PX
        return {"query": self._tensor(read_image_rgb(s.image), self.query_size),
                "aerial": self._tensor(sat, (self.aerial_size, self.aerial_size)), "heading_rad": heading,
                "index": i, "rowcol": torch.tensor(rowcol * scale, dtype=torch.float32)}

    def ground_truth(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Test splits only (fixed shifts): rowcol at the model's aerial size, m/px and headings."""
        if self.train:
            raise KittiError("ground_truth() is defined for test1/test2 (fixed shifts), not for train")
        headings = np.array([read_heading_rad(s.oxts) for s in self.samples])
        scale = self.aerial_size / SAT_PX
        rowcol = np.array([self.target(i, h)[0] for i, h in enumerate(headings)]) * scale
        return rowcol, np.full(len(self.samples), KITTI_M_PER_PX / scale), headings
