"""Open a cross-view retrieval dataset by name: the one place a dataset name becomes a reader."""

from __future__ import annotations

from pathlib import Path

from edge_geoloc.data.sues200 import SUES200
from edge_geoloc.data.university import CrossViewFolders, University1652

CROSS_VIEW_DATASETS = ("university1652", "sues200", "synthetic")  # "synthetic": University-1652 layout


def open_cross_view_folders(dataset: str, root: str | Path, altitude_m: int = 150) -> CrossViewFolders:
    """The reader of ``dataset`` at ``root`` (``altitude_m``: SUES-200's flight height)."""
    if dataset in ("university1652", "synthetic"):
        return University1652(root)
    if dataset == "sues200":
        return SUES200(root, altitude_m)
    raise ValueError(f"data.dataset must be one of {', '.join(CROSS_VIEW_DATASETS)}, got {dataset!r}")
