"""INT8 calibration inputs: images from a folder (field logs or synthetic frames), batched for a calibrator.

- Retrieval models read any folder of images (searched recursively, a deterministic subset of
  ``max_images``), preprocessed from the model's sidecar.
- Localizers need (query, aerial) pairs: a pairs dataset folder (``dataset.json`` + ``samples.jsonl``, the
  format field logs turn into, see docs/interfaces.md).
- ``"synthetic"`` instead of a folder draws frames from the built-in synthetic world.

Unreadable images are skipped, logged and counted; an empty or missing source is an error that says what to
pass instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from edge_geoloc.export.sidecar import input_preprocessing

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
Feeds = dict[str, np.ndarray]


class CalibrationError(ValueError):
    """The calibration source is missing, empty or of the wrong layout for this model."""


def list_images(folder: str | Path, max_images: int, seed: int = 0) -> list[Path]:
    """Up to ``max_images`` image files under ``folder``: a seeded random subset, returned in sorted order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"calibration folder not found: {folder} (pass a folder of images, or 'synthetic')")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise CalibrationError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}; put field-log frames or "
                               "`edge-geoloc sim` frames there, or pass 'synthetic'")
    if len(paths) > max_images:
        keep = np.random.default_rng(seed).choice(len(paths), size=max_images, replace=False)
        paths = [paths[i] for i in sorted(keep)]
    return paths


def read_rgb(path: Path) -> np.ndarray | None:
    """``(H, W, 3) uint8`` RGB, or ``None`` (logged) if the file cannot be decoded."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        logger.warning("skipping unreadable calibration image %s", path)
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def calibration_feeds(sidecar: Mapping[str, Any], source: str | Path, max_images: int,
                      seed: int = 0) -> tuple[list[Feeds], str]:
    """Batch-1 input dicts for calibration, and an id of the source (for cache keys and the sidecar)."""
    from edge_geoloc.export.samples import real_feeds

    if str(source) == "synthetic":
        return real_feeds(sidecar, max_images, seed=1000 + seed), f"synthetic:{max_images}:{seed}"
    source = Path(source)
    if sidecar["kind"] == "localizer":
        feeds, paths = _pair_feeds(sidecar, source, max_images, seed)
    else:
        feeds, paths = _image_feeds(sidecar, list_images(source, max_images, seed))
    if not feeds:
        raise CalibrationError(f"none of the {len(paths)} calibration images under {source} could be read")
    logger.info("calibration: %d of %d images from %s", len(feeds), len(paths), source)
    return feeds, source_id(paths)


def _image_feeds(sidecar: Mapping[str, Any], paths: Sequence[Path]) -> tuple[list[Feeds], list[Path]]:
    from edge_geoloc.runtime.backends.base import preprocess_image

    prep = input_preprocessing(sidecar, "image")
    images = (read_rgb(p) for p in paths)
    return [{"image": preprocess_image(im, prep)} for im in images if im is not None], list(paths)


def _pair_feeds(sidecar: Mapping[str, Any], folder: Path, max_images: int,
                seed: int) -> tuple[list[Feeds], list[Path]]:
    """(query, aerial) feeds from a pairs dataset folder."""
    from edge_geoloc.runtime.backends.base import preprocess_image

    samples = folder / "samples.jsonl"
    if not (folder / "dataset.json").is_file() or not samples.is_file():
        raise CalibrationError(f"{folder} is not a pairs dataset (dataset.json + samples.jsonl): a localizer "
                               "calibrates on (query, aerial) pairs; build one with `edge-geoloc dataset` from a "
                               "field log, or pass 'synthetic'")
    rows = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(rows) > max_images:
        rows = [rows[i] for i in sorted(np.random.default_rng(seed).choice(len(rows), max_images, replace=False))]
    feeds, paths = [], []
    prep = {name: input_preprocessing(sidecar, name) for name in ("query", "aerial")}
    for row in rows:
        images = {name: read_rgb(folder / row[name]) for name in ("query", "aerial")}
        paths += [folder / row["query"], folder / row["aerial"]]
        if all(im is not None for im in images.values()):
            feeds.append({n: preprocess_image(im, prep[n]) for n, im in images.items()})
    return feeds, paths


def source_id(paths: Sequence[Path]) -> str:
    """Short hash of the calibration file names and sizes: a changed set invalidates calibration caches."""
    digest = hashlib.sha256()
    for p in paths:
        digest.update(f"{p.name}:{p.stat().st_size if p.exists() else -1};".encode())
    return f"files:{len(paths)}:{digest.hexdigest()[:12]}"


def batch_feeds(feeds: Sequence[Feeds], batch_size: int, drop_last: bool = True) -> list[Feeds]:
    """Stack batch-1 feeds into ``batch_size`` batches; ``drop_last`` drops a short tail (a calibrator's
    batch size is fixed, and a padded tail would skew the activation ranges)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batches = []
    for start in range(0, len(feeds), batch_size):
        chunk = feeds[start:start + batch_size]
        if len(chunk) < batch_size and drop_last:
            break
        batches.append({name: np.concatenate([f[name] for f in chunk]) for name in chunk[0]})
    if not batches:
        raise CalibrationError(f"{len(feeds)} calibration samples are fewer than one batch of {batch_size}; "
                               "add images or lower the calibration batch size")
    return batches


class CalibrationStream:
    """Hands out fixed-size batches in TensorRT's ``get_batch(names)`` order, then ``None`` at the end."""

    def __init__(self, batches: Sequence[Feeds]) -> None:
        if not batches:
            raise CalibrationError("no calibration batches")
        self.batch_size = int(next(iter(batches[0].values())).shape[0])
        self._batches: Iterator[Feeds] = iter(batches)
        self.served = 0

    def next_batch(self, names: Sequence[str]) -> list[np.ndarray] | None:
        """The next batch's arrays in the order of ``names`` (C-contiguous float32), or ``None`` when done."""
        batch = next(self._batches, None)
        if batch is None:
            return None
        unknown = [n for n in names if n not in batch]
        if unknown:
            raise CalibrationError(f"the calibrator asked for {unknown}; calibration feeds have {sorted(batch)}")
        self.served += 1
        return [np.ascontiguousarray(batch[n], dtype=np.float32) for n in names]
