"""VIGOR (Zhu et al. 2021) for metric localization, with the corrected labels (SliceMatch / CCVPE "splits_new").

Layout::

    ROOT/<City>/panorama/<panoid>,<lat>,<lon>,.jpg       2048x1024 equirectangular, north-aligned
    ROOT/<City>/satellite/satellite_<lat>_<lon>.png       640x640, Web-Mercator zoom 20
    ROOT/splits__corrected (or splits_new, splits)/<City>/{same_area_balanced_train.txt,
        same_area_balanced_test.txt, pano_label_balanced.txt}

A label line is ``pano sat0 dr0 dc0 sat1 dr1 dc1 sat2 dr2 dc2 sat3 dr3 dc3``; ``sat0`` is the positive (the
panorama lies in its central quarter) and the ground-truth pixel in the raw 640 px tile is
``(row, col) = (320 + dr, 320 - dc)``. Metres per pixel are per city (Mercator zoom 20 at the city's
latitude). Splits: same-area = the ``same_area_balanced_{train,test}`` files of all four cities; cross-area =
``pano_label_balanced`` of NewYork + Seattle (train) and SanFrancisco + Chicago (test). Only positives are
used. Unknown orientation: the panorama is rolled by a heading drawn per sample from a seeded generator
(fixed per index for test sets, so runs compare).
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
from pyproj import Transformer

from edge_geoloc.data.images import read_image_rgb
from edge_geoloc.geo import PatchGeoref

log = logging.getLogger(__name__)

RAW_SAT_PX = 640
CITY_M_PER_PX = {"NewYork": 0.113248, "Seattle": 0.100817, "SanFrancisco": 0.118141, "Chicago": 0.111262}
CROSS_AREA = {"train": ("NewYork", "Seattle"), "test": ("SanFrancisco", "Chicago")}
SPLIT_DIRS = ("splits__corrected", "splits_new", "splits")
WEB_MERCATOR_M_PER_PX_Z20 = 156543.03392804097 / 2**20


class VigorError(ValueError):
    """The VIGOR tree is missing files or has malformed label lines."""


@dataclass(frozen=True)
class VigorSample:
    city: str
    panorama: Path
    satellite: Path
    gt_row_raw: float  # pixels of the raw 640 px tile
    gt_col_raw: float
    sat_lat_deg: float
    sat_lon_deg: float


def satellite_latlon(name: str) -> tuple[float, float]:
    """Centre lat/lon of ``satellite_<lat>_<lon>.png``."""
    stem = Path(name).stem
    parts = stem.split("_")
    if len(parts) != 3 or parts[0] != "satellite":
        raise VigorError(f"satellite file name {name!r} is not satellite_<lat>_<lon>.png")
    return float(parts[1]), float(parts[2])


def satellite_georef(lat_deg: float, lon_deg: float, size_px: int = RAW_SAT_PX) -> PatchGeoref:
    """North-up Web-Mercator (EPSG:3857) geo-reference of a zoom-20 tile of ``size_px`` centred on lat/lon."""
    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(lon_deg, lat_deg)
    res = WEB_MERCATOR_M_PER_PX_Z20 * RAW_SAT_PX / size_px
    half = 0.5 * size_px * res
    return PatchGeoref(3857, (res, 0.0, x - half, 0.0, -res, y + half), size_px, size_px)


def _split_dir(root: Path) -> Path:
    for name in SPLIT_DIRS:
        if (root / name).is_dir():
            return root / name
    raise VigorError(f"{root}: none of {SPLIT_DIRS} found; download the corrected labels (SliceMatch) into "
                     f"{root}/splits__corrected")


def _label_files(split: str, train: bool) -> tuple[tuple[str, ...], str]:
    if split == "cross_area":
        return CROSS_AREA["train" if train else "test"], "pano_label_balanced.txt"
    if split == "same_area":
        return tuple(CITY_M_PER_PX), f"same_area_balanced_{'train' if train else 'test'}.txt"
    raise VigorError(f"VIGOR split must be 'same_area' or 'cross_area', got {split!r}")


def _parse_line(root: Path, city: str, line: str) -> VigorSample:
    parts = line.split()
    if len(parts) != 13:
        raise VigorError(f"expected 13 fields (pano + 4 x (sat, dr, dc)), got {len(parts)}")
    lat, lon = satellite_latlon(parts[1])
    return VigorSample(city, root / city / "panorama" / parts[0], root / city / "satellite" / parts[1],
                       RAW_SAT_PX / 2 + float(parts[2]), RAW_SAT_PX / 2 - float(parts[3]), lat, lon)


def read_vigor(root: str | Path, split: str = "cross_area", train: bool = True) -> list[VigorSample]:
    """Positive samples of a VIGOR split (malformed lines are logged and counted)."""
    root = Path(root)
    split_dir = _split_dir(root)
    cities, filename = _label_files(split, train)
    samples, rejected = [], 0
    for city in cities:
        path = split_dir / city / filename
        if not path.is_file():
            raise VigorError(f"{path} not found; is {root} a complete VIGOR tree?")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                samples.append(_parse_line(root, city, line))
            except (VigorError, ValueError) as err:
                rejected += 1
                log.warning("%s:%d rejected: %s", path, number, err)
    if rejected:
        log.warning("VIGOR %s/%s: %d line(s) rejected", split, "train" if train else "test", rejected)
    return samples


class VigorDataset(torch.utils.data.Dataset):
    """VIGOR positives as localizer samples (same item layout as :class:`edge_geoloc.data.pairs.PairDataset`).

    ``known_orientation``: panoramas stay north-aligned (heading 0); otherwise each is rolled by a heading that
    is random per epoch (``train``) or fixed per index from ``seed`` (test).
    """

    def __init__(self, root: str | Path, split: str, train: bool, query_size: tuple[int, int], aerial_size: int,
                 mean: tuple[float, ...], std: tuple[float, ...], known_orientation: bool = True,
                 seed: int = 17) -> None:
        self.samples = read_vigor(root, split, train)
        if not self.samples:
            raise VigorError(f"no samples in VIGOR {split} {'train' if train else 'test'}")
        self.query_size, self.aerial_size, self.train = tuple(query_size), int(aerial_size), train
        self.mean = np.asarray(mean, np.float32) * 255.0
        self.std = np.asarray(std, np.float32) * 255.0
        self.known_orientation = known_orientation
        self.fixed_headings = np.random.default_rng(seed).uniform(0, 2 * math.pi, len(self.samples))
        self._rng = np.random.default_rng(seed + 1)
        self.read_ground_truth = True

    def __len__(self) -> int:
        return len(self.samples)

    def _tensor(self, image: np.ndarray, size_hw: tuple[int, int]) -> torch.Tensor:
        image = cv2.resize(image, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(((image.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1).copy())

    def heading(self, i: int) -> float:
        if self.known_orientation:
            return 0.0
        return float(self._rng.uniform(0, 2 * math.pi)) if self.train else float(self.fixed_headings[i])

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.samples[i]
        heading = self.heading(i)
        pano = read_image_rgb(s.panorama)
        pano = np.roll(pano, -int(round(heading / (2 * math.pi) * pano.shape[1])), axis=1)
        scale = self.aerial_size / RAW_SAT_PX
        return {"query": self._tensor(pano, self.query_size),
                "aerial": self._tensor(read_image_rgb(s.satellite), (self.aerial_size, self.aerial_size)),
                "heading_rad": heading, "index": i,
                "rowcol": torch.tensor([s.gt_row_raw * scale, s.gt_col_raw * scale], dtype=torch.float32)}

    def ground_truth(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rowcol (N, 2), m_per_px (N,), heading (N,)) at the model's aerial size."""
        scale = self.aerial_size / RAW_SAT_PX
        rowcol = np.array([(s.gt_row_raw * scale, s.gt_col_raw * scale) for s in self.samples])
        m_per_px = np.array([CITY_M_PER_PX[s.city] / scale for s in self.samples])
        heading = np.array([self.heading(i) if not self.train else np.nan for i in range(len(self.samples))])
        return rowcol, m_per_px, heading
