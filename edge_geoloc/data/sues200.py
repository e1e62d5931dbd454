"""SUES-200 reader: one model per flight height (150/200/250/300 m), 120 train / 80 test locations.

Expects the split layout made by the benchmark's split script (or :func:`split_sues200`)::

    ROOT/Training/<h>/{drone,satellite}/<id>/...
    ROOT/Testing/<h>/{query_drone,gallery_satellite,query_satellite,gallery_drone}/<id>/...

The test galleries hold all 200 locations, so 120 of them are distractors.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from edge_geoloc.data.images import list_images
from edge_geoloc.data.university import CrossViewFolders, DatasetLayoutError, require_dir

ALTITUDES_M = (150, 200, 250, 300)


class SUES200(CrossViewFolders):
    """SUES-200 at one altitude."""

    def __init__(self, root: str | Path, altitude_m: int) -> None:
        if altitude_m not in ALTITUDES_M:
            raise ValueError(f"SUES-200 altitude must be one of {ALTITUDES_M}, got {altitude_m}")
        root = require_dir(Path(root), "SUES-200 root")
        super().__init__(root / "Training" / str(altitude_m), root / "Testing" / str(altitude_m), "SUES-200")
        self.altitude_m = altitude_m


def split_sues200(raw_root: str | Path, out_root: str | Path, train_ids: Iterable[str]) -> Path:
    """Build the split layout from the raw one (``drone_view_512/<id>/<h>/``, ``satellite-view/<id>/``).

    ``train_ids`` are the 120 training location ids of the benchmark; all others are test locations.
    Files are copied; galleries hold every location.
    """
    raw, out = Path(raw_root), Path(out_root)
    drone_root = require_dir(raw / "drone_view_512", "SUES-200 drone_view_512")
    sat_root = require_dir(raw / "satellite-view", "SUES-200 satellite-view")
    ids = sorted(p.name for p in drone_root.iterdir() if p.is_dir())
    train = {str(i) for i in train_ids}
    if not train <= set(ids):
        raise DatasetLayoutError(f"train ids not in {drone_root}: {sorted(train - set(ids))[:5]}")
    for h in ALTITUDES_M:
        for loc in ids:
            drone_dir, sat_dir = drone_root / loc / str(h), sat_root / loc
            targets = _targets(h, loc in train)
            _copy(list_images(require_dir(drone_dir, "SUES-200 drone")), [out / t / loc for t in targets["drone"]])
            _copy(list_images(require_dir(sat_dir, "SUES-200 satellite")), [out / t / loc for t in targets["sat"]])
    return out


def _targets(h: int, is_train: bool) -> dict[str, list[str]]:
    """Train locations: training folders + galleries (as distractors); test locations: queries + galleries."""
    first = ("Training/{h}/drone", "Training/{h}/satellite") if is_train else \
        ("Testing/{h}/query_drone", "Testing/{h}/query_satellite")
    return {"drone": [first[0].format(h=h), f"Testing/{h}/gallery_drone"],
            "sat": [first[1].format(h=h), f"Testing/{h}/gallery_satellite"]}


def _copy(files: list[Path], folders: list[Path]) -> None:
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, folder / f.name)
