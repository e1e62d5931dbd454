"""University-1652 reader (also reads the synthetic tree from ``edge_geoloc.sim.write_university_tree``).

Layout (class folders named by building id)::

    ROOT/train/drone/<id>/image-01.jpeg ...      ROOT/train/satellite/<id>/<id>.jpg
    ROOT/test/query_drone/<id>/...   ROOT/test/gallery_satellite/<id>/...   (drone -> satellite)
    ROOT/test/query_satellite/<id>/...   ROOT/test/gallery_drone/<id>/...   (satellite -> drone)

Training pairs every drone image with the satellite image of its building (Sample4Geo). Labels are indices
into the sorted union of folder names, so query and gallery share them; gallery folders with no query
folder are distractors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_geoloc.data.images import list_images

log = logging.getLogger(__name__)

DIRECTIONS = {
    "drone_to_satellite": ("query_drone", "gallery_satellite"),
    "satellite_to_drone": ("query_satellite", "gallery_drone"),
}


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder is missing or a class folder is empty."""


@dataclass(frozen=True)
class LabeledImages:
    """Image paths with integer location labels (``class_names[label]`` is the folder name)."""

    paths: tuple[Path, ...]
    labels: np.ndarray  # (N,) int64
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class TrainPair:
    drone: Path
    satellite: Path
    label: int


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetLayoutError(f"{what} folder not found: {path} (see docs/retrieval.md for the expected layout)")
    return path


def class_folders(folder: Path, what: str) -> dict[str, list[Path]]:
    """``{class name: sorted image paths}``; an empty class folder is an error naming it."""
    require_dir(folder, what)
    classes: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = list_images(sub)
        if not images:
            raise DatasetLayoutError(f"class folder {sub} has no images; remove it or add its images")
        classes[sub.name] = images
    if not classes:
        raise DatasetLayoutError(f"{what} folder {folder} has no class sub-folders")
    return classes


def labeled(classes: dict[str, list[Path]], names: list[str]) -> LabeledImages:
    index = {n: i for i, n in enumerate(names)}
    paths = [p for name in classes for p in classes[name]]
    labels = np.array([index[name] for name in classes for _ in classes[name]], dtype=np.int64)
    return LabeledImages(tuple(paths), labels, tuple(names))


class CrossViewFolders:
    """Drone/satellite class folders for training and query/gallery folders for testing."""

    def __init__(self, train_dir: Path, test_dir: Path, name: str) -> None:
        self.train_dir, self.test_dir, self.name = Path(train_dir), Path(test_dir), name

    def train_pairs(self) -> list[TrainPair]:
        """Every drone image with its location's satellite image (round-robin if there are several)."""
        drone = class_folders(self.train_dir / "drone", f"{self.name} train/drone")
        sat = class_folders(self.train_dir / "satellite", f"{self.name} train/satellite")
        missing = sorted(set(drone) - set(sat))
        if missing:
            raise DatasetLayoutError(f"{self.name}: drone classes without a satellite image: {missing[:5]} "
                                     f"({len(missing)} in all) under {self.train_dir / 'satellite'}")
        names = sorted(drone)
        return [TrainPair(path, sat[name][j % len(sat[name])], label)
                for label, name in enumerate(names) for j, path in enumerate(drone[name])]

    def test_split(self, direction: str = "drone_to_satellite") -> tuple[LabeledImages, LabeledImages]:
        """(query, gallery) for ``drone_to_satellite`` or ``satellite_to_drone``, with shared labels."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {sorted(DIRECTIONS)}, got {direction!r}")
        q_name, g_name = DIRECTIONS[direction]
        query = class_folders(self.test_dir / q_name, f"{self.name} {q_name}")
        gallery = class_folders(self.test_dir / g_name, f"{self.name} {g_name}")
        names = sorted(set(query) | set(gallery))
        unmatched = sorted(set(query) - set(gallery))
        if unmatched:
            log.warning("%s %s: %d query classes have no gallery images (they count as misses)",
                        self.name, direction, len(unmatched))
        return labeled(query, names), labeled(gallery, names)


class University1652(CrossViewFolders):
    """University-1652 (or the synthetic tree in the same layout) at ``root``."""

    def __init__(self, root: str | Path) -> None:
        root = require_dir(Path(root), "University-1652 root")
        super().__init__(root / "train", root / "test", "University-1652")
